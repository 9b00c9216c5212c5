"""A tiny MLServer runtime for the local-runtime tests: echoes every input tensor and adds
``seen_by_<model>`` (BYTES: the model's ``parameters.uri``), so a response shows which nodes, which
predictor (each predictor's manifest gives a different modelUri) and which model version answered.
An input named ``fail`` makes it answer 422 with a JSON error, as a real runtime rejecting bad input;
an input named ``crash`` makes it raise, as a runtime with a bug does: MLServer answers 500 (with its
stack trace when ``debug`` is on) and closes the connection."""

from __future__ import annotations

from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, Parameters, ResponseOutput


class EchoRuntime(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if any(i.name == "fail" for i in payload.inputs):
            raise MLServerError(f"{self.name}: input tensor 'fail' is not accepted", status_code=422)
        if any(i.name == "crash" for i in payload.inputs):
            raise RuntimeError(f"{self.name}: a bug in the model runtime")
        outputs = [
            ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, data=i.data)
            for i in payload.inputs
        ]
        uri = (self.settings.parameters.uri if self.settings.parameters else None) or ""
        outputs.append(
            ResponseOutput(
                name=f"seen_by_{self.name.replace('-', '_')}", shape=[1], datatype="BYTES", data=[uri]
            )
        )
        carried = payload.parameters.model_dump(exclude_none=True) if payload.parameters else {}
        carried.pop("headers", None)  # MLServer puts the request's HTTP headers here; never echo them back
        carried[f"via_{self.name.replace('-', '_')}"] = True
        return InferenceResponse(
            model_name=self.name, id=payload.id, parameters=Parameters(**carried), outputs=outputs
        )
