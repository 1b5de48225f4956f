"""A worker runtime on the test database, with the tiny model as teacher and student."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings
from tests.tiny import tiny_model_dir  # noqa: F401  (a session fixture)
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
            # the tiny model writes random tokens, always cut off at 12: the job's mechanics
            # are tested on them as written (the checks themselves: test_grounded_update.py)
            "ground_self_edits": False,
            "truncated_self_edits": "keep",
            "lora_rank": 4,
            "lora_alpha": 8,
        }
    )


class TakingTurns(Session):
    """A session that waits for the others of its kind to close first: the runtime's sessions
    share the test's one connection, and a job's heartbeat thread uses them too."""

    _turn = threading.RLock()

    def __enter__(self) -> TakingTurns:
        self._turn.acquire()
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)  # type: ignore[arg-type]
        finally:
            self._turn.release()


@pytest.fixture
def runtime(worker_settings: Settings, connection: Connection) -> Runtime:
    """A runtime whose commits only release SAVEPOINTs of the test's transaction (as the
    test's own sessions)."""
    sessions = sessionmaker(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        class_=TakingTurns,
    )
    return Runtime(settings=worker_settings, sessions=sessions)
