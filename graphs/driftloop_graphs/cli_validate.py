"""``driftloop validate PATH...``: check SeldonDeployment manifests as the API server and Seldon's
admission webhook would, plus the local runtime's protocol-v2 graph rules."""

from __future__ import annotations

import sys
from pathlib import Path

import click

EXIT_INVALID = 1
EXIT_UNREADABLE = 2


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
def validate(paths: tuple[Path, ...], quiet: bool) -> None:
    """Validate SeldonDeployment manifests (multi-document YAML files).

    Checks the CRD's schema (machinelearning.seldon.io/v1), the operator webhook's rules (protocol,
    transport, unique predictor names, containers for custom nodes, modelUri for prepackaged servers,
    logger mode, traffic summing to 100, at most one shadow) and, for protocol v2, that the graph is
    a REST chain of MODEL / TRANSFORMER / OUTPUT_TRANSFORMER nodes. Each problem is printed as
    `<file>: <deployment>: <field path>: <rule>`.

    Exit status: 0 all valid, 1 some document invalid, 2 a file unreadable or holding no
    SeldonDeployment.
    """
    from driftloop_graphs.errors import ManifestError
    from driftloop_graphs.manifest import deployment_name, load_manifests
    from driftloop_graphs.validation import validate as validate_doc

    status = 0
    for path in paths:
        try:
            docs = load_manifests(path)
        except ManifestError as exc:
            click.echo(f"error: {exc}", err=True)
            status = max(status, EXIT_UNREADABLE)
            continue
        for doc in docs:
            name = deployment_name(doc)
            issues = validate_doc(doc)
            if issues:
                status = max(status, EXIT_INVALID)
                for issue in issues:
                    click.echo(f"{path}: {name}: {issue}", err=True)
            elif not quiet:
                click.echo(f"{path}: {name}: valid")
    sys.exit(status)
