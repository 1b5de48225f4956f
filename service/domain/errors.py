"""The errors the domain raises, typed end to end: a repository or a domain function raises
one of these, the HTTP layer (:mod:`service.errors`) renders it as ``{"error": {"type",
"message"}}`` with its status. Nothing here knows HTTP beyond that number; a plain
``ValueError`` from anywhere is a bug (500), never a conflict."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses, with a message for the person who sent it."""

    status_code = 400
    type = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class Unauthorized(ServiceError):
    status_code = 401
    type = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    """Signed in, but the request lacks what it must carry (e.g. its CSRF token)."""

    status_code = 403
    type = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    type = "not_found"


class Conflict(ServiceError):
    """The request conflicts with the current state; the message says what to do."""

    status_code = 409
    type = "conflict"


class Gone(ServiceError):
    """What was asked for existed and was deleted for good (a version's purged weights)."""

    status_code = 410
    type = "gone"


class InvalidRequest(ServiceError):
    status_code = 422
    type = "invalid_request"


class VersionIsActive(Conflict):
    """An adapter version that is active cannot lose its weights."""


class JobFinished(Conflict):
    """A job that has finished cannot be cancelled (it may have finished meanwhile)."""


class Busy(ServiceError):
    """The service is at capacity for everyone (not one tenant's quota): try again soon."""

    status_code = 503
    type = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})


class QuotaExceeded(ServiceError):
    """Over one of the tenant's quotas: the message names it, ``Retry-After`` says when to
    try again."""

    status_code = 429
    type = "quota_exceeded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})
