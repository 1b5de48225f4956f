"""Workers on many machines (``seal bench fleet`` runs it with the default model): the API, two
workers and the beat as separate processes with a data folder each, sharing only PostgreSQL,
Redis and a real S3-compatible server (SeaweedFS). Twenty updates of ten tenants each record
exactly one version, a worker killed mid-job is recovered, and the API serves every promoted
version from object storage."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from sealctl.fleet import format_fleet, run_fleet
from sealctl.stack import seaweedfs
from tests.conftest import ensure_pg_database, reset_pg_schema
from tests.tiny import tiny_model_dir as tiny_model_dir  # the fixture

pytestmark = pytest.mark.slow

BROKER = "redis://127.0.0.1:6379/13"


def test_two_workers_that_share_no_folder_run_twenty_updates_each_once(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    database_url = ensure_pg_database("seal_fleet")
    reset_pg_schema(database_url)
    redis.Redis.from_url(BROKER).flushdb()
    with seaweedfs(tmp_path / "objects") as endpoint:
        report = run_fleet(
            tmp_path / "fleet",
            {
                "SEAL_DATABASE_URL": database_url,
                "SEAL_BROKER_URL": BROKER,
                "SEAL_ARTIFACT_URL": "s3://seal-test/fleet",
                "SEAL_S3_ENDPOINT_URL": endpoint,
                "SEAL_S3_REGION": "us-east-1",
                "SEAL_S3_ACCESS_KEY_ID": "test",
                "SEAL_S3_SECRET_ACCESS_KEY": "test",
                "SEAL_STUDENT_MODEL": str(tiny_model_dir),
                "SEAL_TEACHER_MODEL": str(tiny_model_dir),
                "SEAL_NUM_CANDIDATES": "2",
                "SEAL_SELF_EDIT_MAX_TOKENS": "64",
                "SEAL_EPOCHS": "20",
                "SEAL_STOP_LOSS": "0",
                # the tiny model's versions are promoted whatever they forget
                "SEAL_RETENTION_TOLERANCE": "1.0",
            },
            tenants=10,
            rounds=2,
            workers=2,
            job_timeout_s=900,
        )
    print(format_fleet(report))
    assert report.updates == 20
    assert report.statuses == {"succeeded": 20}, report.statuses
    assert report.killed is not None, "no worker was killed while both ran a job"
    assert any(a > 1 for a in report.attempts.values()), "the killed job was not run again"
    assert report.jobs_without_one_version == []
    assert report.chats >= 2 and report.chats_failed == []
    assert report.versions_not_cached_by_the_api == []
