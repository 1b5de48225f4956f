"""Sending Celery tasks by name, only after the request's transaction commits.

The API does not import ``worker``: it sends tasks by name through a bare Celery client app.
Routes call :func:`enqueue_after_commit`; the session dependency sends what was collected
once the commit succeeded (:func:`send_pending`) and drops it on rollback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from celery import Celery
from fastapi import Request
from sqlalchemy.orm import Session

from service.store.models import JobKind

log = logging.getLogger(__name__)

#: The task that runs a tenant's update job (implemented in ``worker``).
UPDATE_TASK = "seal.update"
#: The task that runs a tenant's teacher round (job kind ``teacher_train``).
TEACHER_ROUND_TASK = "seal.teacher_round"
#: The task that learns a new version of a skill (job kind ``skill``).
SKILL_TASK = "seal.skill"
#: The task that judges an imported adapter (job kind ``adapter_import``).
ADAPTER_IMPORT_TASK = "seal.adapter_import"

_PENDING_KEY = "seal_pending_tasks"


def task_for(kind: JobKind) -> str:
    """The task that runs a job of ``kind``."""
    tasks = {
        JobKind.update: UPDATE_TASK,
        JobKind.teacher_train: TEACHER_ROUND_TASK,
        JobKind.skill: SKILL_TASK,
        JobKind.adapter_import: ADAPTER_IMPORT_TASK,
    }
    if kind not in tasks:
        raise ValueError(f"no task runs jobs of kind {kind!r}")
    return tasks[kind]


class TaskSender(Protocol):
    def send(self, name: str, kwargs: dict[str, Any]) -> None: ...


class CeleryTaskSender:
    """Publishes tasks by name to the broker at ``broker_url``."""

    def __init__(self, broker_url: str) -> None:
        self.app = Celery("seal-api", broker=broker_url, set_as_current=False)
        self.app.conf.broker_connection_retry_on_startup = True

    def send(self, name: str, kwargs: dict[str, Any]) -> None:
        self.app.send_task(name, kwargs=kwargs)

    def close(self) -> None:
        self.app.close()


@dataclass
class _Pending:
    tasks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def enqueue_after_commit(session: Session, name: str, **kwargs: Any) -> None:
    """Send task ``name`` with ``kwargs`` once the session's transaction has committed."""
    session.info.setdefault(_PENDING_KEY, _Pending()).tasks.append((name, kwargs))


def discard_pending(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def send_pending(session: Session, sender: TaskSender) -> None:
    """Send the tasks collected on ``session``; call it after the commit.

    A broker failure is logged, not raised: the transaction is already committed, and the job
    row stays ``queued`` where the scheduler can pick it up again.
    """
    pending: _Pending | None = session.info.pop(_PENDING_KEY, None)
    for name, kwargs in pending.tasks if pending else []:
        try:
            sender.send(name, kwargs)
        except Exception:
            log.exception("could not send task %s %s", name, kwargs)


def get_task_sender(request: Request) -> TaskSender:
    """The app's sender (a dependency, so tests can point it at a broker of their own)."""
    state = request.app.state
    if getattr(state, "task_sender", None) is None:
        state.task_sender = CeleryTaskSender(state.settings.resolved_broker_url)
    sender: TaskSender = state.task_sender
    return sender
