"""The rules every version history (a tenant's adapter, a skill, a teacher) shares when an
admin makes one of its versions active by hand: :func:`rollback`, the one rollback of the
service, and what it refuses."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from service.domain.errors import Conflict, Gone, NotFound
from service.store.models import VersionMixin, VersionStatus
from service.store.repositories.versions import VersionHistory

V = TypeVar("V", bound=VersionMixin)


class Versioned(Protocol):
    status: VersionStatus
    artifact_uri: str | None


def check_can_activate(version: Versioned, what: str) -> None:
    """Refuse to make ``version`` (named ``what`` in the message) active: a conflict when it
    was rejected by its gate, :class:`Gone` (410) when its weights were deleted (by hand, or
    by the retention of weights no version uses: ``SEAL_KEEP_RETIRED_WEIGHTS``)."""
    if version.status == VersionStatus.rejected:
        raise Conflict(f"{what} was rejected and cannot be made active")
    if not version.artifact_uri:
        raise Gone(f"{what} has no artifact: its weights were deleted; choose a newer version")


def rollback(
    session: Session,
    history: VersionHistory[V],
    number: int,
    *,
    owner_name: str,
    **owner: Any,
) -> tuple[V | None, V | None]:
    """Make version ``number`` of an owner (named ``owner_name`` in messages) active at once;
    0 retires the active one, so the owner falls back (a tenant to the base model, a skill to
    none, a tenant's teacher to the shared one). The new active version and the one it
    replaced. A version that does not exist is 404, a rejected one 409, one whose weights
    were deleted 410."""
    target = None
    if number != 0:
        target = history.get(session, number=number, **owner)
        if target is None:
            raise NotFound(f"{owner_name} has no {history.noun} {number}")
        check_can_activate(target, f"{history.noun} {number} of {owner_name}")
    previous = history.promote(session, version=target, event="rolled_back", **owner)
    return target, previous
