"""The broker restarts (Redis without persistence: its queued messages are lost) while jobs
are queued: every job still completes. Real processes: a redis-server of the test's own on
another port, a Celery worker and the beat, on a SQLite store. The jobs are teacher rounds of a
tenant with no reward history, which finish without loading a model."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from alembic import command
from sqlalchemy import select

from migrations import alembic_config
from sealctl.stack import free_port
from service.enqueue import TEACHER_ROUND_TASK, CeleryTaskSender
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.models import Job, JobKind, JobStatus
from tests.e2e.conftest import stop_processes
from tests.factories import make_job, make_tenant


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port, self.proc = port, None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


@pytest.fixture
def broker_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()


def _queue(sessions, sender: CeleryTaskSender | None, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    with session_scope(sessions) as session:
        tenant, _ = make_tenant(session)
        ids = [make_job(session, tenant, kind=JobKind.teacher_train).id for _ in range(n)]
    for job_id in ids:
        try:
            if sender is not None:
                sender.send(TEACHER_ROUND_TASK, {"job_id": job_id})
        except Exception:  # the broker is down: the job stays queued for the beat
            pass
    return ids


def test_every_queued_job_completes_across_broker_restarts(
    broker_server: RedisServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'seal.db'}"
    command.upgrade(alembic_config(url), "head")
    broker_url = f"redis://127.0.0.1:{broker_server.port}/0"
    env = {
        **os.environ,
        "SEAL_DATABASE_URL": url,
        "SEAL_BROKER_URL": broker_url,
        "SEAL_DATA_DIR": str(tmp_path / "data"),
        "SEAL_REQUEUE_AFTER_S": "30",
        "SEAL_SCHEDULE_CHECK_S": "5",
    }
    engine = make_engine(url)
    sessions = make_sessionmaker(engine, write=True)
    sender = CeleryTaskSender(broker_url)
    logs = (tmp_path / "worker.log").open("w"), (tmp_path / "beat.log").open("w")
    procs: list[subprocess.Popen] = []
    try:
        # queued and sent, then the broker restarts before any worker took them
        jobs = _queue(sessions, sender, 3)
        broker_server.stop()
        broker_server.start()
        worker = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool=solo"]
        procs.append(subprocess.Popen(worker, env=env, stdout=logs[0], stderr=logs[0]))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "worker.beat"], env=env, stdout=logs[1], stderr=logs[1]
            )
        )
        time.sleep(5)
        # the broker restarts again under the running worker, with jobs sent meanwhile
        broker_server.stop()
        jobs += _queue(sessions, sender, 2)  # sending fails: the broker is down
        broker_server.start()
        jobs += _queue(sessions, sender, 2)  # sent to the new broker

        deadline = time.monotonic() + 150
        statuses: dict[str, JobStatus] = {}
        while time.monotonic() < deadline:
            with session_scope(sessions) as session:
                rows = session.execute(select(Job.id, Job.status).where(Job.id.in_(jobs)))
                statuses = {row.id: row.status for row in rows}
            if all(s == JobStatus.succeeded for s in statuses.values()):
                break
            time.sleep(1)
    finally:
        stop_processes(procs)
        sender.close()
        engine.dispose()
        for log in logs:
            log.close()
    beat_log = (tmp_path / "beat.log").read_text()[-3000:]
    assert statuses == dict.fromkeys(jobs, JobStatus.succeeded), beat_log
