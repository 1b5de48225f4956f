"""The edge of the API: what a request that may write (any method but GET, HEAD and OPTIONS)
to ``/v1/...`` must pass before a byte of its body is read. FastAPI reads and parses a
body before any dependency runs, and a writer's session takes SQLite's write lock, so both
checks are made here, in front of the app, as a pure ASGI middleware:

1. its key: a tenant's live key (looked up through the reading sessionmaker, which never
   waits for the write lock) or the admin key, else 401; the route then checks that the key
   is of the kind it needs;
2. its size against the route's limit (:data:`service.limits.BODY_LIMITS`, else
   :data:`~service.limits.SMALL_BODY_BYTES`): refused (413) from its ``Content-Length`` at
   once, or, streamed in, as soon as it passes the limit, before the body is held.

Reads carry no body, and a read's key is checked by its route on the reading session.
The dashboard (``/admin``) signs in with a form and a cookie, and its forms are small.
"""

from __future__ import annotations

from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.deps import INVALID_KEY, MISSING_KEY, READ_METHODS
from service.errors import error_response, store_unavailable_response
from service.limits import BODY_LIMITS, SMALL_BODY_BYTES
from service.store.repositories import tenants as tenant_repo

#: The paths behind a key.
API_PREFIX = "/v1/"
_LIMITS = [
    (method, compile_path(template)[0], limit) for (method, template), limit in BODY_LIMITS.items()
]


def body_limit(method: str, path: str) -> int:
    """The most bytes of a body ``method`` ``path`` takes."""
    for route_method, pattern, limit in _LIMITS:
        if method == route_method and pattern.match(path):
            return limit
    return SMALL_BODY_BYTES


class BodyTooLarge(HTTPException):
    """A body past its route's limit: 413, rendered by the app's handler of HTTP errors (a
    route re-raises it as it reads the body) or, failing that, by the middleware."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over this route's limit of {limit:,} bytes")


def _unauthorized(message: str) -> Response:
    return error_response(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def bearer_key(scope: Scope) -> str | None:
    """The key of ``Authorization: Bearer <key>``, as :class:`fastapi.security.HTTPBearer`
    reads it."""
    scheme, key = get_authorization_scheme_param(Headers(scope=scope).get("authorization"))
    return key if scheme.lower() == "bearer" and key else None


def _known_key(state: Any, key: str) -> bool:
    """Whether ``key`` is the admin key or a tenant's live key."""
    if state.settings.is_admin_key(key):
        return True
    with state.read_sessionmaker() as session:
        return tenant_repo.tenant_for_api_key(session, key=key) is not None


async def _key_refusal(scope: Scope) -> Response | None:
    """The answer to a request whose key cannot write anything; None for a known key."""
    key = bearer_key(scope)
    if key is None:
        return _unauthorized(MISSING_KEY)
    try:
        known = await run_in_threadpool(_known_key, scope["app"].state, key)
    except OperationalError:
        return store_unavailable_response()
    return None if known else _unauthorized(INVALID_KEY)


def _content_length(scope: Scope) -> int | None:
    try:
        return int(Headers(scope=scope)["content-length"])
    except (KeyError, ValueError):
        return None  # none, or not a number: the server refuses the latter


class _CountedReceive:
    """``receive`` that counts the body's bytes and raises :class:`BodyTooLarge` with the
    chunk that passes ``limit``."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.read = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.read += len(message.get("body", b""))
            if self.read > self.limit:
                raise BodyTooLarge(self.limit)
        return message


class EdgeMiddleware:
    """The key, then the size, of every request that may write to ``/v1/...``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in READ_METHODS
            or not scope["path"].startswith(API_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        refusal = await _key_refusal(scope)
        limit = body_limit(scope["method"], scope["path"])
        length = _content_length(scope)
        if refusal is None and length is not None and length > limit:
            refusal = _too_large(BodyTooLarge(limit))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._limited(scope, _CountedReceive(receive, limit), send)

    async def _limited(self, scope: Scope, receive: _CountedReceive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BodyTooLarge as exc:
            if started:
                raise
            await _too_large(exc)(scope, receive, send)


def _too_large(exc: BodyTooLarge) -> Response:
    return error_response(413, "payload_too_large", exc.detail)
