# driftloop's loop image: the feedback API, joiner, drift monitor, trainer, validator and rollout
# controller (`driftloop ...` commands; manifests/base/loop/ picks the command per Deployment), and the
# MLflow tracking server (`mlflow server`, manifests/base/mlflow/).
# Build from the repository root:  docker build -f docker/loop.Dockerfile -t <registry>/driftloop-loop:<tag> .
# Base images are pinned by tag (no registry was reachable where this file was written to read their
# digests); pin them by digest in your own build: FROM python:3.11.14-slim-bookworm@sha256:<digest>.

# --- wheel: driftloop with its three C extensions, built where a compiler is -------------------------
FROM python:3.11.14-slim-bookworm AS wheel
# The build tools are whatever bookworm ships at build time: this stage is thrown away.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml hatch_build.py README.md ./
COPY driftloop ./driftloop
COPY servers ./servers
COPY graphs ./graphs
COPY feedback ./feedback
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime ------------------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DRIFTLOOP_HOME=/var/lib/driftloop \
    DRIFTLOOP_HEALTHCHECK_URL=http://127.0.0.1:9100/metrics
COPY --from=wheel /wheels /wheels
# psycopg2 and boto3 serve `mlflow server` (manifests/base/mlflow: PostgreSQL backend, S3 artifacts).
RUN pip install --no-cache-dir /wheels/driftloop-*.whl psycopg2-binary==2.9.13 boto3==1.44.5 \
    && rm -rf /wheels \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/driftloop driftloop \
    && mkdir -p /var/lib/driftloop \
    && chown 10001:10001 /var/lib/driftloop
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/driftloop-healthcheck
WORKDIR /var/lib/driftloop
USER 10001:10001
# Each worker serves /metrics on 127.0.0.1:<--metrics-port> (9100 in the manifests); the feedback API
# sets DRIFTLOOP_HEALTHCHECK_URL to its /health/ready.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["driftloop-healthcheck"]
ENTRYPOINT ["driftloop"]
CMD ["--help"]
