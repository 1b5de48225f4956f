"""The teacher shipped with the service: a distilled teacher adapter in the package
(``seal/teachers/default/``, bf16, with its checksum and card), so that a fresh install writes
self-edits with it and needs no training.

On startup (``seal run``/``seal prepare``, and each worker's runtime) a store without any
shared teacher version gets the shipped one as shared version 1, promoted: it then writes
every tenant's self-edits, a tenant's own ReST-EM rounds start from it, and a trained shared
version replaces it the usual way. A store that has shared versions of its own is left alone.
``SEAL_BUNDLED_TEACHER=false`` keeps the untrained base model instead: nothing is registered,
and a registered shipped version is not used.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from sqlalchemy.orm import Session, sessionmaker

import seal
from seal.lora import AdapterState, load_adapter, save_adapter
from service.artifacts import artifacts
from service.settings import Settings
from service.store.db import in_transaction
from service.store.models import TeacherVersion
from service.store.repositories import teachers as teacher_repo
from worker.config import teacher_spec

log = logging.getLogger(__name__)

#: Where the shipped teacher lies in the installed package.
BUNDLED_TEACHER_DIR = Path(seal.__file__).parent / "teachers" / "default"
#: ``metrics["kind"]`` of the shipped teacher's version.
BUNDLED = "bundled"


#: The dtypes a teacher is exported in.
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def write_bundle(
    state: AdapterState,
    settings: Settings,
    out: Path,
    *,
    dtype: str = "bfloat16",
    metrics: dict | None = None,
    source: str = "",
) -> str:
    """Write a teacher adapter as the shipped teacher is kept: the weights in ``dtype``, and
    ``seal.json`` with their checksum, the base model, the LoRA, where it came from and its
    metrics. Returns the checksum."""
    spec = teacher_spec(settings)
    return save_adapter(
        {k: v.to(DTYPES[dtype]) for k, v in state.items()},
        spec,
        out,
        base_model=settings.teacher_model,
        extra={
            "kind": "teacher",
            "base_model": settings.teacher_model,
            "lora": {"rank": spec.rank, "alpha": spec.alpha, "targets": sorted(spec.targets)},
            "dtype": dtype,
            "exported_from": source,
            "metrics": metrics or {},
        },
    )


def bundled_meta(folder: Path = BUNDLED_TEACHER_DIR) -> dict | None:
    """The shipped teacher's ``seal.json`` (checksum, base model, LoRA, measurements), or
    None when the package holds none."""
    path = folder / "seal.json"
    return json.loads(path.read_text()) if path.is_file() else None


def fits(settings: Settings, meta: dict) -> str | None:
    """Why the shipped teacher does not fit the configured teacher (None: it fits)."""
    if settings.external_teacher:
        return "the teacher is an external endpoint (SEAL_TEACHER_URL)"
    lora = meta.get("lora", {})
    base = meta.get("base_model")
    if base != settings.teacher_model:
        return f"it was trained on {base!r}, the teacher is {settings.teacher_model!r}"
    targets = sorted(lora.get("targets", []))
    if lora.get("rank") != settings.teacher_lora_rank or targets != sorted(settings.lora_targets):
        return (
            f"its LoRA is r{lora.get('rank')} on {lora.get('targets')}, the teacher's is "
            f"r{settings.teacher_lora_rank} on {settings.lora_targets}"
        )
    return None


def register_bundled_teacher(
    settings: Settings, sessions: sessionmaker[Session], folder: Path = BUNDLED_TEACHER_DIR
) -> TeacherVersion | None:
    """Make the shipped teacher shared version 1 of a store that has no shared teacher (its
    weights checked against the shipped checksum and copied next to the other teachers);
    return its version, or None where it does not apply."""
    if not settings.bundled_teacher:
        return None
    meta = bundled_meta(folder)
    if meta is None:
        return None
    why = fits(settings, meta)
    if why is not None:
        log.warning("the shipped teacher is not used: %s", why)
        return None
    digest = meta["checksum"]

    def unit(session: Session) -> TeacherVersion | None:
        shared = teacher_repo.shared_teacher_versions(session)
        for version in shared:
            if version.checksum == digest:
                return version
        if shared:
            return None  # the store has shared teachers of its own
        target = settings.resolved_adapter_dir / "teachers" / "shared" / f"bundled-{digest[:16]}"
        if not target.exists():
            load_adapter(folder, expected_checksum=digest)  # refuses a damaged file
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(folder, partial)
            partial.rename(target)
        uri = artifacts(settings).publish(target, digest)  # object storage: its objects
        version = teacher_repo.create_teacher_version(
            session,
            tenant_id=None,
            parent_id=None,
            artifact_uri=uri,
            checksum=digest,
            metrics={
                **meta.get("metrics", {}),
                "kind": BUNDLED,
                "trained_as": meta.get("metrics", {}).get("kind"),
                "exported_from": meta.get("exported_from"),
            },
        )
        teacher_repo.promote_teacher_version(session, version=version)
        log.info("the shipped teacher is shared teacher version %d", version.number)
        return version

    return in_transaction(sessions, unit)


def usable(settings: Settings, version: TeacherVersion | None) -> TeacherVersion | None:
    """``version``, or None (the untrained base model) when it is the shipped teacher and
    ``SEAL_BUNDLED_TEACHER`` is off."""
    shipped = version is not None and (version.metrics or {}).get("kind") == BUNDLED
    return None if shipped and not settings.bundled_teacher else version
