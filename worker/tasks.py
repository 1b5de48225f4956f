"""Thin Celery tasks: they take ids, and the job modules do the work. (The schedule check is
not a task: it runs in the beat process, :mod:`worker.beat`.)"""

from __future__ import annotations

from service.enqueue import ADAPTER_IMPORT_TASK, SKILL_TASK, TEACHER_ROUND_TASK, UPDATE_TASK
from service.settings import get_settings
from worker.app import app
from worker.jobs.fair import run_next
from worker.runtime import get_runtime

_LIMIT = get_settings().update_time_limit_s


@app.task(name=UPDATE_TASK, time_limit=_LIMIT + 300, soft_time_limit=_LIMIT, acks_late=False)
def update(job_id: str) -> None:
    """Update a tenant's adapter from its pending documents (job kind ``update``); as every
    task, it runs the fairest queued job, this one or another (:mod:`worker.jobs.fair`)."""
    run_next(get_runtime(), job_id)


@app.task(name=TEACHER_ROUND_TASK, time_limit=_LIMIT + 300, soft_time_limit=_LIMIT)
def teacher_round(job_id: str) -> None:
    """Fine-tune a tenant's own teacher on its reward history (job kind ``teacher_train``)."""
    run_next(get_runtime(), job_id)


@app.task(name=SKILL_TASK, time_limit=_LIMIT + 300, soft_time_limit=_LIMIT)
def skill(job_id: str) -> None:
    """Learn a new version of a tenant's skill from its examples (job kind ``skill``)."""
    run_next(get_runtime(), job_id)


@app.task(name=ADAPTER_IMPORT_TASK, time_limit=_LIMIT + 300, soft_time_limit=_LIMIT)
def adapter_import(job_id: str) -> None:
    """Judge an adapter a tenant brought and record it as a version (job kind
    ``adapter_import``)."""
    run_next(get_runtime(), job_id)
