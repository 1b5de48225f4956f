"""The rule every versioned artifact (a tenant's adapter, a skill, a teacher) shares when an
admin makes one of its versions active by hand."""

from __future__ import annotations

from typing import Protocol

from service.domain.errors import Conflict
from service.store.models import VersionStatus


class Versioned(Protocol):
    status: VersionStatus
    artifact_uri: str | None


def check_can_activate(version: Versioned, what: str) -> None:
    """A conflict when ``version`` (named ``what`` in the message) cannot be made active: it
    was rejected by its gate, or its weights are gone."""
    if version.status == VersionStatus.rejected:
        raise Conflict(f"{what} was rejected and cannot be made active")
    if not version.artifact_uri:
        raise Conflict(f"{what} has no artifact")
