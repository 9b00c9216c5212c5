"""The control API: the local equivalent of patching the SeldonDeployment.

Bearer-token authenticated, bound to 127.0.0.1 by default (a separate listener from the ingress).

- ``GET  /v1/deployments`` and ``GET /v1/deployments/<ns>/<name>``: predictors, traffic, model URIs;
- ``PUT  /v1/deployments/<ns>/<name>/traffic`` ``{"traffic": {"main": 75, "canary": 25}}``: new
  weights of the non-shadow predictors (integers summing to 100; names left out get 0);
- ``PUT  /v1/deployments/<ns>/<name>/predictors/<p>/nodes/<node>/model`` ``{"model_uri": "..."}``:
  the node serves another model version (its MLServer reloads it through the repository API; the
  old version answers until the new one is loaded, so no request fails).

Every error answer, unknown routes and methods included, has the runtime's one error shape
(``errors.error_body``: ``{"error": "...", "code": "..."}``).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from driftloop_graphs.errors import GraphError, error_body
from driftloop_graphs.traffic import check_requested

JSON = "application/json"


class ControlError(GraphError):
    """A control request that cannot be applied; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Controllable(Protocol):
    def describe(self, namespace: str | None = None, name: str | None = None) -> list[dict[str, Any]]: ...

    async def set_traffic(self, namespace: str, name: str, weights: dict[str, int]) -> dict[str, Any]: ...

    async def set_model(
        self, namespace: str, name: str, predictor: str, node: str, model_uri: str
    ) -> dict[str, Any]: ...


def _reply(status: int, content: object) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=JSON)


_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


def _error(status: int, message: str) -> Response:
    code = _CODES.get(status, "conflict" if status == 409 else "node_error" if status >= 500 else "refused")
    return Response(error_body(code, message), status_code=status, media_type=JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (unknown route, wrong method) in the one error shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = (
            f"no route {request.url.path!r}: the control API serves /v1/deployments, "
            "/v1/deployments/<ns>/<name>, .../traffic and .../predictors/<p>/nodes/<node>/model"
        )
        return _error(404, message)
    response = _error(exc.status_code, f"{request.method} not allowed on {request.url.path}: {exc.detail}")
    if exc.headers:
        response.headers.update(exc.headers)
    return response


Handler = Callable[[Request], Awaitable[Response]]


def control_app(runtime: Controllable, token: str) -> Starlette:
    def authenticated(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
                return _error(401, "missing or wrong bearer token: see control.token in the run dir")
            try:
                return await handler(request)
            except ControlError as exc:
                return _error(exc.status, str(exc))
            except GraphError as exc:
                return _error(400, str(exc))

        return wrapped

    async def body(request: Request, key: str) -> Any:
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise ControlError(400, f"request body is not JSON: {exc}") from exc
        if not isinstance(data, dict) or key not in data:
            raise ControlError(400, f"request body must be a JSON object with {key!r}")
        return data[key]

    async def list_all(request: Request) -> Response:
        return _reply(200, runtime.describe())

    async def get_one(request: Request) -> Response:
        found = runtime.describe(request.path_params["namespace"], request.path_params["name"])
        if not found:
            raise ControlError(404, "no such deployment")
        return _reply(200, found[0])

    async def put_traffic(request: Request) -> Response:
        weights = await body(request, "traffic")
        if not isinstance(weights, dict):
            raise ControlError(400, "'traffic' must map predictor names to integer weights")
        state = await runtime.set_traffic(
            request.path_params["namespace"], request.path_params["name"], check_requested(weights)
        )
        return _reply(200, state)

    async def put_model(request: Request) -> Response:
        model_uri = await body(request, "model_uri")
        if not isinstance(model_uri, str) or not model_uri:
            raise ControlError(400, "'model_uri' must be a non-empty string, e.g. models:/name/7")
        p = request.path_params
        state = await runtime.set_model(p["namespace"], p["name"], p["predictor"], p["node"], model_uri)
        return _reply(200, state)

    base = "/v1/deployments/{namespace}/{name}"
    return Starlette(
        exception_handlers={HTTPException: _http_error},
        routes=[
            Route("/v1/deployments", authenticated(list_all), methods=["GET"]),
            Route(base, authenticated(get_one), methods=["GET"]),
            Route(f"{base}/traffic", authenticated(put_traffic), methods=["PUT"]),
            Route(
                base + "/predictors/{predictor}/nodes/{node}/model", authenticated(put_model), methods=["PUT"]
            ),
        ],
    )
