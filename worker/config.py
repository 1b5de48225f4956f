"""The settings turned into the ML core's configurations: the adapters' LoRA shapes, the
inner loop, the teacher's training and the external teacher. Below ``worker.runtime`` and
``worker.bundled``, which both need them."""

from __future__ import annotations

from seal.generation import SampleConfig
from seal.knowledge import InnerLoopConfig
from seal.lora import LoraSpec
from seal.remote import RemoteTeacher
from seal.train import TrainConfig
from service.settings import Settings


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
