"""``seal bench chaos``: updates whose worker is SIGKILLed at a random point. The service runs
as ``seal run`` runs it (api, worker, beat under the supervisor, which restarts the worker);
afterwards every job must have ended, no document may be lost or left ``learning``, and every
adapter version listed must have a complete artifact whose checksum matches."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from sealctl.stack import create_tenant, finished, running_stack, stack_env, wait_job
from service.settings import Settings

#: A dead worker's job is found within seconds, so that a run of 20 kills takes minutes, not
#: hours (the defaults: a heartbeat every 15 s, stale after 180 s, checked every 60 s).
CHAOS_SETTINGS = {
    "SEAL_JOB_HEARTBEAT_S": "2",
    "SEAL_JOB_STALE_AFTER_S": "10",
    "SEAL_SCHEDULE_CHECK_S": "5",
    "SEAL_REQUEUE_AFTER_S": "30",
}


@dataclass
class Round:
    job_id: str
    killed_after_s: float | None  # None: the job ended before its kill came
    status: str = ""
    error: str | None = None
    attempts: int = 0
    unblocked_after_s: float | None = None
    """From the kill until the job ran again (a new attempt) or ended."""


@dataclass
class ChaosReport:
    rounds: list[Round] = field(default_factory=list)
    documents_posted: int = 0
    documents_lost: int = 0
    documents_left_learning: int = 0
    versions: int = 0
    versions_without_artifact: list[str] = field(default_factory=list)
    folders_without_version: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        statuses: dict[str, int] = {}
        for r in self.rounds:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        waits = [r.unblocked_after_s for r in self.rounds if r.unblocked_after_s is not None]
        return {
            "updates": len(self.rounds),
            "killed": sum(r.killed_after_s is not None for r in self.rounds),
            "statuses": statuses,
            "failed_without_reason": sum(r.status == "failed" and not r.error for r in self.rounds),
            "not_ended": sum(r.status not in ("succeeded", "failed") for r in self.rounds),
            "max_attempts": max((r.attempts for r in self.rounds), default=0),
            "max_unblocked_after_s": round(max(waits), 1) if waits else None,
            "documents_posted": self.documents_posted,
            "documents_lost": self.documents_lost,
            "documents_left_learning": self.documents_left_learning,
            "versions": self.versions,
            "versions_without_artifact": len(self.versions_without_artifact),
            "folders_without_version": len(self.folders_without_version),
            "seconds": round(self.seconds, 1),
        }


def _ended_or_past(moment: float) -> Callable[[dict], bool]:
    return lambda job: finished(job) or time.monotonic() >= moment


def _ended_or_running_again(attempt: int) -> Callable[[dict], bool]:
    """The job ended, or a new attempt of it runs."""
    return lambda job: finished(job) or (job["status"] == "running" and job["attempts"] > attempt)


def run_chaos(
    folder: Path,
    *,
    updates: int,
    max_delay_s: float,
    extra_env: dict[str, str] | None = None,
    seed: int = 0,
    job_timeout_s: float = 1800,
    say: Callable[[str], None] = print,
) -> ChaosReport:
    """``updates`` updates one after another, each with a new document; the worker is
    SIGKILLed a random 0..``max_delay_s`` seconds after the job starts running."""
    rng = random.Random(seed)
    env = stack_env(folder / "data", {**CHAOS_SETTINGS, **(extra_env or {})})
    report = ChaosReport()
    started = time.monotonic()
    with running_stack(env, folder / "logs") as stack:
        key = create_tenant(stack, "chaos")
        headers = {"Authorization": f"Bearer {key}"}

        def wait(job_id: str, until: Callable[[dict], bool], timeout: float) -> dict:
            return wait_job(stack.url, key, job_id, until=until, timeout=timeout, every_s=0.25)

        for n in range(updates):
            document = {
                "title": f"Depot {n}",
                "text": f"The Harbor Street depot number {n} opened in {1900 + n} and is run "
                f"by {['Ana', 'Bo', 'Cy', 'Di'][n % 4]} Okafor.",
                "questions": [{"question": f"When did depot {n} open?", "answer": str(1900 + n)}],
            }
            r = httpx.post(f"{stack.url}/v1/documents", json=document, headers=headers, timeout=60)
            r.raise_for_status()
            report.documents_posted += 1
            r = httpx.post(f"{stack.url}/v1/updates", json={"seed": n}, headers=headers)
            r.raise_for_status()
            job_id = r.json()["job_id"]
            job = wait(job_id, lambda j: j["status"] != "queued", job_timeout_s)
            assert job["status"] != "queued", f"job {job_id} never started"
            delay = rng.uniform(0, max_delay_s)
            kill_at = time.monotonic() + delay
            job = wait(job_id, _ended_or_past(kill_at), delay + 5)
            this = Round(job_id=job_id, killed_after_s=None)
            pid = stack.pid("worker")
            if not finished(job) and pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed = time.monotonic()
                this.killed_after_s = round(delay, 1)
                job = wait(job_id, _ended_or_running_again(job["attempts"]), job_timeout_s)
                this.unblocked_after_s = round(time.monotonic() - killed, 1)
            job = wait(job_id, finished, job_timeout_s)
            this.status, this.error, this.attempts = job["status"], job["error"], job["attempts"]
            report.rounds.append(this)
            say(
                f"update {n + 1}/{updates}: killed after {this.killed_after_s} s, "
                f"running again after {this.unblocked_after_s} s, {this.status} in "
                f"{this.attempts} attempt(s)" + (f": {this.error}" if this.error else "")
            )
        _check_documents(stack.url, headers, report)
    report.seconds = time.monotonic() - started
    _check_artifacts(env, report)
    return report


def _check_documents(url: str, headers: dict[str, str], report: ChaosReport) -> None:
    r = httpx.get(f"{url}/v1/documents", params={"limit": 500}, headers=headers, timeout=60)
    r.raise_for_status()
    items = r.json()["items"]
    report.documents_lost = report.documents_posted - len(items)
    report.documents_left_learning = sum(d["status"] == "learning" for d in items)


def _check_artifacts(env: dict[str, str], report: ChaosReport) -> None:
    """Every recorded version's folder loads with its checksum; every folder has a version."""
    from sqlalchemy import select

    from seal.lora import load_adapter
    from service.store.db import make_engine, make_sessionmaker
    from service.store.models import AdapterVersion

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=Path(env["SEAL_DATA_DIR"]),
        database_url=env.get("SEAL_DATABASE_URL"),
    )
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        versions = list(session.scalars(select(AdapterVersion)))
    engine.dispose()
    report.versions = len(versions)
    recorded = set()
    for version in versions:
        if version.artifact_uri is None and version.checksum is None:
            continue  # the base model's or a purged version (listed with checksum null)
        try:
            path = Path(str(version.artifact_uri))
            recorded.add(path.resolve())
            load_adapter(path, expected_checksum=version.checksum)
        except Exception as exc:
            report.versions_without_artifact.append(f"v{version.number}: {exc}")
    root = settings.resolved_adapter_dir
    folders = [p.resolve() for p in root.glob("*/*") if p.is_dir()] if root.exists() else []
    report.folders_without_version = [str(p) for p in folders if p not in recorded]


def format_chaos(report: ChaosReport) -> str:
    lines = [f"  {k}: {v}" for k, v in report.summary().items()]
    lines += [f"  version without artifact: {v}" for v in report.versions_without_artifact]
    lines += [f"  folder without version: {v}" for v in report.folders_without_version]
    return "seal bench chaos\n" + "\n".join(lines)


def as_json(report: ChaosReport) -> dict[str, object]:
    return {"summary": report.summary(), **asdict(report)}
