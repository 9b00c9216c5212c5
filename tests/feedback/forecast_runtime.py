"""Tiny MLServer runtimes for the end-to-end feedback test: ``PassThrough`` (a TRANSFORMER that returns
its inputs, like the outlier node) and ``SumForecast`` (a MODEL: ``prediction`` = row sums, with
``model_version`` and ``parameters.horizon_s`` as the contract says)."""

from __future__ import annotations

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, Parameters, ResponseOutput


class PassThrough(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        outputs = [
            ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, data=i.data)
            for i in payload.inputs
        ]
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=outputs)


class SumForecast(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        features = next(i for i in payload.inputs if i.name == "features")
        n, f = int(features.shape[0]), int(features.shape[1])
        flat = [float(x) for x in features.data]  # type: ignore[union-attr]
        sums = [sum(flat[r * f : (r + 1) * f]) for r in range(n)]
        return InferenceResponse(
            model_name=self.name,
            model_version="7",
            id=payload.id,
            parameters=Parameters(model_version="7", horizon_s=1800),
            outputs=[ResponseOutput(name="prediction", shape=[n], datatype="FP64", data=sums)],
        )
