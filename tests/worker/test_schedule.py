"""The beat's check: scheduled batch updates, requeued lost jobs, reaped dead ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from service.store.models import REBUILD, DocumentStatus, Job, JobStatus
from service.store.repositories import jobs as job_repo
from tests.factories import make_document, make_job, make_tenant
from worker.runtime import Runtime
from worker.schedule import run_schedule

NIGHT = datetime(2026, 11, 23, 2, 0, 30, tzinfo=UTC)  # just after the default 02:00 fire time


class Outbox:
    """Collects what the check sends to the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    def __call__(self, name: str, kwargs: dict[str, str]) -> None:
        self.sent.append((name, kwargs))


def test_a_due_tenant_with_pending_documents_gets_one_update(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    make_document(session, tenant)
    idle, _ = make_tenant(session)  # due too, but nothing pending
    session.commit()
    outbox = Outbox()

    report = run_schedule(runtime, outbox, now=NIGHT)

    assert len(report.started) == 1
    job = session.get(Job, report.started[0])
    assert job is not None and job.tenant_id == tenant.id and job.status == JobStatus.queued
    assert outbox.sent == [("seal.update", {"job_id": job.id})]
    assert job_repo.get_open_update_job(session, tenant_id=idle.id) is None

    # The same night again: the tenant already has its job.
    again = run_schedule(runtime, Outbox(), now=NIGHT + timedelta(minutes=1))
    assert again.started == []


def test_a_rebuild_does_not_take_the_place_of_the_nightly_batch(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    make_document(session, tenant)
    rebuild = make_job(session, tenant, status=JobStatus.running, params={"mode": REBUILD})
    session.commit()

    # while the rebuild is open, no batch can start (one open update per tenant)
    assert run_schedule(runtime, Outbox(), now=NIGHT).started == []
    job_repo.finish_job(session, job_id=rebuild.id, status=JobStatus.succeeded)
    session.commit()
    # once it ended, a later check of the same night starts the batch
    report = run_schedule(runtime, Outbox(), now=NIGHT + timedelta(minutes=5))
    assert len(report.started) == 1
    job = session.get(Job, report.started[0])
    assert job is not None and job.params == {"mode": "batch", "scheduled": True}


def test_nothing_starts_outside_the_schedule(session: Session, runtime: Runtime) -> None:
    tenant, _ = make_tenant(session)
    make_document(session, tenant)
    session.commit()

    report = run_schedule(runtime, Outbox(), now=NIGHT + timedelta(hours=5))

    assert report.started == []


def test_a_tenant_schedule_overrides_the_default(session: Session, runtime: Runtime) -> None:
    tenant, _ = make_tenant(session)
    tenant.update_schedule = "30 7 * * *"
    make_document(session, tenant)
    session.commit()

    assert run_schedule(runtime, Outbox(), now=NIGHT).started == []
    at_seven = NIGHT.replace(hour=7, minute=30)
    assert len(run_schedule(runtime, Outbox(), now=at_seven).started) == 1


def test_a_lost_queued_job_is_sent_again(session: Session, runtime: Runtime) -> None:
    tenant, _ = make_tenant(session)
    job = make_job(session, tenant)
    job.created_at = NIGHT - timedelta(hours=1)
    session.commit()
    outbox = Outbox()

    report = run_schedule(runtime, outbox, now=NIGHT + timedelta(hours=5))

    assert report.requeued == [job.id]
    assert outbox.sent == [("seal.update", {"job_id": job.id})]


def test_a_job_whose_worker_died_is_failed_and_its_documents_freed(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    doc = make_document(session, tenant, status=DocumentStatus.learning)
    job = make_job(session, tenant, status=JobStatus.running)
    job.started_at = NIGHT - timedelta(seconds=runtime.settings.update_time_limit_s + 3600)
    session.commit()

    report = run_schedule(runtime, Outbox(), now=NIGHT + timedelta(hours=5))

    assert report.reaped == [job.id]
    session.expire_all()
    assert session.get(Job, job.id).status == JobStatus.failed  # type: ignore[union-attr]
    assert doc.status == DocumentStatus.pending
