"""``seal bench fleet``: the service on many machines. The API, ``workers`` workers and the beat
run as separate processes, each with a data folder of its own (nothing on disk is shared): they
meet only in PostgreSQL, Redis and S3-compatible object storage, as on separate machines.

``tenants`` tenants each learn a new document per round, all their updates queued at once; in
the first round a worker is SIGKILLed while both run a job (the supervisor restarts it, the
beat re-runs its attempt, as in ``seal bench chaos``). Afterwards every job must have
succeeded and recorded exactly one version; then each promoted version is made active again
in turn and answers a chat through the API, which has never seen it: the first chat downloads
and loads its weights (cold), a second one finds them loaded (warm)."""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import func, select

from sealctl.chaos import CHAOS_SETTINGS
from sealctl.stack import Stack, finished, running_stack, stack_env, wait_job
from service.store.db import make_engine, make_sessionmaker
from service.store.models import AdapterVersion

#: What each process of the fleet is: ``seal process <role>``.
ROLES = {"api": "api", "beat": "beat"}


@dataclass
class FleetReport:
    tenants: int = 0
    updates: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    """Each job's attempts; more than one where a worker died under it."""
    killed: str | None = None
    """The worker killed in the first round, and when."""
    jobs_without_one_version: list[str] = field(default_factory=list)
    chats: int = 0
    chats_failed: list[str] = field(default_factory=list)
    versions_not_cached_by_the_api: list[str] = field(default_factory=list)
    cold_s: list[float] = field(default_factory=list)
    warm_s: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        def median(values: list[float]) -> float | None:
            return round(statistics.median(values), 3) if values else None

        return {
            "tenants": self.tenants,
            "updates": self.updates,
            "statuses": self.statuses,
            "jobs_run_again": sum(a > 1 for a in self.attempts.values()),
            "killed": self.killed,
            "jobs_without_one_version": len(self.jobs_without_one_version),
            "chats": self.chats,
            "chats_failed": len(self.chats_failed),
            "versions_not_cached_by_the_api": len(self.versions_not_cached_by_the_api),
            "cold_chat_s_median": median(self.cold_s),
            "warm_chat_s_median": median(self.warm_s),
            "seconds": round(self.seconds, 1),
        }


def fleet_commands(folder: Path, workers: int) -> dict[str, list[str]]:
    """Each process with a data folder of its own under ``folder`` (``env`` sets it and
    execs the process, so the supervisor's pid is the process's)."""
    names = ["api", *(f"worker-{i}" for i in range(1, workers + 1)), "beat"]
    return {
        name: [
            "env",
            f"SEAL_DATA_DIR={folder / name}",
            sys.executable,
            "-m",
            "sealctl.cli",
            "process",
            ROLES.get(name, "worker"),
        ]
        for name in names
    }


def run_fleet(
    folder: Path,
    extra_env: dict[str, str],
    *,
    tenants: int = 10,
    rounds: int = 2,
    workers: int = 2,
    job_timeout_s: float = 3600,
    say: Callable[[str], None] = print,
) -> FleetReport:
    """The run; ``extra_env`` names the servers (``SEAL_DATABASE_URL``, ``SEAL_BROKER_URL``,
    ``SEAL_ARTIFACT_URL`` and its ``SEAL_S3_*``) and any other setting."""
    missing = [
        name
        for name in ("SEAL_DATABASE_URL", "SEAL_BROKER_URL", "SEAL_ARTIFACT_URL")
        if not (extra_env.get(name) or os.environ.get(name))
    ]
    if missing:
        raise ValueError(f"machines that share no folder need {', '.join(missing)}")
    env = stack_env(folder / "prepare", {**CHAOS_SETTINGS, **extra_env})
    report = FleetReport(tenants=tenants)
    started = time.monotonic()
    with running_stack(env, folder / "logs", commands=fleet_commands(folder, workers)) as stack:
        owners = [_tenant(stack, f"fleet-{n}-{time.time_ns()}") for n in range(tenants)]
        jobs: list[tuple[str, str, str]] = []  # (tenant id, key, job id)
        for n in range(rounds):
            queued = [(t, k, _learn(stack, k, n, i)) for i, (t, k) in enumerate(owners)]
            say(f"round {n + 1}: {len(queued)} updates queued")
            if n == 0 and workers > 1:
                report.killed = _kill_a_busy_worker(stack, queued, say)
            for _, key, job_id in queued:
                job = wait_job(stack.url, key, job_id, until=finished, timeout=job_timeout_s)
                report.statuses[job["status"]] = report.statuses.get(job["status"], 0) + 1
                report.attempts[job_id] = job["attempts"]
            jobs += queued
        report.updates = len(jobs)
        report.jobs_without_one_version = _versions_per_job(env, [j for _, _, j in jobs])
        for tenant_id, key in owners:
            _chat_with_each_version(stack, folder / "api", tenant_id, key, report)
    report.seconds = time.monotonic() - started
    return report


def _tenant(stack: Stack, name: str) -> tuple[str, str]:
    r = httpx.post(f"{stack.url}/v1/tenants", json={"name": name}, headers=stack.admin, timeout=60)
    r.raise_for_status()
    return r.json()["id"], r.json()["api_key"]


def _learn(stack: Stack, key: str, round_: int, n: int) -> str:
    """A new document for the tenant, and an update of it; the job's id."""
    headers = {"Authorization": f"Bearer {key}"}
    document = {
        "title": f"Depot {n}-{round_}",
        "text": f"The Harbor Street depot number {n} opened in {1900 + 10 * round_ + n} and is "
        f"run by {['Ana', 'Bo', 'Cy', 'Di'][n % 4]} Okafor.",
        "questions": [
            {"question": f"When did depot {n} open?", "answer": str(1900 + 10 * round_ + n)}
        ],
    }
    r = httpx.post(f"{stack.url}/v1/documents", json=document, headers=headers, timeout=60)
    r.raise_for_status()
    r = httpx.post(f"{stack.url}/v1/updates", json={"seed": n}, headers=headers, timeout=60)
    r.raise_for_status()
    return str(r.json()["job_id"])


def _kill_a_busy_worker(
    stack: Stack, queued: list[tuple[str, str, str]], say: Callable[[str], None]
) -> str | None:
    """SIGKILL ``worker-1`` once as many jobs run as there are workers (so one is its)."""
    workers = sum(name.startswith("worker-") for name in stack.supervisor.children)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        running = 0
        for _, key, job_id in queued:
            r = httpx.get(
                f"{stack.url}/v1/jobs/{job_id}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=60,
            )
            running += r.json()["status"] == "running"
        pid = stack.pid("worker-1")
        if running >= workers and pid is not None:
            time.sleep(1.0)  # into the job, past its start
            os.kill(pid, signal.SIGKILL)
            say(f"worker-1 (pid {pid}) killed while {running} jobs ran")
            return f"worker-1 while {running} jobs ran"
        time.sleep(0.3)
    return None


def _versions_per_job(env: dict[str, str], job_ids: list[str]) -> list[str]:
    """The jobs that did not record exactly one version (read from the store itself)."""
    engine = make_engine(env["SEAL_DATABASE_URL"])
    try:
        with make_sessionmaker(engine)() as session:
            counts = dict(
                session.execute(
                    select(AdapterVersion.job_id, func.count())
                    .where(AdapterVersion.job_id.in_(job_ids))
                    .group_by(AdapterVersion.job_id)
                ).all()
            )
    finally:
        engine.dispose()
    return [f"{j}: {counts.get(j, 0)} versions" for j in job_ids if counts.get(j, 0) != 1]


def _chat_with_each_version(
    stack: Stack, api_folder: Path, tenant_id: str, key: str, report: FleetReport
) -> None:
    """Each version the tenant ever promoted made active again, then asked twice."""
    headers = {"Authorization": f"Bearer {key}"}
    r = httpx.get(f"{stack.url}/v1/adapters", headers=headers, timeout=60)
    r.raise_for_status()
    promoted = [v for v in r.json() if v["promoted_at"] and v["checksum"]]
    for version in promoted:
        r = httpx.post(
            f"{stack.url}/v1/admin/tenants/{tenant_id}/adapters/rollback",
            json={"version": version["version"]},
            headers=stack.admin,
            timeout=60,
        )
        r.raise_for_status()
        for times in (report.cold_s, report.warm_s):
            started = time.perf_counter()
            r = httpx.post(
                f"{stack.url}/v1/chat/completions",
                json={
                    "model": "own",
                    "messages": [{"role": "user", "content": "When did the depot open?"}],
                    "max_tokens": 8,
                    "memory": "weights",
                },
                headers=headers,
                timeout=600,
            )
            report.chats += 1
            if r.status_code != 200:
                report.chats_failed.append(f"{tenant_id} v{version['version']}: {r.text[:200]}")
                break
            times.append(time.perf_counter() - started)
        if not (api_folder / "artifact-cache" / version["checksum"]).is_dir():
            report.versions_not_cached_by_the_api.append(f"{tenant_id} v{version['version']}")


def format_fleet(report: FleetReport) -> str:
    return "\n".join(f"  {k}: {v}" for k, v in report.summary().items())
