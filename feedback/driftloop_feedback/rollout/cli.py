"""``driftloop rollout run`` (the controller as a process) and ``driftloop rollout status``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from driftloop_feedback.worker_cli import (
    configure_logging,
    load_settings,
    metrics_port_option,
    serve_metrics,
    stop_on_signals,
)

if TYPE_CHECKING:
    from driftloop_feedback.rollout.kube_backend import KubeSeldonBackend
    from driftloop_feedback.rollout.kube_lease import KubeLease
    from driftloop_feedback.rollout.lease import FileLease
    from driftloop_feedback.rollout.local_backend import LocalControlBackend
    from driftloop_feedback.rollout.ops import HttpOpsSource
    from driftloop_feedback.rollout.prometheus_ops import PrometheusOpsSource


@click.group()
def rollout() -> None:
    """Canary roll-out of validated challengers, gated on the canary's ground truth and operations."""


def _settings() -> object:
    from driftloop_feedback.rollout.settings import RolloutSettings

    return load_settings(RolloutSettings)


def _backend_and_lease(
    settings: object,
) -> tuple[KubeSeldonBackend | LocalControlBackend, KubeLease | FileLease]:
    """The traffic backend and the lease the settings choose: the local runtime's control API and a
    lease file (default), or the SeldonDeployment and its coordination.k8s.io Lease (``kubernetes``)."""
    from driftloop_feedback.rollout.kube_backend import KubeSeldonBackend, kube_client
    from driftloop_feedback.rollout.kube_lease import KubeLease, lease_name_for
    from driftloop_feedback.rollout.lease import FileLease
    from driftloop_feedback.rollout.local_backend import LocalControlBackend
    from driftloop_feedback.rollout.settings import RolloutSettings

    assert isinstance(settings, RolloutSettings)
    if settings.backend == "kubernetes":
        client = kube_client(settings.kubeconfig, settings.kube_context)
        lease_name = settings.lease_name or lease_name_for(settings.deployment)
        lease = KubeLease(
            client, settings.namespace, lease_name, settings.key, settings.lease_ttl_s, time.time
        )
        return KubeSeldonBackend(client), lease
    lease_file = FileLease(settings.lease_path(), settings.key, settings.lease_ttl_s, time.time)
    return LocalControlBackend.from_run_dir(), lease_file


def _metrics_url(settings: object) -> str:
    from driftloop_feedback.rollout.local_backend import local_run_dir, read_runtime_json
    from driftloop_feedback.rollout.settings import RolloutSettings

    assert isinstance(settings, RolloutSettings)
    if settings.metrics_url:
        return settings.metrics_url
    if settings.backend == "kubernetes":
        raise click.ClickException(
            "with the kubernetes backend the ops gate needs DRIFTLOOP_ROLLOUT_PROMETHEUS_URL (Seldon's "
            "executor metrics in Prometheus) or DRIFTLOOP_ROLLOUT_METRICS_URL (an ingress's /metrics)"
        )
    data = read_runtime_json(local_run_dir())
    return f"http://{data['host']}:{int(data['port'])}/metrics"


def _ops_source(settings: object) -> HttpOpsSource | PrometheusOpsSource:
    """Where the ops gate's figures come from (``DRIFTLOOP_ROLLOUT_OPS_SOURCE``): the ingress's /metrics,
    or Seldon's executor histogram in Prometheus (docs/rollout.md, "Operations on a cluster")."""
    from driftloop_feedback.rollout.ops import HttpOpsSource
    from driftloop_feedback.rollout.prometheus_ops import PrometheusOpsSource
    from driftloop_feedback.rollout.settings import RolloutSettings

    assert isinstance(settings, RolloutSettings)
    if settings.resolved_ops_source() == "prometheus":
        assert settings.prometheus_url is not None  # RolloutSettings refuses prometheus without a URL
        return PrometheusOpsSource(
            settings.prometheus_url, settings.deployment, extra_selector=settings.prometheus_selector
        )
    return HttpOpsSource(_metrics_url(settings), settings.deployment)


@rollout.command()
@metrics_port_option
@click.option("--tick-s", type=float, default=1.0, show_default=True, help="time between two ticks")
def run(metrics_port: int | None, tick_s: float) -> None:
    """Run the rollout controller against the local runtime (`driftloop up`): when the challenger alias
    points at a version whose validation verdict is pass, put it on the canary predictor at 0 %, step
    its traffic up (step_weight or step_weights, to max_weight) once per interval while the canary's own
    labelled rows pass the paired anytime-valid test against the champion and its 5xx rate and p99
    latency stay within main's; inconclusive ground truth waits; threshold failed checks, or the
    progress deadline at one weight, roll back (canary to 0, version tagged rejected); a pass at
    max_weight promotes (main hot-swapped, alias champion moved, canary to 0). One controller per
    deployment (a lease); every decision is an event on driftloop.rollouts and a version tag. Settings:
    DRIFTLOOP_ROLLOUT_* and DRIFTLOOP_VALIDATION_* (the test); see docs/rollout.md. SIGTERM/SIGINT stop
    it: a rollout in progress is interrupted (canary to 0) and retried from the start on the next run."""
    from driftloop.eventlog import open_event_log
    from driftloop.registry import MlflowRegistry
    from driftloop_feedback.rollout.controller import RolloutController
    from driftloop_feedback.rollout.errors import RolloutError
    from driftloop_feedback.rollout.settings import RolloutSettings
    from driftloop_feedback.validate.settings import ValidationSettings

    configure_logging()
    settings = _settings()
    assert isinstance(settings, RolloutSettings)
    validation = load_settings(ValidationSettings)
    stop = stop_on_signals()
    try:
        ops = _ops_source(settings)
        backend, lease = _backend_and_lease(settings)
    except RolloutError as exc:
        raise click.ClickException(str(exc)) from exc
    log = open_event_log()
    controller = RolloutController(
        settings, backend, MlflowRegistry.from_state(), log, lease, ops, validation
    )
    serve_metrics("rollout", metrics_port, controller.metrics.registry)
    try:
        controller.start(time.time())
        click.echo(
            f"rollout controller ready ({settings.key}, model {settings.model_name}, lease {lease.holder})"
        )
        last_status = ""
        while not stop.is_set():
            controller.tick(time.time())
            if controller.status != last_status:
                last_status = controller.status
                click.echo(f"rollout {last_status}")
            stop.wait(tick_s)
        controller.stop()
    except RolloutError as exc:
        controller.close()
        raise click.ClickException(str(exc)) from exc
    finally:
        backend.close()
        ops.close()
        log.close()
    click.echo("rollout controller stopped")


@rollout.command()
@click.option("--history", type=int, default=5, show_default=True, help="how many past decisions to show")
def status(history: int) -> None:
    """Show the deployment's traffic split and model URIs, the lease holder, and the last decisions
    recorded on driftloop.rollouts."""
    from driftloop.eventlog import open_event_log
    from driftloop_feedback.rollout.errors import RolloutError
    from driftloop_feedback.rollout.events import read_history
    from driftloop_feedback.rollout.settings import RolloutSettings

    settings = _settings()
    assert isinstance(settings, RolloutSettings)
    try:
        backend, lease = _backend_and_lease(settings)
        try:
            state = backend.read(settings.namespace, settings.deployment)
            record = lease.current()
        finally:
            backend.close()
    except RolloutError as exc:
        raise click.ClickException(str(exc)) from exc
    split = ", ".join(f"{p}={w}" for p, w in state.traffic.items())
    click.echo(f"{settings.key}: traffic {split}")
    for predictor, nodes in state.models.items():
        click.echo(f"  {predictor}: " + ", ".join(f"{n}={uri}" for n, uri in nodes.items()))
    if record is None or record.expires_at < time.time():
        click.echo("lease: free (no controller running)")
    else:
        click.echo(f"lease: {record.holder} (expires in {record.expires_at - time.time():.0f} s)")
    log = open_event_log()
    try:
        events = read_history(log, settings.rollouts_topic, settings.key)
    finally:
        log.close()
    if not events:
        click.echo("no rollout decisions recorded yet")
    for e in events[-history:]:
        n = f" n={e.gate['n']} verdict={e.gate['verdict']}" if e.gate else ""
        click.echo(
            f"  {e.decision:<12} phase={e.phase:<12} v{e.candidate} weight={e.weight}% "
            f"failed_checks={e.failed_checks}{n} {e.reason}"
        )
