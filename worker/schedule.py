"""The beat's periodic check: start each tenant's scheduled batch update, and recover jobs
that a lost message or a dead worker left behind. It runs in the beat process itself
(:mod:`worker.beat`), not on a worker, so a worker that is busy or dead cannot hold it up.

A job whose heartbeat is older than ``job_stale_after_s`` lost its worker: its half-written
artifact folders are removed, an update's claimed documents go back to pending, and the job is
queued again as its next attempt, or, after ``job_max_attempts``, failed with the reason. A
queued job whose message was sent longer than ``requeue_after_s`` ago is sent again while no
job runs anywhere (a broker restart loses messages; a message sent twice starts one job; while a
job runs, the queued ones are waiting their turn, not lost, and a backlog is not sent again).

A tenant is due when the last fire time of its cron expression (its own ``update_schedule`` or
the global default) lies less than ``schedule_catch_up_s`` in the past and no update job of the
tenant was created since (a ``rebuild`` does not count: while one is open the tenant waits,
and gets its batch at a later check once it ended); a due tenant without pending documents is
skipped. The check is safe
to run often and from any number of beats: the one-open-update-per-tenant index decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from croniter import croniter
from sqlalchemy.orm import Session

from service.enqueue import UPDATE_TASK, task_for
from service.store.base import utcnow
from service.store.db import session_scope
from service.store.models import DocumentStatus, Job, JobKind, JobStatus, UpdateMode
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import tenants as tenant_repo
from worker.jobs.lifecycle import remove_unrecorded_artifacts
from worker.runtime import Runtime
from worker.sweeper import sweep

log = logging.getLogger(__name__)

Send = Callable[[str, dict[str, str]], None]


@dataclass
class ScheduleReport:
    started: list[str] = field(default_factory=list)
    """Update jobs created because a tenant's schedule fired."""
    requeued: list[str] = field(default_factory=list)
    """Queued jobs whose message was sent again."""
    retried: list[str] = field(default_factory=list)
    """Running jobs whose worker died, queued again as their next attempt."""
    reaped: list[str] = field(default_factory=list)
    """Running jobs whose worker died in their last attempt: failed."""
    swept: list[str] = field(default_factory=list)
    """Folders nothing owned any more, removed (:mod:`worker.sweeper`)."""


def last_fire(expression: str, now: datetime) -> datetime:
    return croniter(expression, now).get_prev(datetime)


def run_schedule(runtime: Runtime, send: Send, *, now: datetime | None = None) -> ScheduleReport:
    settings = runtime.settings
    now = now or utcnow()
    report = ScheduleReport()
    tasks: dict[str, str] = {}  # job id -> task to send, once the transaction committed
    catch_up = timedelta(seconds=settings.schedule_catch_up_s)
    with session_scope(runtime.sessions) as session:
        for tenant in tenant_repo.list_tenants(session):
            fired = last_fire(tenant.update_schedule or settings.update_schedule, now)
            if now - fired > catch_up:
                continue
            if job_repo.learning_update_since(session, tenant_id=tenant.id, since=fired):
                continue
            if not document_repo.count_documents(session, tenant_id=tenant.id):
                continue
            job, created = job_repo.create_update_job(
                session,
                tenant_id=tenant.id,
                params={"mode": UpdateMode.batch.value, "scheduled": True},
            )
            if created:
                report.started.append(job.id)
                tasks[job.id] = UPDATE_TASK

        stale = now - timedelta(seconds=settings.job_stale_after_s)
        for job in job_repo.list_stale_jobs(session, before=stale):
            recovered = _recover(session, runtime, job, now)
            if recovered:
                report.retried.append(job.id)
                tasks[job.id] = task_for(job.kind)
            elif recovered is False:
                report.reaped.append(job.id)

        lost = now - timedelta(seconds=settings.requeue_after_s)
        # while a job runs, the queued ones wait their turn (a worker runs the fairest queued
        # job on any message: worker.jobs.fair), and their messages are not lost but waiting
        busy = job_repo.count_running_jobs(session) > 0
        for job in [] if busy else job_repo.list_lost_queued_jobs(session, before=lost):
            if job.id not in tasks:
                report.requeued.append(job.id)
                tasks[job.id] = task_for(job.kind)
        job_repo.mark_sent(session, job_ids=report.requeued)
    # Sent only after the commit: a worker must find the job it is told about.
    for job_id, task in tasks.items():
        send(task, {"job_id": job_id})
    report.swept = sweep(runtime)
    if report.started or report.requeued or report.retried or report.reaped or report.swept:
        log.info("schedule: %s", report)
    return report


def _recover(session: Session, runtime: Runtime, job: Job, now: datetime) -> bool | None:
    """A running job whose worker died: queue its next attempt (True) or, after the last, fail
    it (False), then clean up after the attempt; None when the job was not the beat's to take
    (its worker recorded its end meanwhile, or another beat came first). The job's row is
    taken first: a worker that is recording its version holds it, so nothing it just saved is
    taken for half-written."""
    settings = runtime.settings
    seen = job.heartbeat_at or job.started_at or job.created_at
    silent = int((now - seen).total_seconds())
    attempt = job.attempts
    last = attempt >= settings.job_max_attempts
    why = (
        f"attempt {attempt} of {settings.job_max_attempts} lost its worker "
        f"(no heartbeat for {silent} s)"
    )
    if last:
        taken = job_repo.hold_running_job(session, job_id=job.id, attempt=attempt, message="failed")
    else:
        taken = job_repo.requeue_job(
            session, job_id=job.id, attempt=attempt, message=f"{why}; queued again"
        )
    if not taken:
        return None
    removed = remove_unrecorded_artifacts(session, settings, job)
    if job.kind == JobKind.update:
        learning = document_repo.list_documents_by_status(
            session, tenant_id=job.tenant_id, statuses=[DocumentStatus.learning]
        )
        document_repo.set_document_status(
            session,
            document_ids=[d.id for d in learning],
            status=DocumentStatus.pending,
            error=None,
        )
    log.warning("job %s: %s; removed %d unrecorded folder(s)", job.id, why, len(removed))
    if last:
        freed = "; its documents are pending again" if job.kind == JobKind.update else ""
        job_repo.finish_job(
            session,
            job_id=job.id,
            status=JobStatus.failed,
            error=f"the worker running this job stopped in each of its {attempt} attempt(s) "
            f"(the last: no heartbeat for {silent} s){freed}",
            message="failed",
        )
    return not last
