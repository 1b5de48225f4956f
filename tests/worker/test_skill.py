"""The skill job on the real database with a tiny model: what it records, its gate, and how it
ends."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from seal.lora import STUDENT, checksum, load_adapter, save_adapter
from seal.skills import ttt as ttt_module
from seal.skills.config import DEFAULT_CONFIG, SkillConfig, parse_config
from service.store.models import Job, JobStatus, SkillSelfEdit, SkillVersion, VersionStatus
from service.store.repositories import skills as skill_repo
from tests.factories import make_skill, make_tenant
from worker.jobs import skill as skill_module
from worker.jobs.skill import HELD_OUT_METRIC, run_skill
from worker.runtime import Runtime

REVERSALS = [("one two", "two one"), ("a b c", "c b a"), ("red blue", "blue red")]


def _job(session: Session, skill_id: str, tenant_id: str) -> Job:
    skill = skill_repo.get_skill(session, tenant_id=tenant_id, skill_id=skill_id)
    assert skill is not None
    job, created = skill_repo.create_skill_job(session, skill=skill)
    assert created
    return job


def _reload(session: Session, row):  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.get(type(row), row.id)


def _learn_reversals(session: Session, runtime: Runtime) -> tuple[Job, list[SkillSelfEdit]]:
    """A new tenant's skill of ``REVERSALS`` learned by one skill job that succeeded, and the
    configurations it recorded."""
    tenant, _ = make_tenant(session)
    skill = make_skill(session, tenant, examples=REVERSALS)
    job = _job(session, skill.id, tenant.id)
    session.commit()

    run_skill(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded, job.error
    edits = session.scalars(select(SkillSelfEdit).where(SkillSelfEdit.job_id == job.id)).all()
    return job, list(edits)


def _configs(monkeypatch: pytest.MonkeyPatch, texts: list[str]) -> None:
    monkeypatch.setattr(skill_module, "write_configs", lambda *a, **kw: list(texts))


def test_a_skill_job_scores_each_configuration_and_records_an_active_version(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    faster = SkillConfig(False, False, False, False, "train_using_output_tokens", 1e-3, 2)
    _configs(monkeypatch, [faster.to_json(), "not a configuration", DEFAULT_CONFIG.to_json()])
    tenant, _ = make_tenant(session)
    skill = make_skill(session, tenant, examples=REVERSALS)
    job = _job(session, skill.id, tenant.id)
    session.commit()

    run_skill(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded, job.error
    assert job.progress == 1.0
    edits = session.scalars(
        select(SkillSelfEdit)
        .where(SkillSelfEdit.job_id == job.id)
        .order_by(SkillSelfEdit.created_at, SkillSelfEdit.id)
    ).all()
    assert [e.text for e in edits][1] == "not a configuration"
    assert edits[1].config is None and edits[1].reward == 0.0 and edits[1].error
    assert edits[0].config == faster.as_dict() and edits[0].reward is not None
    assert sum(e.selected for e in edits) == 1
    chosen = next(e for e in edits if e.selected)
    assert chosen.config is not None  # a configuration that did not parse is never chosen
    version = session.scalars(select(SkillVersion).where(SkillVersion.job_id == job.id)).one()
    assert version.status == VersionStatus.active and version.number == 1
    assert version.config == chosen.config
    assert version.metrics[HELD_OUT_METRIC] == chosen.reward
    assert version.metrics["parsed"] == 2 and version.metrics["held_out"] == 1
    assert version.artifact_uri and Path(version.artifact_uri).is_dir()
    state = load_adapter(Path(version.artifact_uri), expected_checksum=version.checksum)
    assert checksum(state) == version.checksum
    assert job.result["skill_version"] == 1 and job.result["promoted"] is True


def test_when_no_configuration_parses_the_default_one_stands_in(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configs(monkeypatch, ["{}", "{"])
    job, edits = _learn_reversals(session, runtime)
    assert len(edits) == 3
    default = next(e for e in edits if e.selected)
    assert default.config == DEFAULT_CONFIG.as_dict() and default.teacher_version_id is None
    assert job.result["default_config"] is True and job.result["parsed"] == 0


def test_a_version_that_scores_below_the_active_one_is_rejected(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configs(monkeypatch, [DEFAULT_CONFIG.to_json()])
    tenant, _ = make_tenant(session)
    skill = make_skill(session, tenant, examples=REVERSALS)
    # an active version whose adapter answers the held-out example, the new one does not
    state = runtime.student.fresh_state(STUDENT)
    folder = tmp_path / "active"
    digest = save_adapter(state, runtime.student.specs[STUDENT], folder)
    active = skill_repo.create_skill_version(
        session, skill=skill, parent_id=None, artifact_uri=str(folder), checksum=digest
    )
    skill_repo.promote_skill_version(session, skill_id=skill.id, version=active)
    job = _job(session, skill.id, tenant.id)
    session.commit()
    real_score = ttt_module.score

    def score(host, slot, adapter, *args, **kwargs):  # type: ignore[no-untyped-def]
        if adapter is not None and checksum(adapter) == digest:
            return 1.0
        return real_score(host, slot, adapter, *args, **kwargs)

    monkeypatch.setattr(skill_module, "score", score)
    monkeypatch.setattr(
        skill_module,
        "score_config",
        lambda *a, **kw: ttt_module.ConfigResult(
            DEFAULT_CONFIG.to_json(), DEFAULT_CONFIG, None, 0.0, state
        ),
    )

    run_skill(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded, job.error
    assert job.result["promoted"] is False and job.result["parent_held_out_score"] == 1.0
    new = session.scalars(select(SkillVersion).where(SkillVersion.job_id == job.id)).one()
    assert new.status == VersionStatus.rejected and new.parent_id == active.id
    assert _reload(session, active).status == VersionStatus.active


def test_a_cancelled_skill_job_records_no_version(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _ = make_tenant(session)
    skill = make_skill(session, tenant, examples=REVERSALS)
    job = _job(session, skill.id, tenant.id)
    session.commit()

    def cancel_then_write(*args, **kwargs):  # type: ignore[no-untyped-def]
        with runtime.sessions() as other:
            other.get(Job, job.id).status = JobStatus.cancelled  # type: ignore[union-attr]
            other.commit()
        return [DEFAULT_CONFIG.to_json()]

    monkeypatch.setattr(skill_module, "write_configs", cancel_then_write)

    run_skill(runtime, job.id)

    assert _reload(session, job).status == JobStatus.cancelled
    assert session.scalars(select(SkillVersion).where(SkillVersion.job_id == job.id)).all() == []


@pytest.mark.parametrize(
    ("teacher_reward", "fixed_candidate", "chosen"),
    [(0.0, True, "fixed"), (1.0, True, "teacher"), (0.0, False, "teacher")],
)
def test_the_fixed_configuration_is_scored_beside_the_teachers_and_wins_a_tie(
    session: Session,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    teacher_reward: float,
    fixed_candidate: bool,
    chosen: str,
) -> None:
    written = SkillConfig(False, False, False, False, "train_using_all_tokens", 1e-5, 1)
    _configs(monkeypatch, [written.to_json()])
    runtime.settings = runtime.settings.model_copy(
        update={"skill_fixed_candidate": fixed_candidate}
    )
    state = runtime.student.fresh_state(STUDENT)

    def score_config(host, slot, task, demos, config, *args, **kwargs):  # type: ignore[no-untyped-def]
        parsed = config if isinstance(config, SkillConfig) else parse_config(config)
        reward = 0.0 if parsed == DEFAULT_CONFIG else teacher_reward
        text = config if isinstance(config, str) else config.to_json()
        return ttt_module.ConfigResult(text, parsed, None, reward, state)

    monkeypatch.setattr(skill_module, "score_config", score_config)
    job, edits = _learn_reversals(session, runtime)
    assert len(edits) == (2 if fixed_candidate else 1)
    selected = next(e for e in edits if e.selected)
    expected = DEFAULT_CONFIG if chosen == "fixed" else written
    assert selected.config == expected.as_dict()
    assert job.result["default_config"] is (chosen == "fixed")
    assert job.result["fixed_config_reward"] == (0.0 if fixed_candidate else None)
