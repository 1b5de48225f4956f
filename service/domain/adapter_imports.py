"""An adapter a tenant brings (``POST /v1/adapters``): a zip of PEFT's two files, checked here
for what can be checked without the model (a zip within its size, safetensors only, a LoRA of
the service's rank, scale and target modules, tensors named as PEFT names them), then left in
a staging folder for a job (``adapter_import``) that checks its shapes against the base model,
judges it through the same gate as an update, and records it as a candidate version that the
gate promotes or rejects."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from service.domain import quotas
from service.domain.adapters import CONFIG_FILE, WEIGHTS_FILE
from service.domain.errors import InvalidRequest
from service.enqueue import ADAPTER_IMPORT_TASK, enqueue_after_commit
from service.limits import ADAPTER_ARCHIVE_BYTES
from service.settings import Settings
from service.store.hooks import after_rollback
from service.store.models import Job, JobKind, Tenant
from service.store.repositories import jobs as job_repo
from service.store.repositories import tenants as tenant_repo

#: Float types a LoRA's weights may come in.
DTYPES = {"F32", "F16", "BF16"}


def staging_folder(settings: Settings, tenant_id: str, job_id: str) -> Path:
    return settings.resolved_adapter_dir / tenant_id / "imports" / job_id


def _members(content: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile as exc:
        raise InvalidRequest("the body is not a zip archive (application/zip)") from exc
    names = {info.filename.rsplit("/", 1)[-1]: info for info in archive.infolist()}
    if WEIGHTS_FILE not in names:
        pickled = "adapter_model.bin" in names
        why = ": a pickle (adapter_model.bin) is refused, safetensors only" if pickled else ""
        raise InvalidRequest(f"the archive holds no adapter_model.safetensors{why}")
    if CONFIG_FILE not in names:
        raise InvalidRequest("the archive holds no adapter_config.json")
    wanted = [names[CONFIG_FILE], names[WEIGHTS_FILE]]
    if sum(info.file_size for info in wanted) > ADAPTER_ARCHIVE_BYTES:
        raise InvalidRequest(f"the adapter is over {ADAPTER_ARCHIVE_BYTES:,} bytes unpacked")
    try:
        return {info.filename.rsplit("/", 1)[-1]: archive.read(info) for info in wanted}
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError) as exc:
        # a damaged member, an unknown compression, an encrypted file
        raise InvalidRequest(f"the archive's files cannot be read ({type(exc).__name__})") from exc


def _check_config(raw: bytes, settings: Settings) -> dict[str, Any]:
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest("adapter_config.json is not JSON") from exc
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise InvalidRequest("adapter_config.json is not a LoRA's (peft_type LORA)")
    targets = config.get("target_modules")
    theirs = sorted(targets) if isinstance(targets, list) else targets
    expected = {
        "r": settings.lora_rank,
        "lora_alpha": settings.lora_alpha,
        "target_modules": sorted(settings.lora_targets),
    }
    found = {"r": config.get("r"), "lora_alpha": config.get("lora_alpha"), "target_modules": theirs}
    wrong = [k for k in expected if found[k] != expected[k]]
    if wrong:
        raise InvalidRequest(
            f"the adapter's {wrong[0]} is {found[wrong[0]]!r}; this service serves LoRAs with "
            f"{wrong[0]} {expected[wrong[0]]!r} (SEAL_LORA_RANK, SEAL_LORA_ALPHA, "
            "SEAL_LORA_TARGETS)"
        )
    return config


def _check_weights(raw: bytes, settings: Settings) -> int:
    """The safetensors header (read without loading a tensor): every tensor a LoRA matrix of
    a target module, in a float type, its bytes where the header says. Returns their count."""
    not_safetensors = InvalidRequest("adapter_model.safetensors is not a safetensors file")
    try:
        (size,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + size])
    except (struct.error, ValueError) as exc:
        raise not_safetensors from exc
    if not isinstance(header, dict):
        raise not_safetensors
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise InvalidRequest("adapter_model.safetensors holds no tensor")
    for name, info in tensors.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise not_safetensors
        lora = ".lora_A." in name or ".lora_B." in name
        if not lora or not any(f".{t}." in name for t in settings.lora_targets):
            raise InvalidRequest(f"tensor {name!r} is not a LoRA matrix of a target module")
        if info.get("dtype") not in DTYPES:
            raise InvalidRequest(f"tensor {name!r} is {info.get('dtype')}, not a float type")
        start, end = offsets
        if not (isinstance(start, int) and isinstance(end, int)):
            raise not_safetensors
        if not 0 <= start <= end <= len(raw) - 8 - size:
            raise InvalidRequest("adapter_model.safetensors is cut short")
    return len(tensors)


def request_import(
    session: Session,
    settings: Settings,
    tenant: Tenant,
    content: bytes,
    limits: Mapping[str, int],
) -> Job:
    """Check the archive, keep its two files for the job and queue the job (sent once this
    commits; the files go if it rolls back)."""
    files = _members(content)
    _check_config(files[CONFIG_FILE], settings)
    _check_weights(files[WEIGHTS_FILE], settings)
    tenant_repo.hold_tenant(session, tenant_id=tenant.id)
    quotas.check_room_for_job(session, limits, tenant.id)
    job = job_repo.create_job(session, tenant_id=tenant.id, kind=JobKind.adapter_import)
    folder = staging_folder(settings, tenant.id, job.id)
    folder.mkdir(parents=True)
    after_rollback(session, lambda: shutil.rmtree(folder, ignore_errors=True))
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    job.params = {"staging": str(folder)}
    session.flush()
    enqueue_after_commit(session, ADAPTER_IMPORT_TASK, job_id=job.id)
    return job
