"""Fair jobs: which queued job a worker runs when a task's message comes.

A message names a job, and the broker hands messages out first in, first out: a tenant that
queues 50 skill jobs would hold the worker until they are all done. So a worker runs, for each
message, the job that is fairest *now*: the oldest queued job of the tenant whose last job
started longest ago (a tenant none of whose jobs ever started comes first). One tenant's
backlog then delays another tenant's next job by at most the job being run when it came.

Every queued job has a message of its own (sent when the job was made, and again by the beat
for a queued job left waiting: :mod:`worker.schedule`), so a message that ran another job
leaves its own for a later one; a message that finds no queued job does nothing. Two workers
that choose the same job race on its conditional start (:func:`worker.jobs.lifecycle.run_job`),
and the loser takes the next in line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.store.db import session_scope
from service.store.models import Job, JobKind, JobStatus
from worker.jobs.adapter_import import run_import
from worker.jobs.skill import run_skill
from worker.jobs.teacher import run_teacher_round
from worker.jobs.update import run_update
from worker.runtime import Runtime

log = logging.getLogger(__name__)

#: How each kind of job is run (each returns False when the job was not queued any more).
RUNNERS: dict[JobKind, Callable[[Runtime, str], bool]] = {
    JobKind.update: run_update,
    JobKind.skill: run_skill,
    JobKind.teacher_train: run_teacher_round,
    JobKind.adapter_import: run_import,
}
#: How many jobs a message tries, in fair order, before it gives up (others took them).
TRIES = 8


def fair_order(session: Session, limit: int = TRIES) -> list[tuple[str, JobKind]]:
    """The queued jobs a worker should run next, fairest first, at most ``limit``: each
    tenant's oldest queued job, the tenants ordered by when their last job started (never
    first), then by how long that job has waited."""
    oldest: dict[str, tuple[datetime, str, JobKind]] = {}
    queued = select(Job.tenant_id, Job.created_at, Job.id, Job.kind).where(
        Job.status == JobStatus.queued
    )
    for tenant_id, created_at, job_id, kind in session.execute(
        queued.order_by(Job.created_at, Job.id)
    ):
        oldest.setdefault(tenant_id, (created_at, job_id, JobKind(kind)))
    if not oldest:
        return []
    last = dict(
        session.execute(
            select(Job.tenant_id, func.max(Job.started_at))
            .where(Job.tenant_id.in_(list(oldest)))
            .group_by(Job.tenant_id)
        ).all()
    )

    def key(tenant_id: str) -> tuple[bool, datetime, datetime, str]:
        started = last.get(tenant_id)
        created_at, job_id, _ = oldest[tenant_id]
        return (started is not None, started or created_at, created_at, job_id)

    tenants = sorted(oldest, key=key)[:limit]
    return [(oldest[t][1], oldest[t][2]) for t in tenants]


def run_next(runtime: Runtime, message_job_id: str) -> str | None:
    """On the message of ``message_job_id``, run the fairest queued job to its end (the
    message's own job when it is the fairest); returns the id of the job run, None when no
    job was queued."""
    with session_scope(runtime.sessions) as session:
        order = fair_order(session)
    for job_id, kind in order:
        if job_id != message_job_id:
            log.info("message of job %s: running job %s first (fair share)", message_job_id, job_id)
        if RUNNERS[kind](runtime, job_id):
            return job_id
    return None
