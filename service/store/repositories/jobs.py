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

from service.store.base import utcnow
from service.store.models import FINISHED_JOB_STATUSES, REBUILD, Job, JobKind, JobStatus

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
    session: Session, *, tenant_id: str, kind: JobKind, params: dict[str, Any] | None = None
) -> Job:
    job = Job(tenant_id=tenant_id, kind=kind, status=JobStatus.queued, progress=0.0, params=params)
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
    """Mark a queued job running; None if it is not queued (cancelled, already taken, gone)."""
    job = get_job(session, job_id=job_id)
    if job is None or job.status != JobStatus.queued:
        return None
    job.status = JobStatus.running
    job.started_at = utcnow()
    job.message = message
    session.flush()
    return job


def hold_running_job(session: Session, *, job_id: str, message: str) -> bool:
    """Set a running job's message in one conditional UPDATE; False when the job is no longer
    running (cancelled, or gone with its tenant). Made the transaction's first statement, it
    takes SQLite's write lock on a fresh snapshot (a read first would leave a stale snapshot
    that cannot become a writer), so nothing the transaction reads next changes before it
    commits; on PostgreSQL it locks the job's row."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running)
        .values(message=message)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


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


def finish_job(
    session: Session,
    *,
    job_id: str,
    status: JobStatus,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    message: str | None = None,
) -> Job | None:
    """Mark a job succeeded, failed or cancelled with its result / error."""
    if status not in FINISHED_JOB_STATUSES:
        raise ValueError(f"{status} is not a finished status")
    job = get_job(session, job_id=job_id)
    if job is None:
        return None
    job.status = status
    job.finished_at = utcnow()
    if status == JobStatus.succeeded:
        job.progress = 1.0
    if result is not None:
        job.result = result
    if error is not None:
        job.error = error
    if message is not None:
        job.message = message
    session.flush()
    return job


def cancel_job(session: Session, *, job: Job) -> Job:
    """Cancel a queued or running job (the worker sees it through :func:`is_cancelled`).

    One conditional UPDATE: a job whose worker is recording its end (it holds the row, see
    :func:`hold_running_job`) is waited for, and once finished stays finished (ValueError)
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
        raise ValueError(f"job {job.id} is already {job.status}")
    return job


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
    return any((params or {}).get("mode") != REBUILD for params in session.scalars(stmt))


def list_jobs_older_than(
    session: Session, *, status: JobStatus, before: datetime, kind: JobKind = JobKind.update
) -> list[Job]:
    """Jobs of ``kind`` in ``status`` since before ``before`` (queued: by creation time;
    running: by start time), oldest first."""
    column = Job.started_at if status == JobStatus.running else Job.created_at
    stmt = (
        select(Job)
        .where(Job.kind == kind, Job.status == status, column < before)
        .order_by(column, Job.id)
    )
    return list(session.scalars(stmt))
