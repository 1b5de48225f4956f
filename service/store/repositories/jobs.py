"""Jobs: the API creates them queued; the worker runs them and reports progress.

Functions used by the worker take ids (tasks never hold ORM objects across sessions); the
worker commits progress in short ``session_scope`` blocks of its own so the API sees it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.domain.errors import JobFinished
from service.store.base import utcnow
from service.store.models import (
    FINISHED_JOB_STATUSES,
    Job,
    JobEvent,
    JobKind,
    JobStatus,
    UpdateMode,
)
from service.store.repositories import webhooks as webhook_repo

OPEN_STATUSES = (JobStatus.queued, JobStatus.running)


def get_job(session: Session, *, job_id: str, tenant_id: str | None = None) -> Job | None:
    """A job by id; with ``tenant_id``, only if it belongs to that tenant."""
    stmt = select(Job).where(Job.id == job_id)
    if tenant_id is not None:
        stmt = stmt.where(Job.tenant_id == tenant_id)
    return session.scalar(stmt)


def list_jobs(
    session: Session, *, tenant_id: str, limit: int = 50, offset: int = 0
) -> tuple[list[Job], int]:
    """A page of the tenant's jobs, newest first, and the total count."""
    total = session.scalar(select(func.count()).select_from(Job).where(Job.tenant_id == tenant_id))
    stmt = (
        select(Job)
        .where(Job.tenant_id == tenant_id)
        .order_by(Job.created_at.desc(), Job.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(stmt)), total or 0


def list_open_jobs(session: Session, *, tenant_id: str, kind: JobKind | None = None) -> list[Job]:
    """The tenant's queued and running jobs (of ``kind``; None: of every kind), oldest first."""
    stmt = select(Job).where(Job.tenant_id == tenant_id, Job.status.in_(OPEN_STATUSES))
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    return list(session.scalars(stmt.order_by(Job.created_at, Job.id)))


def get_open_job(session: Session, *, tenant_id: str, kind: JobKind) -> Job | None:
    """The tenant's oldest queued or running job of ``kind``, if any."""
    return next(iter(list_open_jobs(session, tenant_id=tenant_id, kind=kind)), None)


def get_open_update_job(session: Session, *, tenant_id: str) -> Job | None:
    """The tenant's queued or running update job, if any (there is at most one)."""
    return get_open_job(session, tenant_id=tenant_id, kind=JobKind.update)


def create_job(
    session: Session,
    *,
    tenant_id: str,
    kind: JobKind,
    params: dict[str, Any] | None = None,
    skill_id: str | None = None,
) -> Job:
    """A queued job (``skill_id``: the skill a ``skill`` job learns)."""
    job = Job(
        tenant_id=tenant_id,
        kind=kind,
        status=JobStatus.queued,
        progress=0.0,
        params=params,
        skill_id=skill_id,
    )
    session.add(job)
    session.flush()
    return job


def create_update_job(
    session: Session, *, tenant_id: str, params: dict[str, Any] | None = None
) -> tuple[Job, bool]:
    """A queued update job of the tenant and whether it is new.

    An open update job that already exists is returned instead of a new one; a concurrent
    insert that wins the race (the partial unique index) is caught in a savepoint.
    """
    existing = get_open_update_job(session, tenant_id=tenant_id)
    if existing is not None:
        return existing, False
    try:
        with session.begin_nested():
            job = create_job(session, tenant_id=tenant_id, kind=JobKind.update, params=params)
    except IntegrityError:
        existing = get_open_update_job(session, tenant_id=tenant_id)
        if existing is None:
            raise
        return existing, False
    return job, True


def start_job(session: Session, *, job_id: str, message: str | None = None) -> Job | None:
    """Mark a queued job running as its next attempt, in one conditional UPDATE (two workers
    given the same job, a message sent twice, cannot both start it); None if it is not queued
    (cancelled, already taken, gone)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued)
        .values(
            status=JobStatus.running,
            attempts=Job.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            message=message,
        )
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    job = get_job(session, job_id=job_id)
    if job is not None:
        session.refresh(job)
    return job


def _running_attempt(job_id: str, attempt: int | None) -> list[Any]:
    clauses = [Job.id == job_id, Job.status == JobStatus.running]
    if attempt is not None:
        clauses.append(Job.attempts == attempt)
    return clauses


def hold_running_job(
    session: Session, *, job_id: str, message: str, attempt: int | None = None
) -> bool:
    """Set a running job's message in one conditional UPDATE; False when the job is no longer
    running (cancelled, gone with its tenant, or, given ``attempt``, taken over by a later
    attempt). Made the transaction's first statement, it takes SQLite's write lock on a fresh
    snapshot, so nothing the transaction reads next changes before it commits; on PostgreSQL
    it locks the job's row."""
    result = session.execute(
        update(Job)
        .where(*_running_attempt(job_id, attempt))
        .values(message=message)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def heartbeat(session: Session, *, job_id: str, attempt: int) -> bool:
    """Record that ``attempt`` of a running job is alive; False when it is no longer that
    attempt's to run (cancelled, gone, failed or re-queued by the beat)."""
    result = session.execute(
        update(Job)
        .where(*_running_attempt(job_id, attempt))
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_stale_jobs(session: Session, *, before: datetime) -> list[Job]:
    """Running jobs of every kind whose last heartbeat (or start) is older than ``before``:
    their worker died. Oldest first."""
    seen = func.coalesce(Job.heartbeat_at, Job.started_at)
    stmt = select(Job).where(Job.status == JobStatus.running, seen < before).order_by(seen, Job.id)
    return list(session.scalars(stmt))


def requeue_job(session: Session, *, job_id: str, attempt: int, message: str) -> bool:
    """Put ``attempt`` of a running job back in the queue for the next attempt; False when it
    is not that attempt's any more (it finished, was cancelled, or another beat was first)."""
    result = session.execute(
        update(Job)
        .where(*_running_attempt(job_id, attempt))
        .values(status=JobStatus.queued, progress=0.0, heartbeat_at=utcnow(), message=message)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_sent(session: Session, *, job_ids: list[str]) -> None:
    """Record that the queued jobs' messages were sent to the broker again now."""
    if job_ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.queued)
            .values(heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def set_job_progress(
    session: Session, *, job_id: str, progress: float, message: str | None = None
) -> Job | None:
    """Record progress (clamped to 0..1) and what the job is doing; None if the job is gone."""
    job = get_job(session, job_id=job_id)
    if job is None:
        return None
    job.progress = min(1.0, max(0.0, progress))
    if message is not None:
        job.message = message
    session.flush()
    return job


def add_job_event(
    session: Session,
    *,
    job_id: str,
    tenant_id: str,
    message: str,
    progress: float,
    data: dict[str, Any] | None = None,
) -> JobEvent:
    """A stage of the job's story (``GET /v1/jobs/{id}/events``)."""
    event = JobEvent(
        job_id=job_id, tenant_id=tenant_id, message=message[:500], progress=progress, data=data
    )
    session.add(event)
    session.flush()
    return event


def list_job_events(
    session: Session, *, job_id: str, limit: int, offset: int
) -> tuple[list[JobEvent], int]:
    """The job's events, oldest first, and how many there are."""
    where = JobEvent.job_id == job_id
    total = session.scalar(select(func.count()).where(where)) or 0
    stmt = select(JobEvent).where(where).order_by(JobEvent.created_at, JobEvent.id)
    return list(session.scalars(stmt.limit(limit).offset(offset))), total


def _job_event(session: Session, job: Job) -> None:
    """The job's last stage in its story, and ``job.succeeded``, ``job.failed`` or
    ``job.cancelled`` to the tenant's webhooks, in the transaction that finished the job."""
    ending = job.error if job.status == JobStatus.failed else job.message
    add_job_event(
        session,
        job_id=job.id,
        tenant_id=job.tenant_id,
        message=f"{job.status.value}: {ending}" if ending else job.status.value,
        progress=job.progress,
        data={"error_code": job.error_code} if job.error_code else None,
    )
    data = {
        "job": {
            "id": job.id,
            "kind": job.kind.value,
            "status": job.status.value,
            "message": job.message,
            "result": job.result,
            "error": job.error,
            "error_code": job.error_code,
            "created_at": job.created_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        }
    }
    webhook_repo.add_event(
        session, tenant_id=job.tenant_id, event_type=f"job.{job.status.value}", data=data
    )


def report_progress(
    session: Session, *, job_id: str, attempt: int, progress: float, message: str
) -> bool:
    """Record an attempt's progress and what it is doing, in one conditional UPDATE (a write
    first, so SQLite's write lock is taken up front); False when the job is no longer that
    attempt's to run (cancelled, gone, or re-queued)."""
    result = session.execute(
        update(Job)
        .where(*_running_attempt(job_id, attempt))
        .values(progress=min(1.0, max(0.0, progress)), message=message, heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish_job(
    session: Session,
    *,
    job_id: str,
    status: JobStatus,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    error_code: str | None = None,
    message: str | None = None,
) -> Job | None:
    """Mark a job succeeded, failed or cancelled with its result / error (and its code)."""
    if status not in FINISHED_JOB_STATUSES:
        raise ValueError(f"{status} is not a finished status")
    job = get_job(session, job_id=job_id)
    if job is None:
        return None
    already = job.status == status
    job.status = status
    job.finished_at = utcnow()
    if status == JobStatus.succeeded:
        job.progress = 1.0
    if result is not None:
        job.result = result
    if error is not None:
        job.error = error
    if error_code is not None:
        job.error_code = error_code
    if message is not None:
        job.message = message
    session.flush()
    if not already:
        _job_event(session, job)
    return job


def cancel_job(session: Session, *, job: Job) -> Job:
    """Cancel a queued or running job (the worker sees it through :func:`is_cancelled`).

    One conditional UPDATE: a job whose worker is recording its end (it holds the row, see
    :func:`hold_running_job`) is waited for, and once finished stays finished (:class:`JobFinished`)
    instead of being marked cancelled after the fact. (On SQLite only as the transaction's
    first statement: after a read, a writer in the way makes it fail with "database is
    locked" instead of waiting.)"""
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(OPEN_STATUSES))
        .values(status=JobStatus.cancelled, finished_at=utcnow(), message="cancelled")
        .execution_options(synchronize_session=False)
    )
    session.refresh(job)
    if not result.rowcount:  # type: ignore[attr-defined]
        raise JobFinished(f"job {job.id} is already {job.status}")
    _job_event(session, job)
    return job


def is_current(session: Session, *, job_id: str, attempt: int) -> bool:
    """Whether the job is running as ``attempt`` (read fresh): not cancelled, gone, failed or
    re-queued for a later attempt."""
    row = session.execute(select(Job.status, Job.attempts).where(Job.id == job_id)).first()
    return row is not None and row.status == JobStatus.running and row.attempts == attempt


def is_cancelled(session: Session, *, job_id: str) -> bool:
    """Whether the job was cancelled, read fresh from the database. A job that is gone (its
    tenant was deleted) counts as cancelled, so that its worker stops."""
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    return status is None or status == JobStatus.cancelled


def learning_update_since(session: Session, *, tenant_id: str, since: datetime) -> bool:
    """Whether the tenant has an update job (any status) created at or after ``since`` that
    learns documents: a ``rebuild`` learns none, so it does not count."""
    stmt = select(Job.params).where(
        Job.tenant_id == tenant_id, Job.kind == JobKind.update, Job.created_at >= since
    )
    return any((params or {}).get("mode") != UpdateMode.rebuild for params in session.scalars(stmt))


def list_lost_queued_jobs(session: Session, *, before: datetime) -> list[Job]:
    """Queued jobs of every kind not sent to the broker since before ``before`` (by their
    last sending, else their creation): their message may be lost. Oldest first."""
    sent = func.coalesce(Job.heartbeat_at, Job.created_at)
    stmt = select(Job).where(Job.status == JobStatus.queued, sent < before).order_by(sent, Job.id)
    return list(session.scalars(stmt))


def count_running_jobs(session: Session) -> int:
    """Jobs of every tenant running now."""
    stmt = select(func.count(Job.id)).where(Job.status == JobStatus.running)
    return int(session.scalar(stmt) or 0)
