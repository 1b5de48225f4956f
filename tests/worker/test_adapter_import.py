"""Bringing an adapter of one's own: ``POST /v1/adapters`` checks the archive's form, and the
``adapter_import`` job checks it against the base model, judges it through the gate and records
it as a version: the round trip export -> import gives the same weights back."""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from pathlib import Path

import torch
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from seal.lora import (
    CONFIG_FILE,
    STUDENT,
    WEIGHTS_FILE,
    LoraSpec,
    checksum,
    load_adapter,
    save_adapter,
)
from service.domain import adapter_imports
from service.enqueue import ADAPTER_IMPORT_TASK
from service.store.models import (
    AdapterVersion,
    DocumentStatus,
    Job,
    JobKind,
    JobStatus,
    VersionStatus,
)
from service.store.repositories import adapters as adapter_repo
from tests.factories import auth, make_document, make_tenant, queued_tasks
from worker.config import student_spec
from worker.jobs.adapter_import import run_import
from worker.runtime import Runtime


def _zip(folder: Path, *, drop: str | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if name != drop:
                zf.write(folder / name, name)
        for name, raw in (extra or {}).items():
            zf.writestr(name, raw)
    return buffer.getvalue()


def _damaged(archive: bytes) -> bytes:
    """The zip with its first member's compressed bytes overwritten (its CRC then fails)."""
    start = archive.index(b"PK\x03\x04") + 30 + len(CONFIG_FILE)
    return archive[:start] + bytes(16) + archive[start + 16 :]


def _with_weights(folder: Path, weights: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.write(folder / CONFIG_FILE, CONFIG_FILE)
        zf.writestr(WEIGHTS_FILE, weights)
    return buffer.getvalue()


def _adapter(runtime: Runtime, folder: Path, spec: LoraSpec | None = None, seed: int = 1) -> str:
    """A trained-looking adapter for the runtime's base model (or of another ``spec``)."""
    fresh = runtime.student.fresh_state(STUDENT)
    generator = torch.Generator().manual_seed(seed)
    if spec is None:
        state = {k: torch.randn(v.shape, generator=generator) * 0.3 for k, v in fresh.items()}
    else:  # another rank: the same names, other shapes
        state = {
            k: torch.randn((spec.rank, v.shape[1]) if ".lora_A." in k else (v.shape[0], spec.rank))
            for k, v in fresh.items()
        }
    return save_adapter(state, spec or student_spec(runtime.settings), folder)


def _imported(session: Session, runtime: Runtime, tenant_id: str, folder: Path) -> Job:
    """The job ``POST /v1/adapters`` queues, for the files of ``folder``."""
    job = Job(tenant_id=tenant_id, kind=JobKind.adapter_import, status=JobStatus.queued)
    session.add(job)
    session.flush()
    staging = adapter_imports.staging_folder(runtime.settings, tenant_id, job.id)
    staging.mkdir(parents=True)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        (staging / name).write_bytes((folder / name).read_bytes())
    job.params = {"staging": str(staging)}
    session.commit()
    return job


def test_an_imported_adapter_becomes_a_version_with_its_own_weights(
    session: Session, runtime: Runtime, tmp_path: Path
) -> None:
    tenant, _ = make_tenant(session)
    digest = _adapter(runtime, tmp_path / "mine")
    job = _imported(session, runtime, tenant.id, tmp_path / "mine")

    assert run_import(runtime, job.id)

    session.expire_all()
    job = session.get(Job, job.id)
    assert job is not None and job.status == JobStatus.succeeded, job.error
    assert job.result is not None and job.result["promoted"] is True  # nothing to judge it on
    version = session.query(AdapterVersion).one()
    assert version.status == VersionStatus.active and version.metrics["imported"] is True
    assert checksum(load_adapter(Path(version.artifact_uri or ""))) == digest == version.checksum
    assert not Path(job.params["staging"]).exists()


def test_an_adapter_of_another_shape_fails_its_job_with_the_reason(
    session: Session, runtime: Runtime, tmp_path: Path
) -> None:
    tenant, _ = make_tenant(session)
    _adapter(runtime, tmp_path / "wide", spec=LoraSpec(rank=16, alpha=8))
    job = _imported(session, runtime, tenant.id, tmp_path / "wide")
    with contextlib.suppress(Exception):  # the lifecycle records the failure, raises it again
        run_import(runtime, job.id)
    session.expire_all()
    job = session.get(Job, job.id)
    assert job is not None and job.status == JobStatus.failed
    assert job.error_code == "adapter_refused" and "does not fit the base model" in (
        job.error or ""
    )
    assert adapter_repo.active_adapter(session, tenant_id=tenant.id) is None


def test_an_import_is_judged_on_what_the_tenant_learned(
    session: Session, runtime: Runtime, tmp_path: Path
) -> None:
    """With learned documents, the gate compares the import with the active version on their
    probe questions, and the verdict is the job's story."""
    tenant, _ = make_tenant(session)
    make_document(
        session, tenant, questions=[("Capital?", "Poseidonia")], status=DocumentStatus.learned
    )
    _adapter(runtime, tmp_path / "mine")
    job = _imported(session, runtime, tenant.id, tmp_path / "mine")
    run_import(runtime, job.id)
    session.expire_all()
    job = session.get(Job, job.id)
    assert job is not None and job.status == JobStatus.succeeded, job.error
    assert job.result is not None and job.result["metrics"]["probe_questions"] == 1


def test_the_api_checks_an_archive_and_queues_its_job(
    client: TestClient, session: Session, runtime: Runtime, tmp_path: Path, broker
) -> None:  # type: ignore[no-untyped-def]
    _, key = make_tenant(session)
    folder = tmp_path / "mine"
    _adapter(runtime, folder)

    def post(body: bytes) -> tuple[int, str]:
        response = client.post(
            "/v1/adapters", content=body, headers={**auth(key), "content-type": "application/zip"}
        )
        return response.status_code, response.text

    # the service's settings (rank 32) are not the worker's tiny ones (rank 4): refused
    status, text = post(_zip(folder))
    assert status == 422 and "SEAL_LORA_RANK" in text
    service_shape = tmp_path / "service-shape"  # the service's rank and alpha: its form passes
    _adapter(runtime, service_shape, spec=LoraSpec(rank=32, alpha=64))
    status, text = post(_zip(service_shape, extra={"seal_card.json": b"{}"}))
    assert status == 202, text
    job = session.get(Job, json.loads(text)["job_id"])
    assert job is not None and job.kind == JobKind.adapter_import
    staged = Path(job.params["staging"])
    assert (staged / WEIGHTS_FILE).read_bytes() == (service_shape / WEIGHTS_FILE).read_bytes()
    assert [t for t, _ in queued_tasks(broker)] == [ADAPTER_IMPORT_TASK]
    for body, why in (
        (b"not a zip", "not a zip"),
        (
            _zip(folder, drop=WEIGHTS_FILE, extra={"adapter_model.bin": b"pickle"}),
            "safetensors only",
        ),
        (_zip(folder, drop=CONFIG_FILE), "no adapter_config.json"),
        (_damaged(_zip(service_shape)), "cannot be read"),
        (_with_weights(service_shape, b"\x08" + bytes(7) + b"[1, 2]  "), "not a safetensors"),
        (_with_weights(service_shape, b"\x30" + bytes(7) + b'{"x.lora_A.q_proj.w": 1}'), "safet"),
    ):
        status, text = post(body)
        assert status == 422 and why in text, text
