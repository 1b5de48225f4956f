"""``seal bench skill``: what one skill job costs at the service's settings, end to end.

Each task becomes a skill of one tenant in a fresh embedded store, and the worker's own skill
job (``worker.jobs.skill.run_skill``, the lifecycle included) learns it in this process, as a
worker would. A thread reads the job's progress message from the store while it runs, so each
phase (the teacher writing, each configuration's training and grading, the final training)
gets its seconds (each message names the step just done; its seconds are those since the
message before). The model loads once, before the first job, and is not counted (a worker
keeps it loaded).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from migrations import upgrade
from seal.skills.tasks import SkillTask
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.models import Job
from service.store.repositories import skills as skill_repo
from service.store.repositories import tenants as tenant_repo
from worker.jobs.skill import run_skill
from worker.runtime import Runtime


@dataclass
class Phase:
    message: str
    seconds: float


@dataclass
class SkillJobRun:
    task: str
    examples: int
    status: str
    seconds: float
    result: dict[str, Any] | None
    error: str | None
    phases: list[Phase] = field(default_factory=list)


@dataclass
class SkillBenchReport:
    machine: str
    scale: str
    configurations: int
    fixed_candidate: bool
    load_seconds: float
    runs: list[SkillJobRun] = field(default_factory=list)


def _watch(read: Callable[[], str | None], stop: threading.Event, every_s: float) -> list[Phase]:
    """The messages ``read`` returns while ``stop`` is unset, each with the seconds since the
    message before it: a job's message says what it has just done, so that is how long the
    step it names took."""
    phases: list[Phase] = []
    current, since = None, time.perf_counter()
    while True:
        done = stop.wait(every_s)
        message = read()
        now = time.perf_counter()
        if message is not None and message != current:
            phases.append(Phase(message, round(now - since, 1)))
            current, since = message, now
        if done:
            return phases


def _timed(work: Callable[[], object], read: Callable[[], str | None]) -> tuple[float, list[Phase]]:
    """Run ``work`` (a job, which records its own failure), its seconds and the phases that
    ``read`` showed meanwhile."""
    stop = threading.Event()
    phases: list[Phase] = []
    watcher = threading.Thread(target=lambda: phases.extend(_watch(read, stop, 0.05)), daemon=True)
    watcher.start()
    started = time.perf_counter()
    with contextlib.suppress(Exception):  # a failed job says why in its row
        work()
    seconds = round(time.perf_counter() - started, 1)
    stop.set()
    watcher.join()
    return seconds, phases


def run_skill_bench(
    settings: Settings,
    tasks: Sequence[SkillTask],
    *,
    machine: str,
    on_phase: Callable[[str], None] = lambda _line: None,
) -> SkillBenchReport:
    with tempfile.TemporaryDirectory(prefix="seal-skill-bench-") as tmp:
        settings = settings.model_copy(  # the converted models stay where they are
            update={
                "data_dir": Path(tmp),
                "database_url": None,
                "model_cache_dir": settings.resolved_model_cache_dir,
            }
        )
        upgrade(settings.resolved_database_url)
        sessions = make_sessionmaker(make_engine(settings.resolved_database_url), write=True)
        runtime = Runtime(settings=settings, sessions=sessions)
        started = time.perf_counter()
        on_phase("loading the model")
        _ = runtime.student
        report = SkillBenchReport(
            machine=machine,
            scale=settings.skill_scale,
            configurations=settings.skill_configs,
            fixed_candidate=settings.skill_fixed_candidate,
            load_seconds=round(time.perf_counter() - started, 1),
        )
        with session_scope(sessions) as session:
            tenant_id = tenant_repo.create_tenant(session, name="skill-bench").id
        for task in tasks:
            with session_scope(sessions) as session:
                skill = skill_repo.create_skill(
                    session, tenant_id=tenant_id, name=task.name, description=task.description
                )
                skill_repo.add_examples(
                    session, skill=skill, examples=[(d.input, d.output) for d in task.demos]
                )
                job, _ = skill_repo.create_skill_job(session, skill=skill)
                job_id = job.id

            def message(job_id: str = job_id) -> str | None:
                with session_scope(sessions) as session:
                    row = session.get(Job, job_id)
                    return row.message if row is not None else None

            on_phase(f"{task.name}: {len(task.demos)} examples")
            seconds, phases = _timed(partial(run_skill, runtime, job_id), message)
            with session_scope(sessions) as session:
                done = session.get(Job, job_id)
                assert done is not None
                run = SkillJobRun(
                    task=task.name,
                    examples=len(task.demos),
                    status=str(done.status),
                    seconds=seconds,
                    result=done.result,
                    error=done.error,
                    phases=phases,
                )
            report.runs.append(run)
            on_phase(f"{task.name}: {run.status} in {run.seconds:.0f} s")
        return report


def format_skill_bench(report: SkillBenchReport) -> str:
    lines = [
        f"seal bench skill: SEAL_SKILL_SCALE={report.scale}, {report.configurations} "
        f"configurations per job"
        f"{' and the fixed one' if report.fixed_candidate else ''}, {report.machine} (model "
        f"loaded once in "
        f"{report.load_seconds:.0f} s, not counted)",
        "",
        "| skill | examples | job | seconds | held-out score | steps | outcome |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for run in report.runs:
        result = run.result or {}
        score = result.get("held_out_score")
        outcome = (
            ("promoted" if result.get("promoted") else "rejected") if result else run.error or ""
        )
        lines.append(
            f"| {run.task} | {run.examples} | {run.status} | {run.seconds:.0f} | "
            f"{'' if score is None else f'{score:.2f}'} | {result.get('steps', '')} | "
            f"{outcome} |"
        )
    if report.runs:
        worst = max(report.runs, key=lambda r: r.seconds)
        lines += ["", f"slowest job: {worst.task}, {worst.seconds:.0f} s; its steps as done:"]
        lines += [f"  {p.seconds:7.1f} s  {p.message}" for p in worst.phases]
    return "\n".join(lines)
