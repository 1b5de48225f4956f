"""A tenant's adapter versions: deleting the weights of one not in use, the retention that
deletes those no one will use, and the archive a user takes a version away in (their rollback
is the one of every history: :func:`service.domain.versions.rollback`)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from service.artifacts import artifacts, is_remote
from service.domain.errors import Conflict, Gone, NotFound
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
    if is_remote(folder):
        assert folder is not None
        artifacts(settings).delete_after_commit(session, [folder])
        removed = folder
    elif folder is not None and Path(folder).exists():
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
    folder and their objects' URIs, for the caller to remove once this is committed
    (:meth:`service.artifacts.ArtifactStore.discard`)."""
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
            if folder and (is_remote(folder) or Path(folder).resolve().is_relative_to(root)):
                folders.append(folder)
    session.flush()
    return folders


#: PEFT's two files of an adapter (``seal.lora``, not imported here: it loads torch, which the
#: API loads only to chat or export) and the card an exported archive holds beside them.
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
CARD_FILE = "seal_card.json"


@dataclass(frozen=True)
class Archive:
    filename: str
    content: bytes
    checksum: str


def lineage(session: Session, version: AdapterVersion) -> list[int]:
    """The version's number, then its parent's, and so on back to the first it grew from."""
    numbers = [version.number]
    seen = {version.id}
    parent_id = version.parent_id
    while parent_id is not None and parent_id not in seen:
        parent = session.get(AdapterVersion, parent_id)
        if parent is None:
            break
        numbers.append(parent.number)
        seen.add(parent.id)
        parent_id = parent.parent_id
    return numbers


def archive(session: Session, settings: Settings, tenant: Tenant, number: int) -> Archive:
    """Version ``number`` as a zip a user takes away: PEFT's ``adapter_config.json`` and
    ``adapter_model.safetensors`` (``PeftModel.from_pretrained`` loads them on the base model
    unchanged) and a card: the base model, the version's lineage, status, metrics and the
    weights' checksum. The weights are checked against the recorded checksum first: an
    archive never carries weights that changed on disk (409 then, as chat refuses them)."""
    version = get_version(session, tenant, number)
    if not version.artifact_uri or not version.checksum:
        raise Gone(f"version {number} has no weights: they were deleted")
    folder = artifacts(settings).local(version.artifact_uri, version.checksum)
    files = {name: folder / name for name in (CONFIG_FILE, WEIGHTS_FILE)}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise Gone(f"version {number}'s weights are missing from the adapter store ({missing[0]})")
    from seal.lora import checksum as weights_checksum  # torch: loaded only when exporting
    from seal.lora import load_adapter

    if weights_checksum(load_adapter(folder)) != version.checksum:
        raise Conflict(f"version {number}'s weights do not match their checksum; roll back")
    card = {
        "format": "peft-lora",
        "base_model": settings.student_model,
        "tenant": tenant.name,
        "version": version.number,
        "lineage": lineage(session, version),
        "status": version.status.value,
        "created_at": version.created_at.isoformat(),
        "promoted_at": version.promoted_at.isoformat() if version.promoted_at else None,
        "metrics": version.metrics or {},
        "checksum": version.checksum,
        "checksum_of": "seal.lora.checksum: SHA-256 over each tensor's name, dtype and bytes",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, path in files.items():
            zf.write(path, name)
        zf.writestr(CARD_FILE, json.dumps(card, indent=2, default=str))
    return Archive(f"{tenant.name}-adapter-v{number}.zip", buffer.getvalue(), version.checksum)
