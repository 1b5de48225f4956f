"""The beat's periodic check: start each tenant's scheduled batch update, and recover jobs
that a lost message or a dead worker left behind.

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

from service.enqueue import UPDATE_TASK
from service.store.base import utcnow
from service.store.db import session_scope
from service.store.models import DocumentStatus, JobStatus
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import tenants as tenant_repo
from worker.runtime import Runtime

log = logging.getLogger(__name__)

Send = Callable[[str, dict[str, str]], None]


@dataclass
class ScheduleReport:
    started: list[str] = field(default_factory=list)
    """Update jobs created because a tenant's schedule fired."""
    requeued: list[str] = field(default_factory=list)
    """Queued jobs whose message was sent again."""
    reaped: list[str] = field(default_factory=list)
    """Running jobs failed because their worker outlived the time limit (it died)."""


def last_fire(expression: str, now: datetime) -> datetime:
    return croniter(expression, now).get_prev(datetime)


def run_schedule(runtime: Runtime, send: Send, *, now: datetime | None = None) -> ScheduleReport:
    settings = runtime.settings
    now = now or utcnow()
    report = ScheduleReport()
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
                session, tenant_id=tenant.id, params={"mode": "batch", "scheduled": True}
            )
            if created:
                report.started.append(job.id)

        stale = now - timedelta(seconds=settings.requeue_after_s)
        for job in job_repo.list_jobs_older_than(session, status=JobStatus.queued, before=stale):
            if job.id not in report.started:
                report.requeued.append(job.id)

        dead = now - timedelta(seconds=settings.update_time_limit_s + 600)
        for job in job_repo.list_jobs_older_than(session, status=JobStatus.running, before=dead):
            learning = document_repo.list_documents_by_status(
                session, tenant_id=job.tenant_id, statuses=[DocumentStatus.learning]
            )
            document_repo.set_document_status(
                session,
                document_ids=[d.id for d in learning],
                status=DocumentStatus.pending,
                error="the update's worker stopped; the documents are pending again",
            )
            job_repo.finish_job(
                session,
                job_id=job.id,
                status=JobStatus.failed,
                error="the worker running this job stopped (past the time limit)",
                message="failed",
            )
            report.reaped.append(job.id)
    # Sent only after the commit: a worker must find the job it is told about.
    for job_id in report.started + report.requeued:
        send(UPDATE_TASK, {"job_id": job_id})
    if report.started or report.requeued or report.reaped:
        log.info("schedule: %s", report)
    return report
