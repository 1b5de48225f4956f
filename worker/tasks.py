"""Thin Celery tasks: they take ids, and the job modules do the work."""

from __future__ import annotations

from service.settings import get_settings
from worker.app import app
from worker.runtime import get_runtime
from worker.schedule import run_schedule
from worker.teacher import run_teacher_round
from worker.update import run_update

_LIMIT = get_settings().update_time_limit_s


@app.task(name="seal.update", time_limit=_LIMIT + 300, soft_time_limit=_LIMIT, acks_late=False)
def update(job_id: str) -> None:
    """Update a tenant's adapter from its pending documents (job kind ``update``)."""
    run_update(get_runtime(), job_id)


@app.task(name="seal.schedule", time_limit=300, soft_time_limit=240)
def schedule() -> dict[str, list[str]]:
    """The beat's periodic check: scheduled updates, lost and dead jobs."""
    report = run_schedule(get_runtime(), lambda name, kwargs: app.send_task(name, kwargs=kwargs))
    return {"started": report.started, "requeued": report.requeued, "reaped": report.reaped}


@app.task(name="seal.teacher_round", time_limit=_LIMIT + 300, soft_time_limit=_LIMIT)
def teacher_round(job_id: str) -> None:
    """Fine-tune a tenant's own teacher on its reward history (job kind ``teacher_train``)."""
    run_teacher_round(get_runtime(), job_id)
