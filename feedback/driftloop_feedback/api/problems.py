"""The API's one error shape (``ErrorBody``): ``ApiError`` carries it from wherever a request is
refused, ``error_response`` renders it, and ``field_errors`` turns a pydantic error's location into
the documented path of the value (``records[1].row``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from driftloop_feedback.api.models import ErrorBody, FieldError

MAX_FIELD_ERRORS = 50


class ApiError(Exception):
    """A refusal: HTTP ``status``, a stable ``code``, a message saying what to do, the wrong values."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.headers = headers


def error_response(error: ApiError) -> JSONResponse:
    body = ErrorBody(error=error.message, code=error.code, fields=error.fields)
    return JSONResponse(body.model_dump(), status_code=error.status, headers=error.headers)


def field_path(loc: Sequence[int | str]) -> str:
    """``('records', 1, '<by-prediction>', 'truth', '<list>', 3)`` -> ``records[1].truth[3]``."""
    path = ""
    parent: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("<") and part.endswith(">"):
            continue  # a union branch's tag, not part of the document
        elif parent == "values":  # a reading's value name
            path += f"[{json.dumps(part)}]"
        elif part != "[key]":
            path += f".{part}" if path else part
        if not (isinstance(part, str) and part.startswith("<")):
            parent = part
    return path


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """One ``FieldError`` per distinct (path, message) of pydantic's ``errors()``."""
    seen: set[tuple[str, str]] = set()
    out: list[FieldError] = []
    for err in errors:
        key = (field_path(err["loc"]), _message(err))
        if key not in seen:
            seen.add(key)
            out.append(FieldError(field=key[0], message=key[1]))
    return out


def _message(err: Any) -> str:
    message = str(err["msg"])
    if err["loc"] and err["loc"][-1] == "[key]":
        message = f"value name: {message}"
    if err["type"] == "extra_forbidden":
        message = "unknown field; see docs/feedback.md for the record forms"
        if err["loc"][-1] == "row":
            message = "'row' goes with a single truth value; a truth list gives every row in order"
    return message.removeprefix("Value error, ")


def invalid_body(exc: ValidationError) -> ApiError:
    """422 for a body that is JSON but not what the API takes; 400 when it is not JSON at all."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    invalid_json = [e for e in errors if e["type"] == "json_invalid"]
    if invalid_json:
        return ApiError(
            400,
            "invalid_json",
            f"the body is not valid JSON: {_message(invalid_json[0]).removeprefix('Invalid JSON: ')}",
        )
    fields = field_errors(errors)
    shown = fields[:MAX_FIELD_ERRORS]
    more = f" (the first {len(shown)} of {len(fields)} are listed)" if len(fields) > len(shown) else ""
    summary = "; ".join(f"{f.field or 'body'}: {f.message}" for f in shown[:3])
    return ApiError(422, "invalid_body", f"{len(fields)} invalid value(s){more}: {summary}", shown)
