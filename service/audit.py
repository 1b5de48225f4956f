"""The audit log of admin actions: every request that may write (any method but GET, HEAD and
OPTIONS) to an admin route (``/v1/admin/...``, ``/v1/tenants``) or to the dashboard
(``/admin/...``) made with an admin key or a signed-in dashboard session, and every sign-in
attempt, is recorded once it is answered: which admin key (by name, never the key), on what,
from where, and its status. ``GET /v1/admin/audit`` lists them.

A pure ASGI middleware inside :mod:`service.edge`: a request with an unknown key is refused
there and costs the store nothing, and one with a tenant's key on an admin route is not an
admin's action. The record is written after the response, in a transaction of its own; a store
that cannot take it loses the record (logged), never the request.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import dashboard
from service.deps import READ_METHODS
from service.edge import bearer_key
from service.settings import Settings
from service.store.models import AuditEvent

log = logging.getLogger(__name__)

#: The paths whose writes are audited.
AUDITED = ("/v1/admin/", "/admin")
AUDITED_EXACT = ("/v1/tenants",)
#: The dashboard's sign-in: recorded whoever tries it (it is throttled).
SIGN_IN = "/admin/login"


def audited(method: str, path: str) -> bool:
    if method in READ_METHODS:
        return False
    return path in AUDITED_EXACT or path.startswith(AUDITED)


def actor(settings: Settings, scope: Scope) -> str:
    """Who made a request: the admin key it carries, by name; ``dashboard`` for a signed-in
    dashboard session; ``none`` otherwise."""
    key = bearer_key(scope)
    name = settings.admin_key_name(key) if key else None
    if name is not None:
        return name
    cookies = cookie_parser(Headers(scope=scope).get("cookie", ""))
    if dashboard.read_session(settings, cookies.get(dashboard.SESSION_COOKIE)) is not None:
        return "dashboard"
    return "none"


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not audited(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            state = scope["app"].state
            who = actor(state.settings, scope)
            if scope["path"] == SIGN_IN and who == "none":
                who = "sign-in"  # its key is in the form: 303 signed in, 401 not, 429 throttled
            if who != "none":
                await run_in_threadpool(_record, state, _event(scope, who, status[0]))


def _event(scope: Scope, who: str, status: int) -> AuditEvent:
    client = scope.get("client")
    return AuditEvent(
        actor=who,
        method=scope["method"],
        path=scope["path"][:500],
        status_code=status,
        client=client[0][:64] if client else None,
    )


def _record(state: object, event: AuditEvent) -> None:
    try:
        with state.sessionmaker() as session:  # type: ignore[attr-defined]
            session.add(event)
            session.commit()
    except Exception:
        log.exception("the audit record of %s %s could not be written", event.method, event.path)
