"""What a worker process keeps between tasks: its settings, its database sessions and the
model (loaded once, shared by the teacher and every tenant's student adapter)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from seal.lora import STUDENT, TEACHER, AdapterHost
from seal.modeling import load_model
from service.settings import Settings, get_settings
from service.store.db import make_engine, make_sessionmaker
from worker.bundled import register_bundled_teacher
from worker.config import (
    student_spec,
    teacher_spec,
)

log = logging.getLogger(__name__)


def student_host(settings: Settings, *, with_teacher: bool = False) -> AdapterHost:
    """The student model with its adapter slot, and the teacher's slot beside it when
    ``with_teacher`` (the worker's host when teacher and student are the same model; the
    benchmarks and scripts measure the student alone)."""
    loaded = load_model(
        settings.student_model,
        settings.resolved_model_cache_dir,
        device=settings.device,
        dtype=settings.dtype,
    )
    slots = {STUDENT: student_spec(settings)}
    if with_teacher:
        slots[TEACHER] = teacher_spec(settings)
    return AdapterHost(loaded, slots, seed=settings.seed)


@dataclass
class Runtime:
    settings: Settings
    sessions: sessionmaker[Session]
    #: Ends the worker process at once: a job past its hard time limit, which no check of its
    #: own stopped, cannot be stopped otherwise (its supervisor starts a new worker).
    exit_process: Callable[[int], None] = os._exit

    @cached_property
    def student(self) -> AdapterHost:
        """The student model with its adapter slot, and the teacher's slot beside it when
        teacher and student are the same model (one copy of the base weights serves both)."""
        s = self.settings
        return student_host(
            s, with_teacher=not s.external_teacher and s.teacher_model == s.student_model
        )

    @cached_property
    def teacher(self) -> AdapterHost:
        """The teacher's host: the student's own when both name the same model, or when an
        external endpoint is the teacher (no teacher weights are loaded then)."""
        s = self.settings
        if s.teacher_model == s.student_model or s.external_teacher:
            return self.student
        loaded = load_model(
            s.teacher_model, s.resolved_model_cache_dir, device=s.device, dtype=s.dtype
        )
        return AdapterHost(loaded, {TEACHER: teacher_spec(s)}, seed=s.seed)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            settings = get_settings()
            engine = make_engine(settings.resolved_database_url)
            _runtime = Runtime(settings=settings, sessions=make_sessionmaker(engine, write=True))
            try:
                register_bundled_teacher(settings, _runtime.sessions)
            except Exception:  # the worker still serves: its jobs use the store's teachers
                log.exception("could not register the shipped teacher")
        return _runtime
