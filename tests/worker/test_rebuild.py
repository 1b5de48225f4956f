"""The rebuild job (an update with mode ``rebuild``) on the real database with a tiny model:
the adapter trained again from the base model on the learned documents, so that deleted
documents leave the weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from seal.lora import save_adapter
from service.store.models import (
    AdapterVersion,
    Document,
    DocumentStatus,
    Job,
    JobStatus,
    Tenant,
    UpdateMode,
    VersionStatus,
)
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from tests.factories import make_document, make_job, make_self_edit, make_tenant
from worker.config import student_spec
from worker.jobs import rebuild as rebuild_module
from worker.jobs.update import run_update
from worker.runtime import Runtime

KEPT = "Quenby founded Zorblat in 1987."
FORGOTTEN = "The Vexmoor archive holds 40,000 maps."


def _reload(session: Session, row):  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.get(type(row), row.id)


def _learned(session: Session, tenant: Tenant, title: str, text: str, edit: str) -> Document:
    doc = make_document(
        session,
        tenant,
        title=title,
        text=text,
        status=DocumentStatus.learned,
        questions=[(f"What do you know about {title}?", text.split()[0])],
    )
    make_self_edit(session, doc, text=edit, selected=True)
    make_self_edit(session, doc, text=f"not kept: {title}", selected=False)
    return doc


def _active_version(
    session: Session, tenant: Tenant, runtime: Runtime, folder: Path
) -> AdapterVersion:
    """An active adapter version with a real artifact, as a promoted update leaves it."""
    digest = save_adapter(
        runtime.student.fresh_state("student"), student_spec(runtime.settings), folder
    )
    version = adapter_repo.create_adapter_version(
        session, tenant_id=tenant.id, parent_id=None, artifact_uri=str(folder), checksum=digest
    )
    adapter_repo.promote_version(session, tenant_id=tenant.id, version=version)
    return version


def _one_learned(
    session: Session, runtime: Runtime, tmp_path: Path
) -> tuple[Tenant, AdapterVersion, Document, Job]:
    """A tenant whose active version 1 learned one document, and its queued rebuild job."""
    tenant, _ = make_tenant(session)
    v1 = _active_version(session, tenant, runtime, tmp_path / "v1")
    doc = _learned(session, tenant, "Zorblat", KEPT, "Zorblat was founded in 1987.")
    job = make_job(session, tenant, params={"mode": UpdateMode.rebuild})
    session.commit()
    return tenant, v1, doc, job


@dataclass
class TrainSpy:
    """Every ``train_on`` call of the job (its sequences and starting state); each hook runs
    with the call's number before it trains."""

    calls: list[dict] = field(default_factory=list)
    hooks: list[Callable[[int], None]] = field(default_factory=list)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> TrainSpy:
    spy = TrainSpy()
    real = rebuild_module.train_on

    def train_on(host, sequences, config, *, init, on_step=None):  # type: ignore[no-untyped-def]
        spy.calls.append({"sequences": list(sequences), "init": init})
        for hook in spy.hooks:
            hook(len(spy.calls))
        return real(host, sequences, config, init=init, on_step=on_step)

    monkeypatch.setattr(rebuild_module, "train_on", train_on)
    return spy


def test_a_rebuild_trains_from_the_base_model_on_the_learned_documents_only(
    session: Session, runtime: Runtime, tmp_path: Path, spy: TrainSpy
) -> None:
    tenant, _ = make_tenant(session)
    v1 = _active_version(session, tenant, runtime, tmp_path / "v1")
    kept = _learned(session, tenant, "Zorblat", KEPT, "Zorblat was founded in 1987.")
    gone = _learned(session, tenant, "Vexmoor", FORGOTTEN, "Vexmoor keeps maps.")
    kept.learned_version_id = gone.learned_version_id = v1.id
    pending = make_document(session, tenant, title="Pending", text="Not learned yet.")
    document_repo.delete_document(session, tenant_id=tenant.id, document_id=gone.id)
    job = make_job(session, tenant, params={"mode": UpdateMode.rebuild, "seed": 3})
    session.commit()

    run_update(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded, job.error
    assert job.progress == 1.0 and job.message == "rebuilt version 2 promoted"
    [call] = spy.calls
    assert call["init"] is None  # from the base model, not from v1
    trained = "\n".join(call["sequences"])
    assert KEPT in trained and "Zorblat was founded in 1987." in trained
    assert "Vexmoor" not in trained and "Not learned yet." not in trained
    assert "not kept" not in trained
    v2 = adapter_repo.active_adapter(session, tenant_id=tenant.id)
    assert v2 is not None and v2.number == 2 and v2.parent_id is None and v2.job_id == job.id
    assert _reload(session, v1).status == VersionStatus.retired
    assert v2.metrics["mode"] == UpdateMode.rebuild and v2.metrics["documents"] == 1
    assert v2.metrics["seed"] == 3 and v2.metrics["attempts"] == 1
    assert v2.metrics["train_sequences"] == 2 and v2.metrics["train_tokens"] > 0
    assert Path(v2.artifact_uri or "").is_dir()
    assert job.result is not None and job.result["adapter_version"] == 2
    assert job.result["promoted"] is True and job.result["documents"] == 1
    # documents are only read
    assert _reload(session, kept).status == DocumentStatus.learned
    assert _reload(session, kept).learned_version_id == v1.id
    assert _reload(session, pending).status == DocumentStatus.pending


def test_a_document_deleted_while_a_rebuild_trains_starts_it_again_without_it(
    session: Session,
    runtime: Runtime,
    tmp_path: Path,
    spy: TrainSpy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, _ = make_tenant(session)
    _active_version(session, tenant, runtime, tmp_path / "v1")
    _learned(session, tenant, "Zorblat", KEPT, "Zorblat was founded in 1987.")
    gone = _learned(session, tenant, "Vexmoor", FORGOTTEN, "Vexmoor keeps maps.")
    job = make_job(session, tenant, params={"mode": UpdateMode.rebuild})
    session.commit()

    seen: list[float] = []
    real_set = job_repo.report_progress

    def record(session: Session, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["progress"])
        return real_set(session, **kwargs)

    monkeypatch.setattr(job_repo, "report_progress", record)

    def delete_during_the_first_attempt(call: int) -> None:
        if call == 1:
            with runtime.sessions() as other:
                assert document_repo.delete_document(
                    other, tenant_id=tenant.id, document_id=gone.id
                )
                other.commit()

    spy.hooks.append(delete_during_the_first_attempt)
    run_update(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded, job.error
    assert len(spy.calls) == 2
    assert seen == sorted(seen) and job.progress == 1.0, "progress went backwards"
    assert FORGOTTEN in "\n".join(spy.calls[0]["sequences"])
    assert FORGOTTEN not in "\n".join(spy.calls[1]["sequences"])
    versions = session.scalars(
        select(AdapterVersion).where(AdapterVersion.tenant_id == tenant.id)
    ).all()
    assert sorted(v.number for v in versions) == [1, 2]  # the first attempt recorded nothing
    v2 = adapter_repo.active_adapter(session, tenant_id=tenant.id)
    assert v2 is not None and v2.metrics["attempts"] == 2 and v2.metrics["documents"] == 1
    folders = sorted(p.name for p in (runtime.settings.resolved_adapter_dir / tenant.id).iterdir())
    assert folders == [Path(v2.artifact_uri or "").name]  # the first attempt's folder is gone


def test_a_rebuild_with_no_learned_documents_left_serves_the_base_model(
    session: Session, runtime: Runtime, tmp_path: Path, spy: TrainSpy
) -> None:
    tenant, _ = make_tenant(session)
    v1 = _active_version(session, tenant, runtime, tmp_path / "v1")
    make_document(session, tenant, text="Pending, not learned.")
    job = make_job(session, tenant, params={"mode": UpdateMode.rebuild})
    session.commit()

    run_update(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded, job.error
    assert spy.calls == []  # nothing to train
    assert job.result is not None and job.result["adapter_version"] is None
    assert job.result["promoted"] is True and "base model" in (job.message or "")
    assert adapter_repo.active_adapter(session, tenant_id=tenant.id) is None
    assert _reload(session, v1).status == VersionStatus.retired


def test_a_rebuild_does_not_undo_a_rollback_made_while_it_ran(
    session: Session, runtime: Runtime, tmp_path: Path, spy: TrainSpy
) -> None:
    tenant, v1, _doc, job = _one_learned(session, runtime, tmp_path)

    def roll_back_to_the_base_model(call: int) -> None:
        with runtime.sessions() as other:
            adapter_repo.promote_version(other, tenant_id=tenant.id, version=None)
            other.commit()

    spy.hooks.append(roll_back_to_the_base_model)
    run_update(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded, job.error
    assert job.result is not None and job.result["promoted"] is False
    assert "active version changed" in job.result["rejected_because"]
    assert adapter_repo.active_adapter(session, tenant_id=tenant.id) is None
    v2 = adapter_repo.get_adapter_version(session, tenant_id=tenant.id, number=2)
    assert v2 is not None and v2.status == VersionStatus.rejected
    assert _reload(session, v1).status == VersionStatus.retired


def test_a_rebuild_cancelled_while_it_trains_records_nothing(
    session: Session, runtime: Runtime, tmp_path: Path, spy: TrainSpy
) -> None:
    tenant, v1, doc, job = _one_learned(session, runtime, tmp_path)

    def cancel(call: int) -> None:
        with runtime.sessions() as other:
            row = other.get(Job, job.id)
            assert row is not None
            job_repo.cancel_job(other, job=row)
            other.commit()

    spy.hooks.append(cancel)
    run_update(runtime, job.id)

    assert _reload(session, job).status == JobStatus.cancelled
    assert adapter_repo.active_adapter(session, tenant_id=tenant.id).id == v1.id  # type: ignore[union-attr]
    assert session.scalars(
        select(AdapterVersion).where(AdapterVersion.tenant_id == tenant.id)
    ).all() == [v1]
    assert _reload(session, doc).status == DocumentStatus.learned
    folder = runtime.settings.resolved_adapter_dir / tenant.id
    assert not folder.exists() or not any(folder.iterdir())
