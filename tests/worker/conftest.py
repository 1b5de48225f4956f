"""A worker runtime on the test database, with the tiny model as teacher and student."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings
from tests.seal.conftest import tiny_model_dir  # noqa: F401  (a session fixture)
from worker.runtime import Runtime


@pytest.fixture
def worker_settings(settings: Settings, tiny_model_dir: Path) -> Settings:  # noqa: F811
    return settings.model_copy(
        update={
            "student_model": str(tiny_model_dir),
            "teacher_model": str(tiny_model_dir),
            "num_candidates": 2,
            "epochs": 2,
            "self_edit_max_tokens": 12,
            "answer_max_tokens": 6,
            "generated_probe_questions": 2,
            "lora_rank": 4,
            "lora_alpha": 8,
        }
    )


@pytest.fixture
def runtime(worker_settings: Settings, test_sessionmaker: sessionmaker[Session]) -> Runtime:
    return Runtime(settings=worker_settings, sessions=test_sessionmaker)
