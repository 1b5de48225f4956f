"""What a worker process keeps between tasks: its settings, its database sessions and the
model (loaded once, shared by the teacher and every tenant's student adapter)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from seal.generation import SampleConfig
from seal.knowledge import InnerLoopConfig
from seal.lora import STUDENT, TEACHER, AdapterHost, LoraSpec
from seal.modeling import load_model
from seal.remote import RemoteTeacher
from seal.train import TrainConfig
from service.settings import Settings, get_settings
from service.store.db import make_engine, make_sessionmaker

log = logging.getLogger(__name__)


def student_spec(settings: Settings) -> LoraSpec:
    return LoraSpec(
        rank=settings.lora_rank,
        alpha=settings.lora_alpha,
        dropout=settings.lora_dropout,
        targets=tuple(settings.lora_targets),
    )


def teacher_spec(settings: Settings) -> LoraSpec:
    return LoraSpec(
        rank=settings.teacher_lora_rank,
        alpha=settings.teacher_lora_alpha,
        targets=tuple(settings.lora_targets),
    )


def remote_teacher(settings: Settings) -> RemoteTeacher | None:
    """The external teacher the settings name (``teacher_url``), or None."""
    if not settings.teacher_url:
        return None
    key = settings.teacher_api_key
    return RemoteTeacher(
        url=settings.teacher_url,
        model=settings.teacher_model,
        api_key=key.get_secret_value() if key else None,
        timeout_s=settings.teacher_timeout_s,
        retries=settings.teacher_retries,
        concurrency=settings.teacher_concurrency,
    )


def refuse_external_teacher(settings: Settings, what: str) -> None:
    """ReST-EM and distillation train the bundled teacher's adapter: not an external one."""
    if settings.external_teacher:
        raise ExternalTeacher(
            f"{what} trains the bundled teacher's LoRA adapter, but the teacher is the external "
            f"endpoint SEAL_TEACHER_URL={settings.teacher_url}, whose weights this service "
            "cannot train; unset SEAL_TEACHER_URL to train the bundled teacher"
        )


class ExternalTeacher(ValueError):
    """Asked to train a teacher whose weights are not ours."""


def teacher_train_config(settings: Settings) -> TrainConfig:
    return TrainConfig(
        learning_rate=settings.teacher_learning_rate,
        epochs=settings.teacher_epochs,
        batch_size=settings.batch_size,
        max_seq_len=settings.max_seq_len + settings.self_edit_max_tokens,
        seed=settings.seed,
    )


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


def inner_loop_config(settings: Settings, fmt: str | None = None) -> InnerLoopConfig:
    return InnerLoopConfig(
        format=fmt or settings.self_edit_format,
        num_candidates=settings.num_candidates,
        sample=SampleConfig(
            max_new_tokens=settings.self_edit_max_tokens,
            temperature=settings.teacher_temperature,
            top_p=settings.teacher_top_p,
            seed=settings.seed,
            batch_size=settings.sample_batch_size,
        ),
        train=TrainConfig(
            learning_rate=settings.learning_rate,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            max_seq_len=settings.max_seq_len,
            seed=settings.seed,
            step_tokens=settings.step_tokens,
            stop_loss=settings.stop_loss,
        ),
        answer_max_tokens=settings.answer_max_tokens,
        qa_form=settings.qa_form,
    )


@dataclass
class Runtime:
    settings: Settings
    sessions: sessionmaker[Session]

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
            from worker.bundled import register_bundled_teacher

            try:
                register_bundled_teacher(settings, _runtime.sessions)
            except Exception:  # the worker still serves: its jobs use the store's teachers
                log.exception("could not register the shipped teacher")
        return _runtime
