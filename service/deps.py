"""Request dependencies, as ``Annotated`` aliases for the routes."""

from __future__ import annotations

from collections.abc import Generator
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.domain import quotas
from service.domain.errors import Unauthorized
from service.enqueue import TaskSender, discard_pending, get_task_sender, send_pending
from service.inference import ChatBackend, get_chat_backend
from service.settings import Settings
from service.store.hooks import run_after_commit, run_after_rollback
from service.store.models import Tenant
from service.store.repositories import tenants as tenant_repo

_bearer = HTTPBearer(auto_error=False, description="A tenant's API key, or the admin key.")
MISSING_KEY = "missing API key: send 'Authorization: Bearer <key>'"
INVALID_KEY = "invalid or revoked API key"


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
TaskSenderDep = Annotated[TaskSender, Depends(get_task_sender)]


#: Methods that only read: their transactions need not queue for SQLite's write lock (and
#: the key of any other is checked before then, by service.edge).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request, sender: TaskSenderDep) -> Generator[Session, None, None]:
    """The request's session: the one commit point of a request. Tasks enqueued during the
    request are sent after the commit and dropped on a rollback, and so are the other hooks
    (:mod:`service.store.hooks`: folders deleted, or put back on a rollback). A request that
    may write gets a writer's session (on SQLite it waits for the write lock up front, see
    :mod:`service.store.db`); a GET reads without waiting."""
    state = request.app.state
    factory = state.read_sessionmaker if request.method in READ_METHODS else state.sessionmaker
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            discard_pending(session)
            run_after_rollback(session)
            raise
        send_pending(session, sender)
        run_after_commit(session)


def get_read_session(request: Request) -> Generator[Session, None, None]:
    """A session that only reads, whatever the method (it never commits and never waits for
    SQLite's write lock): for a request that writes in units of work of its own, as a chat
    records its completion once the reply is written."""
    with request.app.state.read_sessionmaker() as session:
        yield session


# scope="function": commit before the response is sent, so a failed commit is the response.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _bearer_key(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthorized(MISSING_KEY)
    return credentials.credentials


def _tenant(session: Session, credentials: HTTPAuthorizationCredentials | None) -> Tenant:
    key = _bearer_key(credentials)
    tenant = tenant_repo.tenant_for_api_key(session, key=key)
    if tenant is None:
        raise Unauthorized(INVALID_KEY)
    return tenant


def _counted(request: Request, response: Response, tenant: Tenant) -> Tenant:
    """The tenant, once its request is counted against its ``requests_per_minute`` quota (the
    response tells where it stands: ``RateLimit-Limit``, ``-Remaining``, ``-Reset``)."""
    settings: Settings = request.app.state.settings
    limit = quotas.limits_of(settings, tenant)["requests_per_minute"]
    response.headers.update(request.app.state.counters.hit(tenant.id, limit))
    return tenant


def get_current_tenant(
    request: Request, response: Response, session: SessionDep, credentials: Credentials
) -> Tenant:
    return _counted(request, response, _tenant(session, credentials))


def get_reading_tenant(
    request: Request, response: Response, session: ReadSessionDep, credentials: Credentials
) -> Tenant:
    """The key's tenant, read through :func:`get_read_session`."""
    return _counted(request, response, _tenant(session, credentials))


def require_admin(settings: SettingsDep, credentials: Credentials) -> None:
    key = _bearer_key(credentials)
    if not settings.is_admin_key(key):
        raise Unauthorized("this endpoint needs the admin key")


CurrentTenant = Annotated[Tenant, Depends(get_current_tenant)]
ReadingTenant = Annotated[Tenant, Depends(get_reading_tenant)]


def get_limits(settings: SettingsDep, tenant: CurrentTenant) -> dict[str, int]:
    """The quotas of the request's tenant (:func:`service.domain.quotas.limits_of`)."""
    return quotas.limits_of(settings, tenant)


LimitsDep = Annotated[dict[str, int], Depends(get_limits)]
AdminDep = Annotated[None, Depends(require_admin)]
ChatBackendDep = Annotated[ChatBackend, Depends(get_chat_backend)]
