"""The beat's check: scheduled batch updates, requeued lost jobs, dead ones run again or failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from service.store.base import utcnow
from service.store.models import DocumentStatus, Job, JobKind, JobStatus, UpdateMode
from service.store.repositories import jobs as job_repo
from tests.factories import make_adapter_version, make_document, make_job, make_tenant
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
    rebuild = make_job(
        session, tenant, status=JobStatus.running, params={"mode": UpdateMode.rebuild}
    )
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


def test_a_lost_queued_job_is_not_sent_again_at_every_check(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    job = make_job(session, tenant, kind=JobKind.teacher_train)
    job.created_at = utcnow() - timedelta(hours=1)
    session.commit()

    first = Outbox()
    assert run_schedule(runtime, first).requeued == [job.id]
    assert first.sent == [("seal.teacher_round", {"job_id": job.id})]
    # sent just now: the next check leaves it until requeue_after_s has passed again
    assert run_schedule(runtime, Outbox()).requeued == []
    later = utcnow() + timedelta(seconds=runtime.settings.requeue_after_s + 1)
    assert run_schedule(runtime, Outbox(), now=later).requeued == [job.id]


def test_a_backlog_waiting_behind_a_running_job_is_not_sent_again(
    session: Session, runtime: Runtime
) -> None:
    """While a job runs, the queued ones wait their turn: their messages are not lost, and
    sending them again would only grow the broker's queue with the backlog."""
    tenant, _ = make_tenant(session)
    other, _ = make_tenant(session)
    running = make_job(session, other, status=JobStatus.running)
    running.heartbeat_at = utcnow()
    waiting = make_job(session, tenant, kind=JobKind.skill)
    waiting.created_at = utcnow() - timedelta(hours=1)
    session.commit()
    assert run_schedule(runtime, Outbox()).requeued == []
    running.status = JobStatus.succeeded
    session.commit()
    assert run_schedule(runtime, Outbox()).requeued == [waiting.id]


def _running(session: Session, tenant, *, attempts: int, silent_s: float, kind=JobKind.update):  # type: ignore[no-untyped-def]
    job = make_job(session, tenant, status=JobStatus.running, kind=kind)
    job.attempts = attempts
    job.started_at = job.heartbeat_at = utcnow() - timedelta(seconds=silent_s)
    return job


def test_a_job_whose_worker_died_runs_again_as_its_next_attempt(
    session: Session, runtime: Runtime
) -> None:
    settings = runtime.settings
    tenant, _ = make_tenant(session)
    doc = make_document(session, tenant, status=DocumentStatus.learning)
    job = _running(session, tenant, attempts=1, silent_s=settings.job_stale_after_s + 5)
    folders = settings.resolved_adapter_dir / tenant.id
    half_written = folders / f"1700000000-{job.id[:8]}"
    temporary = folders / f".1700000001-{job.id[:8]}-abcd"
    recorded = folders / f"1600000000-{job.id[:8]}"
    for folder in (half_written, temporary, recorded):
        folder.mkdir(parents=True)
    make_adapter_version(session, tenant, artifact_uri=str(recorded))
    alive = _running(session, make_tenant(session)[0], attempts=1, silent_s=5)
    session.commit()
    outbox = Outbox()

    report = run_schedule(runtime, outbox)

    assert report.retried == [job.id] and report.reaped == []
    assert outbox.sent == [("seal.update", {"job_id": job.id})]
    session.expire_all()
    again = session.get(Job, job.id)
    assert again is not None and again.status == JobStatus.queued and again.attempts == 1
    assert "attempt 1 of 3 lost its worker" in (again.message or "")
    assert doc.status == DocumentStatus.pending
    assert not half_written.exists() and not temporary.exists() and recorded.exists()
    assert session.get(Job, alive.id).status == JobStatus.running  # type: ignore[union-attr]


def test_after_its_last_attempt_a_dead_job_fails_and_frees_its_tenant(
    session: Session, runtime: Runtime
) -> None:
    settings = runtime.settings
    tenant, _ = make_tenant(session)
    doc = make_document(session, tenant, status=DocumentStatus.learning)
    job = _running(
        session, tenant, attempts=settings.job_max_attempts, silent_s=settings.job_stale_after_s + 5
    )
    session.commit()

    report = run_schedule(runtime, Outbox())

    assert report.reaped == [job.id] and report.retried == []
    session.expire_all()
    failed = session.get(Job, job.id)
    assert failed is not None and failed.status == JobStatus.failed
    assert "each of its 3 attempt(s)" in (failed.error or "")
    assert doc.status == DocumentStatus.pending
    assert job_repo.get_open_update_job(session, tenant_id=tenant.id) is None


def test_a_teacher_round_whose_worker_died_is_sent_again_too(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    job = _running(
        session,
        tenant,
        attempts=1,
        silent_s=runtime.settings.job_stale_after_s + 5,
        kind=JobKind.teacher_train,
    )
    session.commit()
    outbox = Outbox()

    assert run_schedule(runtime, outbox).retried == [job.id]
    assert outbox.sent == [("seal.teacher_round", {"job_id": job.id})]


def test_a_dead_job_another_beat_took_first_is_left_as_it_is(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's row is taken before anything is cleaned: when the take fails (another beat,
    or the worker recording its end), no folder is removed and no document is touched."""
    settings = runtime.settings
    tenant, _ = make_tenant(session)
    doc = make_document(session, tenant, status=DocumentStatus.learning)
    job = _running(session, tenant, attempts=1, silent_s=settings.job_stale_after_s + 5)
    folder = settings.resolved_adapter_dir / tenant.id / f"1700000000-{job.id[:8]}"
    folder.mkdir(parents=True)
    session.commit()
    monkeypatch.setattr(job_repo, "requeue_job", lambda *a, **k: False)
    outbox = Outbox()

    report = run_schedule(runtime, outbox)

    assert report.retried == [] and report.reaped == [] and outbox.sent == []
    assert folder.exists() and doc.status == DocumentStatus.learning
