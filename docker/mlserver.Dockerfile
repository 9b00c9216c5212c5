# driftloop's MLServer runtime image: the official MLServer image with driftloop's runtimes
# (driftloop_servers.model_runtime.IncrementalModelRuntime, outlier_runtime.OutlierRuntime, ...)
# installed. Seldon Core runs it as a custom container of the SeldonDeployment (manifests/base/serving/):
# the operator injects MLSERVER_MODEL_NAME, MLSERVER_MODEL_URI and the ports; the manifest sets
# MLSERVER_MODEL_IMPLEMENTATION.
# Build from the repository root:
#   docker build -f docker/mlserver.Dockerfile -t <registry>/driftloop-mlserver:<tag> .
#
# MLServer's image runs Python 3.10 from conda (/opt/conda); driftloop needs 3.11, so both stages make
# a Python 3.11 environment with that same conda (conda-forge) and the runtime keeps MLServer's user
# (1000), folders (/opt/mlserver, /mnt/models) and start command. The base is pinned by tag (no registry
# was reachable where this file was written to read its digest); pin it by digest in your own build:
# FROM seldonio/mlserver:1.7.1@sha256:<digest>.

# --- wheel: driftloop with its C extensions, compiled by conda-forge's compilers for that Python -------
FROM seldonio/mlserver:1.7.1 AS wheel
# A build stage, thrown away: conda writes /opt as root. The runtime stage ends as MLServer's user 1000.
# hadolint ignore=DL3002
USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN conda create --yes --quiet --prefix /opt/build python=3.11 c-compiler \
    && conda clean --all --yes
WORKDIR /src
COPY pyproject.toml hatch_build.py README.md ./
COPY driftloop ./driftloop
COPY servers ./servers
COPY graphs ./graphs
COPY feedback ./feedback
RUN /opt/build/bin/python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime ------------------------------------------------------------------------------------------
FROM seldonio/mlserver:1.7.1
USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PATH=/opt/driftloop/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLSERVER_HTTP_PORT=8080
COPY --from=wheel /wheels /wheels
RUN conda create --yes --quiet --prefix /opt/driftloop python=3.11 \
    && conda clean --all --yes \
    && /opt/driftloop/bin/python -m pip install --no-cache-dir /wheels/driftloop-*.whl \
    && rm -rf /wheels
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/driftloop-healthcheck
USER 1000
# MLServer's HTTP port (MLServer's default 8080 unless Seldon's operator sets MLSERVER_HTTP_PORT; the
# check expands the variable itself); on a cluster the kubelet probes /v2/health/ready (the manifest).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/driftloop/bin/python", "/usr/local/bin/driftloop-healthcheck", "http://127.0.0.1:${MLSERVER_HTTP_PORT}/v2/health/ready"]
CMD ["mlserver", "start", "/mnt/models"]
