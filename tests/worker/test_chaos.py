"""A short chaos run (``seal bench chaos`` runs 20): updates on the embedded store whose worker
is SIGKILLed mid-job, the service run as ``seal run`` runs it (the supervisor restarts the
worker, the beat re-runs the dead attempt). The model is the tiny one, trained long enough
that the kill comes while the job runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealctl.chaos import format_chaos, run_chaos
from tests.model_cache import CACHE
from tests.tiny import tiny_model_dir as tiny_model_dir  # the fixture

pytestmark = pytest.mark.slow


def test_killed_workers_lose_nothing_and_block_no_one(
    tmp_path: Path,
    tiny_model_dir: Path,
) -> None:
    report = run_chaos(
        tmp_path,
        updates=3,
        max_delay_s=2.0,
        extra_env={
            "SEAL_MODEL_CACHE_DIR": str(CACHE),
            "SEAL_STUDENT_MODEL": str(tiny_model_dir),
            "SEAL_TEACHER_MODEL": str(tiny_model_dir),
            "SEAL_NUM_CANDIDATES": "2",
            "SEAL_SELF_EDIT_MAX_TOKENS": "128",
            "SEAL_EPOCHS": "30",
            "SEAL_STOP_LOSS": "0",
        },
        job_timeout_s=600,
    )
    print(format_chaos(report))
    killed = [r for r in report.rounds if r.killed_after_s is not None]
    assert killed, "no kill came while a job ran: the jobs are too short for this test"
    for r in report.rounds:
        assert r.status in ("succeeded", "failed"), r
        assert r.status == "succeeded" or r.error, f"failed without a reason: {r}"
    for r in killed:
        assert r.unblocked_after_s is not None and r.unblocked_after_s < 300, r
        assert r.attempts >= 2, f"the killed attempt was not followed by another: {r}"
    assert report.documents_lost == 0
    assert report.documents_left_learning == 0
    assert report.versions_without_artifact == []
    assert report.folders_without_version == []
