"""The verdict on a real MLflow sqlite store: tags on the challenger's version, metrics on its run."""

from __future__ import annotations

import numpy as np
import pytest
from driftloop_feedback.validate import ValidationSettings, Validator, publish_verdict
from mlflow import MlflowClient

from driftloop.registry import MlflowRegistry
from driftloop.settings import StateSettings
from tests.validate.test_validator import fitted_regressor, regression_rows

pytestmark = pytest.mark.integration


def test_verdict_lands_on_the_challenger_version_and_its_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = StateSettings(home=tmp_path / "home", mlflow_tracking_uri=None)
    registry = MlflowRegistry(state.tracking_uri(), state.artifact_root())
    example = np.zeros((2, 2))
    champion_model, challenger_model = fitted_regressor(1.0, 20), fitted_regressor(2.0, 21)
    for model, alias in [(champion_model, "champion"), (challenger_model, "challenger")]:
        registry.register_sklearn_model(
            "validated", model, input_example=example, pip_requirements=["scikit-learn"], alias=alias
        )
    champion = registry.load_sklearn_model("models:/validated@champion")
    challenger = registry.load_sklearn_model("models:/validated@challenger")
    np.testing.assert_array_equal(challenger.predict(example + 1), challenger_model.predict(example + 1))

    result = Validator(champion, challenger, ValidationSettings(loss_bound=5.0)).run(
        regression_rows(3000, 22)
    )
    ref = registry.get_alias("validated", "challenger")
    publish_verdict(registry, ref.name, ref.version, ref.run_id, result)

    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    tags = client.get_model_version("validated", str(ref.version)).tags
    d = result.decision
    assert tags["driftloop.validation.verdict"] == "pass"
    assert float(tags["driftloop.validation.upper"]) == d.upper < 0.0
    assert int(tags["driftloop.validation.n"]) == d.n
    assert tags["driftloop.validation.method"] == d.method
    assert client.get_model_version("validated", "1").tags.get("driftloop.validation.verdict") is None
    assert ref.run_id is not None
    run = client.get_run(ref.run_id)
    assert run.data.metrics["driftloop.validation.upper"] == pytest.approx(d.upper)
    history = client.get_metric_history(ref.run_id, "driftloop.validation.lower")
    assert [(m.value, m.step) for m in history] == [(pytest.approx(d.lower), d.n)]
