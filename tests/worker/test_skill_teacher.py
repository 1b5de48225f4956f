"""ReST-EM over skill configurations with the tiny model: a tenant's round learns from its own
rewarded configurations only, and the shared round from public tasks only."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from seal.lora import AdapterHost
from seal.selfedit import ChatTurn
from seal.skills.config import DEFAULT_CONFIG, SkillConfig
from seal.skills.tasks import Demo, SkillTask
from seal.skills.ttt import ConfigResult, SkillScale
from seal.train import TrainResult
from service.settings import Settings
from service.store.models import (
    Job,
    JobKind,
    JobStatus,
    Skill,
    TeacherDomain,
    TeacherVersion,
    Tenant,
    VersionStatus,
)
from service.store.repositories import skills as skill_repo
from service.store.repositories import teachers as teacher_repo
from tests.factories import make_job, make_skill, make_tenant
from worker.jobs import skill as skill_module
from worker.jobs import skill_teacher
from worker.jobs.lifecycle import JobInfo
from worker.jobs.teacher import run_teacher_round
from worker.runtime import Runtime


def _config(rate: float) -> str:
    return SkillConfig(False, False, False, False, "train_using_output_tokens", rate, 1).to_json()


def _edit(session: Session, skill: Skill, text: str, reward: float, *, parsed: bool = True) -> None:
    skill_repo.add_skill_self_edit(
        session,
        skill=skill,
        text=text,
        config=DEFAULT_CONFIG.as_dict() if parsed else None,
        error=None if parsed else "not JSON",
        reward=reward,
    )


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[list[ChatTurn]]:
    """Record what each training call learns from, then train for real."""
    calls: list[list[ChatTurn]] = []
    real = skill_teacher.train_skills_teacher

    def spy(
        host: AdapterHost, turns: Sequence[ChatTurn], settings: Settings, seed: int, **kw: object
    ) -> TrainResult:
        calls.append(list(turns))
        return real(host, turns, settings, seed, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(skill_teacher, "train_skills_teacher", spy)
    return calls


def _round(session: Session, runtime: Runtime, tenant: Tenant) -> Job:
    job = make_job(session, tenant, kind=JobKind.teacher_train, params={"domain": "skills"})
    session.commit()
    run_teacher_round(runtime, job.id)
    session.expire_all()
    found = session.get(Job, job.id)
    assert found is not None
    return found


def _skills_versions(session: Session, tenant_id: str | None) -> list[TeacherVersion]:
    return list(
        session.scalars(
            select(TeacherVersion).where(
                TeacherVersion.domain == TeacherDomain.skills,
                TeacherVersion.tenant_id.is_(None)
                if tenant_id is None
                else TeacherVersion.tenant_id == tenant_id,
            )
        )
    )


def test_a_tenant_round_learns_from_its_own_rewarded_configurations_only(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy(monkeypatch)
    tenant, _ = make_tenant(session)
    other, _ = make_tenant(session)
    reverse = make_skill(session, tenant, name="reverse")
    upper = make_skill(session, tenant, name="upper", examples=[("ab", "AB"), ("cd", "CD")])
    _edit(session, reverse, _config(1e-3), 1.0)
    _edit(session, upper, _config(3e-4), 0.5)
    _edit(session, reverse, _config(1e-4), 0.0)  # solved nothing
    _edit(session, reverse, "use a high learning rate", 1.0, parsed=False)  # did not parse
    _edit(session, make_skill(session, other), _config(3e-3), 1.0)  # another tenant's

    job = _round(session, runtime, tenant)

    assert job.status == JobStatus.succeeded, job.error
    result = job.result or {}
    assert len(calls) == 1
    assert sorted(t.reply for t in calls[0]) == sorted([_config(1e-3), _config(3e-4)])
    prompts = {t.reply: t.messages[-1][1] for t in calls[0]}  # each with its own skill's demos
    assert "two one" in prompts[_config(1e-3)] and "AB" in prompts[_config(3e-4)]
    (version,) = _skills_versions(session, tenant.id)
    assert version.status == VersionStatus.active and version.number == 1
    assert version.metrics["kept"] == 2 and version.metrics["skills"] == 2
    assert result["teacher_version"] == 1 and result["promoted"] is True
    assert result["domain"] == "skills"
    in_use = teacher_repo.teacher_in_use(session, tenant_id=tenant.id, domain=TeacherDomain.skills)
    assert in_use is not None and in_use.id == version.id
    assert teacher_repo.teacher_in_use(session, tenant_id=tenant.id) is None  # documents
    assert _skills_versions(session, other.id) == []

    # the tenant's next skill job writes its configurations with the new teacher
    skill_job, _ = skill_repo.create_skill_job(session, skill=reverse)
    info = JobInfo(skill_job.id, tenant.id, str(JobKind.skill), {}, 0)
    snapshot = skill_module._snapshot(session, runtime, info)
    assert snapshot.teacher_version_id == version.id and snapshot.teacher_state is not None


def test_a_tenant_round_with_nothing_kept_records_no_version(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy(monkeypatch)
    tenant, _ = make_tenant(session)
    other, _ = make_tenant(session)
    skill = make_skill(session, tenant)
    _edit(session, skill, _config(1e-3), 0.0)
    _edit(session, make_skill(session, other), _config(1e-3), 1.0)

    job = _round(session, runtime, tenant)

    assert job.status == JobStatus.succeeded, job.error
    result = job.result or {}
    assert "nothing to learn from" in (job.message or "")
    assert result["kept"] == 0 and result["teacher_version"] is None
    assert calls == [] and _skills_versions(session, tenant.id) == []


def test_one_kept_configuration_makes_a_candidate_version(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    _edit(session, make_skill(session, tenant), _config(1e-3), 1.0)

    job = _round(session, runtime, tenant)

    assert job.status == JobStatus.succeeded, job.error
    result = job.result or {}
    (version,) = _skills_versions(session, tenant.id)
    assert version.status == VersionStatus.candidate and result["promoted"] is False
    assert (
        teacher_repo.teacher_in_use(session, tenant_id=tenant.id, domain=TeacherDomain.skills)
        is None
    )


def test_the_shared_round_learns_from_configurations_that_solved_public_tasks(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy(monkeypatch)
    tenant, _ = make_tenant(session)
    _edit(session, make_skill(session, tenant), _config(3e-3), 1.0)  # never shared
    session.commit()
    cases = [
        (SkillTask("flip", (Demo("ab", "ba"), Demo("cd", "dc"))), [Demo("ef", "fe")]),
        (SkillTask("same", (Demo("x", "x"), Demo("y", "y"))), [Demo("z", "z")]),
    ]
    written = [_config(1e-3), "not a configuration"]
    monkeypatch.setattr(skill_teacher, "write_configs", lambda *a, **kw: list(written))

    def scorer(
        host: AdapterHost,
        task: SkillTask,
        tests: Sequence[Demo],
        text: str,
        scale: SkillScale,
        seed: int,
        keep: float,
    ) -> ConfigResult:
        solved = task.name == "flip" and text == written[0]
        config = DEFAULT_CONFIG if text == written[0] else None
        return ConfigResult(text, config, None, 1.0 if solved else 0.0, None)

    monkeypatch.setattr(skill_teacher, "score_on_tests", scorer)
    seen: list[int] = []

    report = skill_teacher.train_shared_skills_teacher(
        runtime, cases, k=2, seed=0, on_task=lambda i, _r: seen.append(i)
    )

    assert seen == [0, 1]
    assert [t.rewards for t in report.tasks] == [[1.0, 0.0], [0.0, 0.0]]
    assert report.kept == 1 and report.version == 1 and report.promoted
    (turns,) = calls
    assert [t.reply for t in turns] == [written[0]] and "ab" in turns[0].messages[0][1]
    session.expire_all()
    (version,) = _skills_versions(session, None)
    assert version.status == VersionStatus.active and version.metrics["tasks_solved"] == ["flip"]
    in_use = teacher_repo.teacher_in_use(session, tenant_id=tenant.id, domain=TeacherDomain.skills)
    assert in_use is not None and in_use.id == version.id
    assert teacher_repo.active_teacher_version(session, tenant_id=None) is None  # documents

    # a second round starts from the version the first one promoted
    assert skill_teacher.train_shared_skills_teacher(runtime, cases, k=2, seed=1).started_from == 1


def test_a_public_task_rewards_a_configuration_only_when_every_test_is_right(
    runtime: Runtime,
) -> None:
    task = SkillTask("same", (Demo("x", "x"), Demo("y", "y")))
    tests = [Demo("z", "z")]
    scale = SkillScale(max_examples=2, max_steps=1, batch_size=1, max_new_tokens=2)

    junk = skill_teacher.score_on_tests(runtime.student, task, tests, "no", scale, 0)
    assert junk.config is None and junk.reward == 0.0 and junk.error and junk.steps == 0
    scored = skill_teacher.score_on_tests(runtime.student, task, tests, _config(1e-3), scale, 0)
    assert scored.config is not None and scored.error is None and scored.steps == 1
    assert scored.reward in (0.0, 1.0) and scored.state is None


def test_a_public_task_rewards_the_share_of_its_tests_that_reaches_keep(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = SkillTask("same", (Demo("x", "x"), Demo("y", "y")))
    tests = [Demo("z", "z"), Demo("w", "w")]
    scale = SkillScale(max_examples=2, max_steps=1, batch_size=1, max_new_tokens=2)
    monkeypatch.setattr(skill_teacher, "score", lambda *a, **kw: 0.5)  # one of the two right

    def reward(keep: float) -> float:
        text = _config(1e-3)
        return skill_teacher.score_on_tests(
            runtime.student, task, tests, text, scale, 0, keep
        ).reward

    assert reward(1.0) == 0.0 and reward(0.5) == 0.5 and reward(0.25) == 0.5
