"""The domain layer without HTTP: its rules called as functions of a session, and the hooks
that tie files to the transaction (the request's one commit point)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.domain import adapters as adapter_domain
from service.domain import documents as document_domain
from service.domain import tenants as tenant_domain
from service.domain import updates as update_domain
from service.domain.errors import Conflict, JobFinished, NotFound, VersionIsActive
from service.domain.files import remove_after_commit
from service.settings import Settings
from service.store.db import session_scope
from service.store.hooks import after_commit, after_rollback
from service.store.models import DocumentStatus, Job, JobStatus, UpdateMode, VersionStatus
from tests.factories import make_adapter_version, make_document, make_job, make_tenant


class Boom(Exception):
    pass


def test_hooks_run_for_the_end_the_transaction_had(
    test_sessionmaker: sessionmaker[Session],
) -> None:
    ran: list[str] = []
    with session_scope(test_sessionmaker) as session:
        after_commit(session, lambda: ran.append("commit 1"))
        after_commit(session, lambda: ran.append("commit 2"))
        after_rollback(session, lambda: ran.append("rollback"))
    assert ran == ["commit 1", "commit 2"]

    ran.clear()
    with pytest.raises(Boom), session_scope(test_sessionmaker) as session:
        after_commit(session, lambda: ran.append("commit"))
        after_rollback(session, lambda: ran.append("undo 1"))
        after_rollback(session, lambda: ran.append("undo 2"))
        raise Boom
    assert ran == ["undo 2", "undo 1"]  # last done, first undone


def test_a_failing_hook_does_not_stop_the_others(
    test_sessionmaker: sessionmaker[Session],
) -> None:
    ran: list[str] = []
    with session_scope(test_sessionmaker) as session:
        after_commit(session, lambda: (_ for _ in ()).throw(OSError("disk")))
        after_commit(session, lambda: ran.append("next"))
    assert ran == ["next"]


def _folder(root: Path) -> Path:
    folder = root / "adapters" / "v1"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def test_a_folder_goes_once_the_transaction_commits(
    test_sessionmaker: sessionmaker[Session], tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    with session_scope(test_sessionmaker) as session:
        assert remove_after_commit(session, folder)
        assert not folder.exists()  # moved aside, not yet deleted
        assert len(list(folder.parent.iterdir())) == 1
    assert list(folder.parent.iterdir()) == []


def test_a_folder_comes_back_when_the_transaction_rolls_back(
    test_sessionmaker: sessionmaker[Session], tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    with pytest.raises(Boom), session_scope(test_sessionmaker) as session:
        assert remove_after_commit(session, folder)
        raise Boom
    assert (folder / "adapter_model.safetensors").read_bytes() == b"weights"
    assert [p.name for p in folder.parent.iterdir()] == ["v1"]


def test_a_folder_that_cannot_be_moved_is_reported_and_kept(
    session: Session, tmp_path: Path
) -> None:
    assert not remove_after_commit(session, tmp_path / "missing")


def test_the_same_document_twice_is_one_document_with_its_questions_merged(
    session: Session,
) -> None:
    tenant, _ = make_tenant(session)
    first = document_domain.add_document(
        session, tenant, title="Atlantis", text="Its capital is Poseidonia.", questions=[]
    )
    again = document_domain.add_document(
        session,
        tenant,
        title="Atlantis",
        text="Its capital is Poseidonia.",
        questions=[("What is its capital?", "Poseidonia")] * 2,
    )
    assert first.created and not again.created
    assert again.document.id == first.document.id
    assert [(q.question, q.answer) for q in again.questions] == [
        ("What is its capital?", "Poseidonia")
    ]
    other, _ = make_tenant(session)
    theirs = document_domain.add_document(
        session, other, title="Atlantis", text="Its capital is Poseidonia.", questions=[]
    )
    assert theirs.created and theirs.document.id != first.document.id


def test_forgetting_a_learned_document_opens_a_rebuild(session: Session) -> None:
    tenant, _ = make_tenant(session)
    learned = make_document(session, tenant, status=DocumentStatus.learned)
    pending = make_document(session, tenant)
    plain = document_domain.delete_document(session, tenant, pending.id, forget=True)
    assert plain.rebuild_job_id is None  # nothing of it was learned
    deletion = document_domain.delete_document(session, tenant, learned.id, forget=True)
    job = session.get(Job, deletion.rebuild_job_id)
    assert job is not None and job.params == {"mode": UpdateMode.rebuild}
    with pytest.raises(NotFound):
        document_domain.delete_document(session, tenant, learned.id, forget=False)


def test_a_document_being_learned_is_a_conflict_that_names_the_job(session: Session) -> None:
    tenant, _ = make_tenant(session)
    document = make_document(session, tenant, status=DocumentStatus.learning)
    job = make_job(session, tenant, status=JobStatus.running, params={"mode": "select"})
    with pytest.raises(Conflict, match=f"being learned by update job {job.id}"):
        document_domain.delete_document(session, tenant, document.id, forget=False)


def test_the_active_version_keeps_its_weights_with_a_typed_conflict(
    session: Session, settings: Settings
) -> None:
    tenant, _ = make_tenant(session)
    active = make_adapter_version(session, tenant, status=VersionStatus.active)
    with pytest.raises(VersionIsActive) as raised:
        adapter_domain.delete_weights(session, settings, tenant, active.number)
    assert isinstance(raised.value, Conflict) and not isinstance(raised.value, ValueError)
    assert active.checksum is not None


def test_a_finished_job_cannot_be_cancelled(session: Session) -> None:
    tenant, _ = make_tenant(session)
    job = make_job(session, tenant, status=JobStatus.succeeded)
    with pytest.raises(JobFinished, match="already succeeded"):
        update_domain.cancel_job(session, tenant.id, job.id)


def test_a_tenant_deleted_in_a_rolled_back_transaction_keeps_its_folders(
    test_sessionmaker: sessionmaker[Session], settings: Settings
) -> None:
    with session_scope(test_sessionmaker) as session:
        tenant, _ = make_tenant(session)
        tenant_id = tenant.id
    folder = settings.resolved_adapter_dir / tenant_id / "1"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")

    with pytest.raises(Boom), session_scope(test_sessionmaker) as session:
        tenant = tenant_domain.get_tenant(session, tenant_id)
        deletion = tenant_domain.delete_tenant(session, settings, tenant)
        assert deletion.folders_removed == [str(folder.parent)] and not folder.exists()
        raise Boom
    assert folder.exists()

    with session_scope(test_sessionmaker) as session:
        tenant = tenant_domain.get_tenant(session, tenant_id)
        deletion = tenant_domain.delete_tenant(session, settings, tenant)
    assert not folder.parent.exists() and deletion.folders_left == []
    with session_scope(test_sessionmaker) as session, pytest.raises(NotFound):
        tenant_domain.get_tenant(session, tenant_id)
