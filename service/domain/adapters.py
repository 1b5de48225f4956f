"""A tenant's adapter versions: deleting the weights of one not in use, and the retention that
deletes those no one will use (their rollback is the one of every history:
:func:`service.domain.versions.rollback`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from service.domain.errors import NotFound
from service.domain.files import remove_after_commit
from service.settings import Settings
from service.store.models import AdapterVersion, Tenant, VersionStatus
from service.store.repositories import adapters as adapter_repo


def get_version(session: Session, tenant: Tenant, number: int) -> AdapterVersion:
    version = adapter_repo.get_adapter_version(session, tenant_id=tenant.id, number=number)
    if version is None:
        raise NotFound(f"tenant {tenant.name!r} has no adapter version {number}")
    return version


@dataclass
class WeightsDeletion:
    version: AdapterVersion
    folder_removed: str | None
    folder_left: str | None


def delete_weights(
    session: Session, settings: Settings, tenant: Tenant, number: int
) -> WeightsDeletion:
    """Delete the weights of a version that is not active (:class:`VersionIsActive`
    otherwise); the version stays, its checksum null. Its folder goes once the change is
    committed, if it lies in the adapter folder (one elsewhere is left, and named)."""
    version = get_version(session, tenant, number)
    folder = adapter_repo.drop_weights(session, version=version)
    session.flush()
    session.refresh(version)
    removed = left = None
    if folder is not None and Path(folder).exists():
        inside = Path(folder).resolve().is_relative_to(settings.resolved_adapter_dir)
        if inside and remove_after_commit(session, Path(folder)):
            removed = folder
        else:
            left = folder
    return WeightsDeletion(version, removed, left)


def purge_unused_weights(session: Session, settings: Settings, tenant_id: str) -> list[str]:
    """Delete the weights of the tenant's rejected versions but the newest
    ``keep_rejected_weights``, and of its retired ones but the newest ``keep_retired_weights``
    (the rows stay; a rollback to one answers 410). Returns their folders inside the adapter
    folder, for the caller to remove once this is committed."""
    keep = {
        VersionStatus.rejected: settings.keep_rejected_weights,
        VersionStatus.retired: settings.keep_retired_weights,
    }
    folders: list[str] = []
    root = settings.resolved_adapter_dir
    for status, n in keep.items():
        for version in adapter_repo.past_retention(
            session, tenant_id=tenant_id, status=status, keep=n
        ):
            folder = adapter_repo.drop_weights(session, version=version)
            if folder and Path(folder).resolve().is_relative_to(root):
                folders.append(folder)
    session.flush()
    return folders
