"""The rule every versioned artifact (a tenant's adapter, a skill, a teacher) shares when an
admin makes one of its versions active by hand."""

from __future__ import annotations

from typing import Protocol

from service.domain.errors import Conflict, Gone
from service.store.models import VersionStatus


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
