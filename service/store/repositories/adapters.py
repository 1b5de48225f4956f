"""Adapter versions of the tenants' students; promotion and rollback."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from service.domain.errors import Gone, VersionIsActive
from service.store.base import utcnow
from service.store.models import AdapterVersion, VersionStatus


def next_adapter_number(session: Session, *, tenant_id: str) -> int:
    """1 for a tenant's first version, then one more than the highest so far."""
    stmt = select(func.max(AdapterVersion.number)).where(AdapterVersion.tenant_id == tenant_id)
    return (session.scalar(stmt) or 0) + 1


def create_adapter_version(
    session: Session,
    *,
    tenant_id: str,
    parent_id: str | None,
    artifact_uri: str | None = None,
    checksum: str | None = None,
    metrics: dict[str, Any] | None = None,
    job_id: str | None = None,
    number: int | None = None,
    status: VersionStatus = VersionStatus.candidate,
) -> AdapterVersion:
    """A new version (a candidate unless told); ``number`` defaults to the next one.

    Use :func:`promote_version` to make a version active.
    """
    if status == VersionStatus.active:
        raise ValueError("create the version as a candidate, then promote_version() it")
    version = AdapterVersion(
        tenant_id=tenant_id,
        number=number if number is not None else next_adapter_number(session, tenant_id=tenant_id),
        parent_id=parent_id,
        status=status,
        artifact_uri=artifact_uri,
        checksum=checksum,
        metrics=dict(metrics or {}),
        job_id=job_id,
    )
    session.add(version)
    session.flush()
    return version


def get_adapter_version(session: Session, *, tenant_id: str, number: int) -> AdapterVersion | None:
    stmt = select(AdapterVersion).where(
        AdapterVersion.tenant_id == tenant_id, AdapterVersion.number == number
    )
    return session.scalar(stmt)


def get_adapter_version_by_id(
    session: Session, *, version_id: str, tenant_id: str | None = None
) -> AdapterVersion | None:
    stmt = select(AdapterVersion).where(AdapterVersion.id == version_id)
    if tenant_id is not None:
        stmt = stmt.where(AdapterVersion.tenant_id == tenant_id)
    return session.scalar(stmt)


def active_adapter(session: Session, *, tenant_id: str) -> AdapterVersion | None:
    """The tenant's active version, or None (the base model serves the tenant)."""
    stmt = select(AdapterVersion).where(
        AdapterVersion.tenant_id == tenant_id, AdapterVersion.status == VersionStatus.active
    )
    return session.scalar(stmt)


def list_adapter_versions(
    session: Session, *, tenant_id: str
) -> list[tuple[AdapterVersion, int | None]]:
    """The tenant's versions, newest first, each with its parent's number."""
    parent = aliased(AdapterVersion)
    stmt = (
        select(AdapterVersion, parent.number)
        .outerjoin(parent, parent.id == AdapterVersion.parent_id)
        .where(AdapterVersion.tenant_id == tenant_id)
        .order_by(AdapterVersion.number.desc())
    )
    return [(version, parent_number) for version, parent_number in session.execute(stmt)]


def set_version_status(
    session: Session, *, version: AdapterVersion, status: VersionStatus
) -> AdapterVersion:
    """Set a non-active status (reject a candidate, retire a version)."""
    if status == VersionStatus.active:
        raise ValueError("use promote_version() to activate a version")
    version.status = status
    session.flush()
    return version


def promote_version(
    session: Session, *, tenant_id: str, version: AdapterVersion | None
) -> AdapterVersion | None:
    """Make ``version`` the tenant's active one; the previously active one is retired.

    ``None`` retires the active version, so the base model serves the tenant. Returns the
    version that was active before (or None). The demotion is flushed before the promotion
    because of the one-active-version-per-tenant unique index. The promotion is one
    conditional UPDATE on the version still having its weights, so a rollback that races a
    deletion of its weights (:func:`drop_weights`) fails (:class:`Gone`) instead of leaving
    an active version without weights.
    """
    if version is not None and version.tenant_id != tenant_id:
        raise ValueError("the version belongs to another tenant")
    previous = active_adapter(session, tenant_id=tenant_id)
    if previous is not None and version is not None and previous.id == version.id:
        return previous
    if previous is not None:
        previous.status = VersionStatus.retired
        session.flush()
    if version is not None:
        result = session.execute(
            update(AdapterVersion)
            .where(AdapterVersion.id == version.id, AdapterVersion.artifact_uri.is_not(None))
            .values(status=VersionStatus.active, promoted_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise Gone(
                f"version {version.number} has no artifact: its weights were deleted; choose "
                "a newer version"
            )
    return previous


def drop_weights(session: Session, *, version: AdapterVersion) -> str | None:
    """Forget where a version's weights are (and their checksum), unless it is active; returns
    the folder they were in, for the caller to remove once this is committed. One conditional
    UPDATE, so a version made active meanwhile keeps its weights (:class:`VersionIsActive`)."""
    folder = version.artifact_uri
    result = session.execute(
        update(AdapterVersion)
        .where(AdapterVersion.id == version.id, AdapterVersion.status != VersionStatus.active)
        .values(artifact_uri=None, checksum=None)
        .execution_options(synchronize_session="fetch")
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise VersionIsActive(
            f"version {version.number} is active: make another version active first "
            "(rollback, or a rebuild)"
        )
    return folder


def past_retention(
    session: Session, *, tenant_id: str, status: VersionStatus, keep: int
) -> list[AdapterVersion]:
    """The tenant's versions of ``status`` that still have weights, but for the newest
    ``keep`` of them: those whose weights the retention deletes."""
    stmt = (
        select(AdapterVersion)
        .where(
            AdapterVersion.tenant_id == tenant_id,
            AdapterVersion.status == status,
            AdapterVersion.artifact_uri.is_not(None),
        )
        .order_by(AdapterVersion.number.desc())
        .offset(keep)
    )
    return list(session.scalars(stmt))
