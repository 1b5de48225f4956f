"""The repository functions the worker uses, against the real database."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.domain.errors import Gone, JobFinished
from service.store.models import (
    DocumentStatus,
    Job,
    JobStatus,
    ProbeSource,
    TeacherDomain,
    VersionStatus,
)
from service.store.repositories import adapters, documents, jobs, learning, teachers
from tests.factories import (
    make_adapter_version,
    make_document,
    make_job,
    make_reward,
    make_self_edit,
    make_teacher_version,
    make_tenant,
)


def test_job_lifecycle(session: Session) -> None:
    tenant, _ = make_tenant(session)
    job = make_job(session, tenant)
    started = jobs.start_job(session, job_id=job.id, message="writing self-edits")
    assert started is not None and started.status == JobStatus.running
    assert started.started_at is not None
    assert jobs.start_job(session, job_id=job.id) is None  # only a queued job starts

    jobs.set_job_progress(session, job_id=job.id, progress=1.7, message="training")
    assert (job.progress, job.message) == (1.0, "training")
    jobs.finish_job(session, job_id=job.id, status=JobStatus.succeeded, result={"version": 1})
    session.expire_all()
    fresh = jobs.get_job(session, job_id=job.id)
    assert fresh is not None
    assert (fresh.status, fresh.result, fresh.progress) == (
        JobStatus.succeeded,
        {"version": 1},
        1.0,
    )
    assert fresh.finished_at is not None and fresh.finished_at.tzinfo is not None
    with pytest.raises(ValueError):
        jobs.finish_job(session, job_id=job.id, status=JobStatus.running)


def test_cancellation_is_seen_by_the_worker(session: Session) -> None:
    tenant, _ = make_tenant(session)
    job = make_job(session, tenant, status=JobStatus.running)
    assert not jobs.is_cancelled(session, job_id=job.id)
    jobs.cancel_job(session, job=job)
    assert jobs.is_cancelled(session, job_id=job.id)
    with pytest.raises(JobFinished, match="is already cancelled"):
        jobs.cancel_job(session, job=job)
    # a job that is gone (its tenant was deleted) stops its worker too
    assert jobs.is_cancelled(session, job_id="no-such-job")


def test_pending_documents_and_their_probe_questions(session: Session) -> None:
    tenant, _ = make_tenant(session)
    other, _ = make_tenant(session)
    first = make_document(session, tenant, questions=[("q1", "a1"), ("q2", "a2")])
    second = make_document(session, tenant)
    third = make_document(session, tenant, status=DocumentStatus.learned)
    make_document(session, other)
    assert documents.count_documents(session, tenant_id=tenant.id) == 2
    second.error = "an earlier update failed"
    session.flush()
    claimed = documents.claim_pending_documents(session, tenant_id=tenant.id)
    assert [d.id for d in claimed] == [first.id, second.id]
    assert [(d.status, d.error) for d in claimed] == [(DocumentStatus.learning, None)] * 2
    assert documents.count_documents(session, tenant_id=tenant.id) == 0
    assert documents.count_documents(session, tenant_id=other.id) == 1
    assert documents.claim_pending_documents(session, tenant_id=tenant.id) == []

    probes = documents.probe_questions_for_documents(session, document_ids=[first.id, second.id])
    assert [(p.question, p.answer) for p in probes[first.id]] == [("q1", "a1"), ("q2", "a2")]
    assert probes[second.id] == []
    documents.add_probe_question(
        session,
        tenant_id=tenant.id,
        document_id=second.id,
        question="q?",
        answer="a",
        source=ProbeSource.teacher,
    )
    teacher_only = documents.probe_questions_for_documents(
        session, document_ids=[first.id, second.id], sources=[ProbeSource.teacher]
    )
    assert [len(teacher_only[first.id]), len(teacher_only[second.id])] == [0, 1]

    version = make_adapter_version(session, tenant)
    documents.set_document_status(
        session,
        document_ids=[first.id, second.id],
        status=DocumentStatus.learned,
        learned_version_id=version.id,
    )
    learned = documents.list_documents_by_status(
        session, tenant_id=tenant.id, statuses=[DocumentStatus.learned]
    )
    assert [d.id for d in learned] == [first.id, second.id, third.id]
    assert first.learned_version_id == version.id


def test_duplicate_content_is_refused_by_the_database(session: Session) -> None:
    tenant, _ = make_tenant(session)
    make_document(session, tenant, title="T", text="same")
    with pytest.raises(IntegrityError), session.begin_nested():
        make_document(session, tenant, title=" T ", text="same ")


def test_versions_numbers_and_promotion(session: Session) -> None:
    tenant, _ = make_tenant(session)
    assert adapters.next_adapter_number(session, tenant_id=tenant.id) == 1
    assert adapters.active_adapter(session, tenant_id=tenant.id) is None
    v1 = adapters.create_adapter_version(
        session, tenant_id=tenant.id, parent_id=None, artifact_uri="/adapters/1"
    )
    assert (v1.number, v1.status) == (1, VersionStatus.candidate)
    assert adapters.promote_version(session, tenant_id=tenant.id, version=v1) is None
    v2 = adapters.create_adapter_version(
        session, tenant_id=tenant.id, parent_id=v1.id, artifact_uri="/adapters/2"
    )
    assert v2.number == 2
    previous = adapters.promote_version(session, tenant_id=tenant.id, version=v2)
    assert previous is v1 and v1.status == VersionStatus.retired
    assert adapters.active_adapter(session, tenant_id=tenant.id) is v2
    assert v2.promoted_at is not None
    with pytest.raises(ValueError):
        adapters.create_adapter_version(
            session, tenant_id=tenant.id, parent_id=None, status=VersionStatus.active
        )


def test_one_active_version_per_tenant_is_enforced_by_the_database(session: Session) -> None:
    tenant, _ = make_tenant(session)
    make_adapter_version(session, tenant, status=VersionStatus.active)
    v2 = make_adapter_version(session, tenant)
    with pytest.raises(IntegrityError), session.begin_nested():
        v2.status = VersionStatus.active
        session.flush()


def test_best_self_edits_per_document(session: Session) -> None:
    tenant, _ = make_tenant(session)
    doc_a = make_document(session, tenant)
    doc_b = make_document(session, tenant)
    weak, strong = make_self_edit(session, doc_a), make_self_edit(session, doc_a)
    useless = make_self_edit(session, doc_b)
    make_reward(session, weak, value=0.1)
    make_reward(session, strong, value=0.4)
    make_reward(session, useless, value=0.0)
    best = learning.best_self_edits(session, tenant_id=tenant.id, metric="probe_accuracy")
    assert [(s.id, v) for s, v in best] == [(strong.id, 0.4)]

    learning.mark_selected(session, self_edit_ids=[strong.id])
    selected = learning.list_self_edits(session, tenant_id=tenant.id, selected=True)
    assert [s.id for s, _ in selected] == [strong.id]


def test_teacher_versions(session: Session) -> None:
    assert teachers.active_teacher_version(session, tenant_id=None) is None
    t1 = make_teacher_version(session)
    teachers.promote_teacher_version(session, version=t1)
    t2 = make_teacher_version(session)
    assert t2.number == t1.number + 1
    teachers.promote_teacher_version(session, version=t2)
    assert teachers.active_teacher_version(session, tenant_id=None) is t2
    assert t1.status == VersionStatus.retired


def test_timestamps_are_timezone_aware_utc(session: Session) -> None:
    tenant, _ = make_tenant(session)
    job = make_job(session, tenant)
    paris = timezone(timedelta(hours=2))
    job.started_at = datetime(2025, 6, 1, 12, 0, tzinfo=paris)
    session.flush()
    session.expire_all()
    stored = session.scalars(select(Job).where(Job.id == job.id)).one()
    assert stored.started_at == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    assert stored.started_at is not None and stored.started_at.utcoffset() == timedelta(0)
    assert stored.created_at.tzinfo is not None
    stored.finished_at = datetime(2025, 6, 1, 12, 0)  # naive
    with pytest.raises(Exception, match="timezone-aware"):
        session.flush()


def test_teacher_versions_have_the_constraints_of_every_history(session: Session) -> None:
    """One number per owner and one active version per owner, the shared teacher (no tenant)
    included; the two domains are owners apart."""
    shared = make_teacher_version(session, status=VersionStatus.active)
    with session.begin_nested(), pytest.raises(IntegrityError):  # a second shared v1
        teachers.create_teacher_version(session, tenant_id=None, parent_id=None, number=1)
    with session.begin_nested(), pytest.raises(IntegrityError):  # a second active one
        twin = make_teacher_version(session)
        twin.status = VersionStatus.active
        session.flush()
    skills = teachers.create_teacher_version(
        session, tenant_id=None, parent_id=None, number=1, domain=TeacherDomain.skills
    )
    assert (skills.number, shared.number) == (1, 1)


def test_a_version_without_weights_is_never_made_active(session: Session) -> None:
    tenant, _ = make_tenant(session)
    empty = adapters.create_adapter_version(session, tenant_id=tenant.id, parent_id=None)
    with pytest.raises(Gone):
        adapters.promote_version(session, tenant_id=tenant.id, version=empty)
    assert adapters.active_adapter(session, tenant_id=tenant.id) is None
    teacher = make_teacher_version(session, artifact_uri=None)
    with pytest.raises(Gone):
        teachers.promote_teacher_version(session, version=teacher)
