"""The Celery app. Broker: Redis in production, Celery's SQLAlchemy transport over SQLite in
the embedded default (no server). Results live in the store's jobs table, not in Celery."""

from __future__ import annotations

from celery import Celery

from service.settings import Settings, get_settings


def create_celery(settings: Settings) -> Celery:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("seal", broker=settings.resolved_broker_url, include=["worker.tasks"])
    app.conf.update(
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        # One long task at a time per worker process; a task taken is not pre-fetched twice.
        worker_prefetch_multiplier=1,
        task_acks_late=False,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if app.conf.broker_url.startswith(("redis", "rediss")):
        # Redis re-delivers a message not acknowledged within this time: longer than a job.
        # (Messages are acknowledged when taken; a job whose worker died is re-run by the
        # beat from its heartbeat, see worker.schedule.)
        app.conf.broker_transport_options = {
            "visibility_timeout": settings.update_time_limit_s + 600
        }
    return app


app = create_celery(get_settings())
