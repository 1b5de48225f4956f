"""The skill job: a skill's examples in, one new version of the skill out (SEAL's few-shot
domain, the self-edit being a training configuration).

The teacher (the tenant's own skills teacher, else the shared one, else the base model) reads
the examples and writes ``skill_configs`` configurations. Each is scored by its own test-time
training: the same ``scale.held_out`` examples are held out for all of them (and for the
active version), a fresh adapter is trained on leave-one-out tasks built from the others with
the configuration's augmentations, learning rate, epochs and loss, and its reward is the share
of held-out examples it reproduces exactly. A configuration that does not parse earns 0 and
trains nothing. The fixed configuration (``DEFAULT_CONFIG``) is scored beside them
(``skill_fixed_candidate``, on by default: the untrained teacher's choices learn less than it
does), and always when none of the teacher's parses.

The best configuration (ties: the fixed one, then the first written) trains the new
version's adapter on every example, and the version becomes active when its held-out score is
at least the active version's on the same held-out examples (the active version saw them in
training, so the rule leans towards keeping it). Every configuration and its reward is
recorded for ReST-EM.

Skill adapters have the student adapters' shape, so the chat engine serves them like any
tenant's adapter, and run through the one job lifecycle (heartbeat, attempts, cancellation).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from seal.lora import STUDENT, TEACHER, AdapterHost, AdapterState, save_adapter
from seal.skills.config import DEFAULT_CONFIG
from seal.skills.tasks import Demo, SkillTask
from seal.skills.teacher import write_configs
from seal.skills.ttt import (
    ConfigResult,
    SkillScale,
    fit_context,
    score,
    score_config,
    split_held_out,
    train_with,
)
from service.artifacts import artifacts
from service.domain.skills import skill_folder, skill_scale
from service.store.db import in_transaction
from service.store.models import Job, JobStatus, SkillVersion, TeacherDomain, VersionStatus
from service.store.repositories import jobs as job_repo
from service.store.repositories import skills as skill_repo
from service.store.repositories import teachers as teacher_repo
from worker.bundled import usable
from worker.jobs.common import Progress, job_seed, weights
from worker.jobs.lifecycle import JobInfo, JobRun, artifact_folder, run_job
from worker.runtime import Runtime

log = logging.getLogger(__name__)

#: A version's score: the share of the held-out examples it reproduced exactly.
HELD_OUT_METRIC = "held_out_score"


@dataclass
class SkillSnapshot:
    """What the job read from the store when it started (plain data, no ORM objects)."""

    skill_id: str
    tenant_id: str
    task: SkillTask
    seed: int
    parent_id: str | None
    parent_state: AdapterState | None
    teacher_state: AdapterState | None
    teacher_version_id: str | None


def _snapshot(session: Session, runtime: Runtime, job: JobInfo) -> SkillSnapshot:
    row = session.get(Job, job.id)
    skill_id = row.skill_id if row is not None else None
    skill = (
        skill_repo.get_skill(session, tenant_id=job.tenant_id, skill_id=skill_id)
        if skill_id
        else None
    )
    if skill is None:
        raise ValueError(f"job {job.id} names no skill of its tenant (skill {skill_id!r})")
    examples = skill_repo.list_examples(session, skill_id=skill.id)
    if len(examples) < 2:
        raise ValueError(f"skill {skill.name!r} has {len(examples)} examples; it needs 2")
    active = skill_repo.active_skill_version(session, skill_id=skill.id)
    teacher = usable(
        runtime.settings,
        teacher_repo.teacher_in_use(session, tenant_id=job.tenant_id, domain=TeacherDomain.skills),
    )
    return SkillSnapshot(
        skill_id=skill.id,
        tenant_id=skill.tenant_id,
        task=SkillTask(
            skill.name,
            tuple(Demo(e.input, e.output) for e in examples),
            skill.description or "",
        ),
        seed=job_seed(runtime.settings, job.id, job.params),
        parent_id=active.id if active else None,
        parent_state=weights(runtime.settings, active),
        teacher_state=weights(runtime.settings, teacher),
        teacher_version_id=teacher.id if teacher else None,
    )


def run_skill(runtime: Runtime, job_id: str) -> bool:
    """Run one skill job to its end through the job lifecycle (False: it was not queued)."""
    return run_job(
        runtime, job_id, lambda run: _learn(runtime, run), message="reading the examples"
    )


def _learn(runtime: Runtime, run: JobRun) -> None:
    """The skill job's stages: the configurations scored, the active version and the base model
    graded on the same held-out examples, the new version trained with the best configuration
    on every example, and everything recorded in the job's final transaction."""
    settings = runtime.settings
    snap = in_transaction(runtime.sessions, lambda s: _snapshot(s, runtime, run.job))
    host, task, seed = runtime.student, snap.task, snap.seed
    scale = skill_scale(settings)
    k = settings.skill_configs
    # units: writing, k configurations and the fixed one (two units each: training and
    # grading), the active version and the base model on the held-out examples, the final
    # training, saving
    scored = k + 1 if settings.skill_fixed_candidate else k
    progress = Progress(run, total=1 + 2 * scored + 2 + 2 + 1)
    started = time.perf_counter()

    configs = _score_configs(runtime, run, snap, progress, scale)
    best, fixed = configs.best, configs.fixed
    assert best.config is not None
    parent_score, in_context, held_out = _grade_incumbents(host, snap, scale)
    progress.step("the active version and the base model graded on the held-out examples", 2)

    run.check()
    state, steps = train_with(host, STUDENT, task, task.demos, best.config, scale, seed)
    progress.step("the new version trained on every example", 2)
    target = artifact_folder(skill_folder(settings, snap.tenant_id, snap.skill_id), run.id)
    checksum = save_adapter(
        state,
        runtime.student.specs[STUDENT],
        target,
        base_model=settings.student_model,
        extra={"skill": task.name, "config": best.config.as_dict()},
    )
    promote = parent_score is None or best.reward >= parent_score
    metrics = {
        HELD_OUT_METRIC: best.reward,
        "parent_held_out_score": parent_score,
        "in_context_score": in_context,
        "examples": len(task.demos),
        "held_out": held_out,
        "configurations": len(configs.results),
        "parsed": sum(r.config is not None for r in configs.results),
        "fixed_config_reward": fixed.reward if fixed is not None else None,
        "default_config": best is fixed,
        "steps": steps,
        "seconds": round(time.perf_counter() - started, 1),
    }
    with artifacts(settings).publishing(target, checksum) as uri:

        def record(session: Session) -> None:
            _record(session, run.id, snap, configs, uri, checksum, metrics, promote)

        run.finish_with("recording the new version", record)
    log.info("skill job %s: %s", run.id, metrics)


@dataclass
class _Configs:
    """The configurations a skill job scored."""

    results: list[ConfigResult]
    """The teacher's, in the order it wrote them."""
    fixed: ConfigResult | None
    """The fixed configuration's (None: it was not scored)."""
    best: ConfigResult
    """The one the new version trains with."""


def _score_configs(
    runtime: Runtime, run: JobRun, snap: SkillSnapshot, progress: Progress, scale: SkillScale
) -> _Configs:
    """The teacher writes ``skill_configs`` configurations and each is scored by its own
    test-time training, all with the job's seed (the same held-out examples and batch order).
    The fixed configuration is scored beside them when ``skill_fixed_candidate`` asks (the
    untrained teacher's choices learn less than it does) and always when none parses, so there
    is a best: the first of the highest reward, the fixed one ahead of the teacher's."""
    settings, host, task, seed = runtime.settings, runtime.student, snap.task, snap.seed
    progress.step("the teacher writes configurations", 0)
    texts = write_configs(
        host,
        TEACHER if snap.teacher_state is not None else None,
        snap.teacher_state,
        task,
        settings.skill_configs,
        seed,
        temperature=settings.skill_teacher_temperature,
    )
    progress.step(f"{len(texts)} configurations written")
    results: list[ConfigResult] = []
    for index, text in enumerate(texts, 1):
        run.check()
        # the same seed for every configuration: the same held-out examples and batch order
        result = score_config(host, STUDENT, task, task.demos, text, scale, seed)
        results.append(result)
        what = f"reward {result.reward:.2f}" if result.config else "did not parse"
        progress.step(f"configuration {index} of {len(texts)}: {what}", 2)
    parsed = [r for r in results if r.config is not None]
    fixed = None
    if settings.skill_fixed_candidate or not parsed:
        run.check()
        fixed = score_config(host, STUDENT, task, task.demos, DEFAULT_CONFIG, scale, seed)
        why = "" if parsed else "no configuration parsed; "
        progress.step(f"{why}the fixed configuration: reward {fixed.reward:.2f}", 2)
    candidates = [*([fixed] if fixed is not None else []), *parsed]
    best = max(candidates, key=lambda r: r.reward)  # the first of the best
    return _Configs(results, fixed, best)


def _grade_incumbents(
    host: AdapterHost, snap: SkillSnapshot, scale: SkillScale
) -> tuple[float | None, float, int]:
    """What the new version must match, on the held-out examples its configurations were
    scored on: the active version's score (None: there is none), the base model's with the
    other examples in its context only, and how many examples were held out."""
    task = snap.task
    train, held = split_held_out(task.demos, scale.held_out, snap.seed)
    longest = max(held, key=lambda d: len(d.input)).input
    context = fit_context(host.tokenizer, task, train, longest, scale.max_seq_len)
    parent_score = None
    if snap.parent_state is not None:
        parent_score = score(host, STUDENT, snap.parent_state, task, context, held, scale)
    in_context = score(host, STUDENT, None, task, context, held, scale)
    return parent_score, in_context, len(held)


def _record(
    session: Session,
    job_id: str,
    snap: SkillSnapshot,
    configs: _Configs,
    uri: str,
    checksum: str,
    metrics: dict,
    promote: bool,
) -> None:
    """The job's final transaction: every configuration with its reward (for ReST-EM), the new
    version promoted or rejected, and the job's result."""
    best, fixed = configs.best, configs.fixed
    skill = skill_repo.get_skill(session, tenant_id=snap.tenant_id, skill_id=snap.skill_id)
    if skill is None:
        raise ValueError("the skill was deleted while it was learned")
    for result in [*configs.results, *([fixed] if fixed else [])]:
        skill_repo.add_skill_self_edit(
            session,
            skill=skill,
            text=result.text,
            config=result.config.as_dict() if result.config else None,
            error=result.error,
            job_id=job_id,
            teacher_version_id=snap.teacher_version_id if result is not fixed else None,
            reward=result.reward,
            selected=result is best,
        )
    version: SkillVersion = skill_repo.create_skill_version(
        session,
        skill=skill,
        parent_id=snap.parent_id,
        artifact_uri=uri,
        checksum=checksum,
        metrics=metrics,
        config=best.config.as_dict() if best.config else None,
        job_id=job_id,
    )
    if promote:
        skill_repo.promote_skill_version(session, skill_id=skill.id, version=version)
    else:
        skill_repo.set_skill_version_status(session, version=version, status=VersionStatus.rejected)
    outcome = "promoted" if promote else "rejected"
    job_repo.finish_job(
        session,
        job_id=job_id,
        status=JobStatus.succeeded,
        result={
            "skill_id": skill.id,
            "skill_version": version.number,
            "promoted": promote,
            **metrics,
        },
        message=f"version {version.number} {outcome} (held-out score {best.reward:.2f})",
    )
