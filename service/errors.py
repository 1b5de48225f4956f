"""The handlers that render every error as ``{"error": {"type": ..., "message": ...}}`` (the
shape OpenAI clients understand): the domain's own (:mod:`service.domain.errors`, re-exported
here for the routes), validation errors, HTTP errors and a busy store."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.artifacts import ArtifactError
from service.domain.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ServiceError,
    Unauthorized,
)

__all__ = [
    "COMMON_ERRORS",
    "WRITE_ERRORS",
    "Conflict",
    "ErrorBody",
    "ErrorDetail",
    "InvalidRequest",
    "NotFound",
    "ServiceError",
    "Unauthorized",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "store_unavailable_response",
    "validation_message",
]

log = logging.getLogger(__name__)


_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    410: "gone",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "quota_exceeded",
}


class ErrorDetail(BaseModel):
    type: str = Field(description="What kind of error: not_found, conflict, invalid_request, ...")
    message: str = Field(description="What is wrong, for a person to read.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


_DESCRIPTIONS = {
    401: "Missing, invalid or revoked API key (or not the admin key where one is needed).",
    404: "Not found (or not this tenant's).",
    409: "Conflicts with the current state; the message says what to do.",
    410: "Gone for good: the version's weights were deleted (the message says what to do).",
    413: "The request body is larger than the route's limit (the message names it).",
    422: "The request is invalid; the message names each wrong field.",
    429: "Over one of the tenant's quotas (the message names it); retry after the "
    "Retry-After header's seconds. GET /v1/usage shows the tenant's use and limits.",
    503: "The store is busy or unreachable; retry after the Retry-After header's seconds.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error ``codes``, each with the error body's schema. Every router
    declares what all its routes can return (:data:`COMMON_ERRORS`); a route adds its own
    (404 where it names a resource, 409)."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


#: What every route behind an API key can return: a bad key, a bad request, a quota reached,
#: a busy store.
COMMON_ERRORS = (401, 422, 429, 503)
#: What a route that may write can return besides: a body over its limit (service.edge).
WRITE_ERRORS = (413,)


def error_response(
    status_code: int, type_: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"type": type_, "message": message}}, status_code=status_code, headers=headers
    )


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        where, parts = parts[0], parts[1:]
        return f"{where}.{'.'.join(parts)}" if parts else where
    return ".".join(parts)


def validation_message(errors: list[dict[str, Any]] | Any) -> str:
    """``body.title: String should have at most 500 characters; ...``"""
    messages = []
    for error in errors:
        where = _location(error.get("loc", ()))
        msg = str(error.get("msg", "invalid value"))
        messages.append(f"{where}: {msg}" if where else msg)
    return "; ".join(messages) or "invalid request"


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status_code, exc.type, exc.message, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", validation_message(exc.errors()))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI answers 422 to a body that is not JSON but 400 to one that is not even
        # UTF-8; both are the same client error, so both get the declared 422.
        return error_response(422, "invalid_request", "body: not valid UTF-8 JSON")
    type_ = _HTTP_TYPES.get(exc.status_code, "error" if exc.status_code >= 500 else "bad_request")
    return error_response(exc.status_code, type_, str(exc.detail), exc.headers)


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    # A race that slipped past the checks of a route (two identical requests at once).
    log.warning("integrity error: %s", exc)
    return error_response(409, "conflict", "the request conflicts with the current state")


def store_unavailable_response() -> JSONResponse:
    return error_response(
        503,
        "service_unavailable",
        "the store is busy or unreachable; retry the request",
        {"Retry-After": "1"},
    )


async def _store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # The store could not serve the request now: SQLite's "database is locked" (a writer was
    # in the way of a transaction that had read first; nothing was committed) or a lost
    # PostgreSQL connection. The request can be sent again.
    log.warning("store unavailable: %s", exc)
    return store_unavailable_response()


async def _artifact_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # The object store could not give a version's weights (unreachable, or its objects do not
    # match their manifest): nothing was changed, and the request can be sent again.
    log.warning("artifact store: %s", exc)
    return error_response(
        503,
        "service_unavailable",
        f"the adapter's weights could not be read from the artifact store ({exc}); retry, or "
        "roll back to another version",
        {"Retry-After": "5"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ArtifactError, _artifact_unavailable)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(OperationalError, _store_unavailable)
