"""`driftloop validate` exit codes and output."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from driftloop.cli import cli

REPO = Path(__file__).resolve().parents[2]


def test_valid_manifests_exit_0() -> None:
    result = CliRunner().invoke(cli, ["validate", *map(str, sorted((REPO / "manifests").glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert "pump-bearing-temp: valid" in result.output


def test_invalid_manifest_exits_1_naming_the_field(tmp_path: Path) -> None:
    text = (
        (REPO / "manifests/pump-bearing-temp-canary.yaml")
        .read_text()
        .replace("traffic: 0\n", "traffic: 10\n")
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = CliRunner().invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 1
    assert (
        "spec.predictors[1].traffic: traffic of non-shadow predictors must sum to 100, got 110"
        in result.output
    )


def test_unreadable_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "cannot read manifest" in result.output
