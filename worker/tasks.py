"""Thin Celery tasks: they take ids, and the job modules do the work. (The schedule check is
not a task: it runs in the beat process, :mod:`worker.beat`.)"""

from __future__ import annotations

from service.enqueue import SKILL_TASK, TEACHER_ROUND_TASK, UPDATE_TASK
from service.settings import get_settings
from worker.app import app
from worker.jobs.skill import run_skill
from worker.jobs.teacher import run_teacher_round
from worker.jobs.update import run_update
from worker.runtime import get_runtime

_LIMIT = get_settings().update_time_limit_s


@app.task(name=UPDATE_TASK, time_limit=_LIMIT + 300, soft_time_limit=_LIMIT, acks_late=False)
def update(job_id: str) -> None:
    """Update a tenant's adapter from its pending documents (job kind ``update``)."""
    run_update(get_runtime(), job_id)


@app.task(name=TEACHER_ROUND_TASK, time_limit=_LIMIT + 300, soft_time_limit=_LIMIT)
def teacher_round(job_id: str) -> None:
    """Fine-tune a tenant's own teacher on its reward history (job kind ``teacher_train``)."""
    run_teacher_round(get_runtime(), job_id)


@app.task(name=SKILL_TASK, time_limit=_LIMIT + 300, soft_time_limit=_LIMIT)
def skill(job_id: str) -> None:
    """Learn a new version of a tenant's skill from its examples (job kind ``skill``)."""
    run_skill(get_runtime(), job_id)
