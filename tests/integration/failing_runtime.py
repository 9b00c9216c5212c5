"""An MLServer runtime for the error-path tests: ``predict`` raises a plain ``RuntimeError`` (a bug in a
model, not an ``MLServerError``), which MLServer answers with 500."""

from __future__ import annotations

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse

SECRET_DETAIL = "internal-detail-7f3a"  # in the exception message: must not reach the client


class FailingRuntime(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        raise RuntimeError(f"model bug ({SECRET_DETAIL})")
