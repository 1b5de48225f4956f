"""The whole service as separate processes: uvicorn, a Celery worker on Redis, PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from sealctl.stack import free_port, wait_healthy
from tests.conftest import ADMIN_KEY, ensure_pg_database, reset_pg_schema
from tests.model_cache import CACHE, default_model_dir

E2E_DATABASE = "seal_e2e"
E2E_BROKER = "redis://127.0.0.1:6379/14"


@dataclass
class LiveService:
    url: str
    env: dict[str, str]
    logs: Path

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}


def start_service(tmp: Path, extra_env: dict[str, str]) -> Iterator[LiveService]:
    default_model_dir()  # convert the model once, before two processes need it
    database_url = ensure_pg_database(E2E_DATABASE)
    reset_pg_schema(database_url)
    redis.Redis.from_url(E2E_BROKER).flushdb()
    port = free_port()
    env = {
        **os.environ,
        "SEAL_DATABASE_URL": database_url,
        "SEAL_BROKER_URL": E2E_BROKER,
        "SEAL_DATA_DIR": str(tmp / "data"),
        "SEAL_MODEL_CACHE_DIR": str(CACHE),
        "SEAL_ADMIN_KEY": ADMIN_KEY,
        "SEAL_PORT": str(port),
        **extra_env,
    }
    cli = [sys.executable, "-m", "sealctl.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    logs = tmp / "logs"
    logs.mkdir()
    procs = []
    for name in ("worker", "api"):
        out = (logs / f"{name}.log").open("w")
        procs.append(subprocess.Popen([*cli, "process", name], env=env, stdout=out, stderr=out))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, lambda: all(p.poll() is None for p in procs), timeout=120)
        yield LiveService(url=url, env=env, logs=logs)
    finally:
        stop_processes(procs)


def stop_processes(procs: list[subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM every process, then SIGKILL one that has not ended within ``timeout``."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def dump_logs(service: LiveService) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in service.logs.iterdir())


@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    yield from start_service(
        tmp_path_factory.mktemp("e2e"),
        {
            "SEAL_NUM_CANDIDATES": "6",  # the test's K
            "SEAL_SELF_EDIT_MAX_TOKENS": "64",
            # The forgetting gate has tests of its own (tests/worker); here the second update
            # must be promoted so that the rollback to the first is a real one.
            "SEAL_RETENTION_TOLERANCE": "1.0",
        },
    )
