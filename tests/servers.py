"""The service's API as a real second process on the embedded store, with the tiny model:
for tests that need a server over HTTP (the fuzz run, the external teacher)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sealctl.stack import free_port, wait_healthy
from tests.conftest import ADMIN_KEY
from tests.e2e.conftest import stop_processes
from tests.model_cache import CACHE


@dataclass
class RunningApi:
    url: str
    """Its root, e.g. ``http://127.0.0.1:PORT``."""
    log: Path
    """Its stdout and stderr: uvicorn's access log and any traceback."""

    def errors(self) -> str:
        """The first tracebacks the API process logged."""
        blocks = self.log.read_text().split("Traceback")[1:]
        return "\n".join("Traceback" + b.split("\nINFO:")[0][-3000:] for b in blocks[:3])

    def requests(self, route: str) -> int:
        """Requests the server has answered so far on ``route`` (e.g. "POST /v1/chat/...")."""
        return self.log.read_text().count(route)


@contextmanager
def embedded_api(folder: Path, model_dir: Path) -> Iterator[RunningApi]:
    """``seal process api`` on a fresh embedded store in ``folder`` (the admin key
    :data:`tests.conftest.ADMIN_KEY`), both models ``model_dir``; stopped at the end."""
    port = free_port()
    env = {
        **os.environ,
        "SEAL_DATA_DIR": str(folder / "data"),
        "SEAL_MODEL_CACHE_DIR": str(CACHE),
        "SEAL_STUDENT_MODEL": str(model_dir),
        "SEAL_TEACHER_MODEL": str(model_dir),
        "SEAL_ADMIN_KEY": ADMIN_KEY,
        "SEAL_PORT": str(port),
    }
    for name in ("SEAL_DATABASE_URL", "SEAL_BROKER_URL", "SEAL_TEACHER_URL"):
        env.pop(name, None)  # the embedded default, its own teacher
    cli = [sys.executable, "-m", "sealctl.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    log = folder / "api.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*cli, "process", "api"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, lambda: proc.poll() is None)
        yield RunningApi(url=url, log=log)
    finally:
        stop_processes([proc])
