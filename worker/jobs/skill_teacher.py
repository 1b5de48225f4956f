"""ReST-EM over skill configurations: the teacher of configurations (``TeacherDomain.skills``)
learns by behaviour cloning from the configurations that solved their held-out cases.

Two rounds, as for the document teacher (``worker.jobs.teacher``):

- a tenant's own round (job kind ``teacher_train`` with params ``{"domain": "skills"}``):
  the tenant's recorded ``skill_configs`` with a positive reward train a teacher version of
  that tenant, which its skill jobs then use (``teacher_in_use(..., domain=skills)``);
- the shared round (the operator's ``seal teacher train-skills``): on public tasks (ARC, the
  shipped text tasks) whose test solutions are the reward, the current shared skills teacher
  writes k configurations per task, each trains an adapter on all the task's demonstrations,
  and those that answer at least ``keep`` of the test cases exactly (the paper: every one; the
  command's default half, as a 135M student rarely answers every one) train a new shared
  version.

A tenant's configurations only ever train that tenant's own teacher; the shared teacher
learns from public data only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from seal.lora import STUDENT, TEACHER, AdapterHost, AdapterState
from seal.selfedit import ChatTurn
from seal.skills.config import ConfigError, parse_config
from seal.skills.tasks import Demo, SkillTask
from seal.skills.teacher import teacher_turns, write_configs
from seal.skills.ttt import ConfigResult, SkillScale, fit_context, score, train_with
from seal.train import TrainConfig, TrainResult, tokenize, train_adapter
from service.domain.skills import skill_scale
from service.settings import Settings
from service.store.db import in_transaction, session_scope
from service.store.models import TeacherDomain, TeacherVersion
from service.store.repositories import skills as skill_repo
from service.store.repositories import teachers as teacher_repo
from worker.bundled import usable
from worker.config import refuse_external_teacher
from worker.jobs.common import weights
from worker.jobs.lifecycle import JobRun
from worker.jobs.teacher_versions import save_teacher
from worker.runtime import Runtime

log = logging.getLogger(__name__)

SKILLS_TEACHER_EPOCHS = 8
"""Passes over the kept configurations (the paper's few-shot behaviour cloning: 8 epochs).
A round keeps only a handful of short replies, so the document teacher's 2 epochs
(``teacher_epochs``) would barely move it."""

PROMPT_TOKENS = 4096 + 256
"""Longest training sequence: ``config_prompt``'s 4000 characters of demonstrations (grids
tokenize near one token a character) and the configuration's JSON; ``tokenize`` cuts the end,
so a shorter limit would cut the reply that is learned."""

MIN_KEPT = 2
"""A tenant's skills teacher is promoted when it learned from at least this many
configurations; one alone makes a candidate version (recorded, not used): a single success
is as likely luck as a preference worth imitating."""


def train_skills_teacher(
    host: AdapterHost,
    turns: Sequence[ChatTurn],
    settings: Settings,
    seed: int,
    *,
    init: AdapterState | None = None,
) -> TrainResult:
    """Behaviour cloning of the TEACHER slot on ``turns`` (``teacher_turns``: prompt ->
    configuration), the loss on the configuration only, from ``init`` (the teacher the round
    starts from; None: a fresh adapter), at the document teacher's learning rate
    (``teacher_learning_rate``) for ``SKILLS_TEACHER_EPOCHS`` epochs."""
    config = TrainConfig(
        learning_rate=settings.teacher_learning_rate,
        epochs=SKILLS_TEACHER_EPOCHS,
        batch_size=settings.batch_size,
        max_seq_len=PROMPT_TOKENS,
        seed=seed,
    )
    return train_adapter(host, TEACHER, tokenize(host, turns, PROMPT_TOKENS), config, init=init)


def _train_metrics(trained: TrainResult) -> dict:
    return {
        "epochs": SKILLS_TEACHER_EPOCHS,
        "train_loss": trained.losses[-1] if trained.losses else None,
        "train_seconds": round(trained.seconds, 3),
    }


# --- a tenant's own round: its recorded configurations ------------------------------------
@dataclass
class Kept:
    """A tenant's configuration kept for ReST-EM, with the skill it was written for."""

    self_edit_id: str
    task: SkillTask
    result: ConfigResult


def tenant_skill_configs(session: Session, *, tenant_id: str) -> list[Kept]:
    """The tenant's configurations that parsed and earned a positive reward, each with its
    skill's examples as they are now (the prompt the teacher will see for that skill). The
    tenant's data only."""
    kept: list[Kept] = []
    tasks: dict[str, SkillTask | None] = {}
    for edit in skill_repo.list_skill_self_edits(session, tenant_id=tenant_id, min_reward=0.0):
        if edit.config is None or edit.reward is None:
            continue
        try:  # the text is what the teacher learns to write: it must parse itself
            config = parse_config(edit.text)
        except ConfigError:
            continue
        if edit.skill_id not in tasks:
            skill = skill_repo.get_skill(session, tenant_id=tenant_id, skill_id=edit.skill_id)
            examples = skill_repo.list_examples(session, skill_id=skill.id) if skill else []
            tasks[edit.skill_id] = (
                SkillTask(
                    skill.name,
                    tuple(Demo(e.input, e.output) for e in examples),
                    skill.description or "",
                )
                if skill is not None and examples
                else None
            )
        task = tasks[edit.skill_id]
        if task is None:
            continue
        result = ConfigResult(edit.text, config, None, edit.reward, None)
        kept.append(Kept(edit.id, task, result))
    return kept


def skills_round(runtime: Runtime, run: JobRun) -> None:
    """A tenant's skills teacher round (inside ``run_teacher_round``'s job lifecycle): train
    on its rewarded configurations, from the skills teacher it uses now, and record a tenant
    version of ``TeacherDomain.skills``, promoted when it kept at least ``MIN_KEPT``."""
    settings = runtime.settings
    tenant_id = run.job.tenant_id

    def read(session: Session) -> tuple[list[Kept], TeacherVersion | None, AdapterState | None]:
        kept = tenant_skill_configs(session, tenant_id=tenant_id)
        current = usable(
            settings,
            teacher_repo.teacher_in_use(session, tenant_id=tenant_id, domain=TeacherDomain.skills),
        )
        return kept, current, weights(settings, current) if kept else None

    kept, current, init = in_transaction(runtime.sessions, read)
    if not kept:
        run.succeed(
            "nothing to learn from: no configuration of this tenant's skills has solved a "
            "held-out example yet",
            {"domain": TeacherDomain.skills.value, "kept": 0, "teacher_version": None},
        )
        return
    skills = len({k.task.name for k in kept})
    run.progress(0.05, f"training the skills teacher on {len(kept)} configurations")
    turns = teacher_turns([(k.task, k.result) for k in kept])
    trained = train_skills_teacher(runtime.student, turns, settings, settings.seed, init=init)
    run.check()
    promote = len(kept) >= MIN_KEPT
    save_teacher(
        runtime,
        trained.state,
        tenant_id=tenant_id,
        parent_id=current.id if current else None,
        promote=promote,
        run=run,
        domain=TeacherDomain.skills,
        metrics={
            "kept": len(kept),
            "examples": len(turns),
            "skills": skills,
            "self_edit_ids": [k.self_edit_id for k in kept],
            **_train_metrics(trained),
        },
        result={
            "domain": TeacherDomain.skills.value,
            "kept": len(kept),
            "skills": skills,
            "promoted": promote,
        },
    )


# --- the shared round: public tasks, their test solutions the reward ----------------------
Case = tuple[SkillTask, list[Demo]]


def score_on_tests(
    host: AdapterHost,
    task: SkillTask,
    tests: Sequence[Demo],
    text: str,
    scale: SkillScale,
    seed: int,
    keep: float = 1.0,
) -> ConfigResult:
    """A written configuration scored on a public task: trained with on all of the task's
    demonstrations, then graded on its test cases (never trained on). Its reward is the share
    of the test cases answered exactly when that share is at least ``keep`` (1: every case,
    the paper's success of a self-edit), else 0; ReST-EM learns from those with a reward. The
    adapter is not kept (``state`` None): only the text is learned from."""
    started = time.perf_counter()
    try:
        config = parse_config(text)
    except ConfigError as exc:
        return ConfigResult(text, None, str(exc), 0.0, None)
    state, steps = train_with(host, STUDENT, task, task.demos, config, scale, seed)
    longest = max(tests, key=lambda d: len(d.input)).input
    context = fit_context(host.tokenizer, task, task.demos, longest, scale.max_seq_len)
    share = score(host, STUDENT, state, task, context, tests, scale)
    reward = share if tests and share >= keep else 0.0
    return ConfigResult(text, config, None, reward, None, steps, time.perf_counter() - started)


@dataclass
class TaskReport:
    task: str
    rewards: list[float]
    parsed: int
    seconds: float


@dataclass
class SharedSkillsRound:
    """What a shared round did: per task, and the version it recorded (None: nothing kept)."""

    started_from: int | None
    tasks: list[TaskReport] = field(default_factory=list)
    kept: int = 0
    version: int | None = None
    promoted: bool = False
    train_loss: float | None = None


def _score_task(
    host: AdapterHost,
    settings: Settings,
    init: AdapterState | None,
    task: SkillTask,
    tests: Sequence[Demo],
    *,
    index: int,
    k: int,
    seed: int,
    scale: SkillScale,
    keep: float,
) -> tuple[list[ConfigResult], TaskReport]:
    """The teacher (``init``; None: the base model) writes ``k`` configurations for the
    ``index``-th task of a shared round, each scored by ``score_on_tests``. The writing seed is
    ``seed + index``, so the teacher samples afresh for each task, while every configuration
    trains with ``seed``."""
    started = time.perf_counter()
    texts = write_configs(
        host,
        TEACHER if init is not None else None,
        init,
        task,
        k,
        seed + index,
        temperature=settings.skill_teacher_temperature,
    )
    results = [score_on_tests(host, task, tests, text, scale, seed, keep) for text in texts]
    report = TaskReport(
        task.name,
        [r.reward for r in results],
        sum(r.config is not None for r in results),
        time.perf_counter() - started,
    )
    return results, report


def train_shared_skills_teacher(
    runtime: Runtime,
    cases: Sequence[Case],
    *,
    k: int,
    seed: int,
    scale: SkillScale | None = None,
    source: str = "",
    keep: float = 1.0,
    on_task: Callable[[int, TaskReport], None] | None = None,
) -> SharedSkillsRound:
    """One ReST-EM round of the shared skills teacher on public ``cases``: the active shared
    skills teacher (none: the base model) writes ``k`` configurations per task, each is
    scored by ``score_on_tests``, and those that answered at least the share ``keep`` of
    their unseen test cases train a new shared version from it, promoted when any were kept.
    ``source`` names the data in the version's metrics."""
    settings = runtime.settings
    refuse_external_teacher(settings, "ReST-EM")
    host = runtime.student
    scale = scale or skill_scale(settings)
    with session_scope(runtime.sessions) as session:
        start = usable(
            settings,
            teacher_repo.active_teacher_version(
                session, tenant_id=None, domain=TeacherDomain.skills
            ),
        )
        parent_id = start.id if start else None
        init = weights(settings, start)
        report = SharedSkillsRound(started_from=start.number if start else None)
    scored: list[tuple[SkillTask, ConfigResult]] = []
    for index, (task, tests) in enumerate(cases):
        results, task_report = _score_task(
            host, settings, init, task, tests, index=index, k=k, seed=seed, scale=scale, keep=keep
        )
        scored.extend((task, r) for r in results)
        report.tasks.append(task_report)
        if on_task:
            on_task(index, task_report)
    turns = teacher_turns(scored)
    report.kept = len(turns)
    if not turns:
        return report
    trained = train_skills_teacher(host, turns, settings, seed, init=init)
    solved = sorted({t.name for t, r in scored if r.config is not None and r.reward > 0})
    version = save_teacher(
        runtime,
        trained.state,
        tenant_id=None,
        parent_id=parent_id,
        promote=True,
        domain=TeacherDomain.skills,
        metrics={
            "kind": "restem-skills",
            "source": source,
            "tasks": len(cases),
            "k": k,
            "keep": keep,
            "configurations": len(scored),
            "parsed": sum(r.config is not None for _, r in scored),
            "kept": len(turns),
            "tasks_solved": solved,
            "started_from": report.started_from,
            "seed": seed,
            **_train_metrics(trained),
        },
    )
    report.version, report.promoted = version.number, True
    report.train_loss = trained.losses[-1] if trained.losses else None
    log.info("shared skills teacher v%s from %s configurations", version.number, len(turns))
    return report
