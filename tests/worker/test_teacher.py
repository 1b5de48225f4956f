"""Teacher versions and the isolation of tenants' data."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from seal.selfedit import QA, Passage
from service.store.models import JobKind, JobStatus, SelfEdit, TeacherVersion, VersionStatus
from service.store.repositories import teachers as teacher_repo
from tests.factories import make_document, make_job, make_reward, make_self_edit, make_tenant
from worker.jobs.teacher import (
    run_teacher_round,
    save_teacher,
    tenant_teacher_pairs,
    train_shared_teacher,
)
from worker.jobs.update import CANDIDATE_METRIC, PASSAGE_GAIN_METRIC, run_update
from worker.runtime import Runtime

FACT = "Zorblat Industries was founded by Marisol Quenby in 1987."


def _rewarded_self_edit(  # type: ignore[no-untyped-def]
    session: Session, tenant, text: str, reward: float, over_passage: float | None = None
):
    """A self-edit with its reward and its gain over the passage alone (default: the same)."""
    doc = make_document(session, tenant, text=f"{text} ({tenant.name})")
    edit = make_self_edit(session, doc, text=text)
    make_reward(session, edit, metric=CANDIDATE_METRIC, value=reward)
    gain = reward if over_passage is None else over_passage
    make_reward(session, edit, metric=PASSAGE_GAIN_METRIC, value=gain)
    return doc, edit


def test_a_tenant_teacher_learns_from_that_tenant_only(session: Session, runtime: Runtime) -> None:
    acme, _ = make_tenant(session)
    globex, _ = make_tenant(session)
    _, acme_edit = _rewarded_self_edit(session, acme, "1. Acme's secret is blue.", 0.5)
    _rewarded_self_edit(session, acme, "1. A self-edit that earned nothing.", 0.0)
    # a positive reward, but the passage alone taught as much: not a teaching example
    _rewarded_self_edit(session, acme, "1. No better than the passage.", 0.5, over_passage=0.0)
    _rewarded_self_edit(session, globex, "1. Globex's secret is red.", 0.9)
    job = make_job(session, acme, kind=JobKind.teacher_train)
    session.commit()

    pairs = tenant_teacher_pairs(session, tenant_id=acme.id)
    assert [text for _, _, text, _ in pairs] == ["1. Acme's secret is blue."]

    run_teacher_round(runtime, job.id)

    session.expire_all()
    job = session.get(type(job), job.id)
    assert job is not None and job.status == JobStatus.succeeded, job.error
    version = session.scalars(select(TeacherVersion)).one()
    assert version.tenant_id == acme.id and version.status == VersionStatus.active
    assert version.metrics["self_edit_ids"] == [acme_edit.id]
    assert teacher_repo.active_teacher_version(session, tenant_id=globex.id) is None
    assert teacher_repo.active_teacher_version(session, tenant_id=None) is None

    # The next updates: acme's self-edits come from its own teacher, globex's from the base.
    for tenant in (acme, globex):
        make_document(session, tenant, text=FACT, questions=[("Who founded it?", "Marisol Quenby")])
    jobs = {t.id: make_job(session, t) for t in (acme, globex)}
    session.commit()
    for job in jobs.values():
        run_update(runtime, job.id)
    used = {
        e.tenant_id: e.teacher_version_id
        for e in session.scalars(
            select(SelfEdit).where(SelfEdit.job_id.in_([j.id for j in jobs.values()]))
        )
    }
    assert used == {acme.id: version.id, globex.id: None}


def test_a_round_with_no_positive_reward_makes_no_teacher(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    _rewarded_self_edit(session, tenant, "1. Nothing learned from this.", -0.2)
    job = make_job(session, tenant, kind=JobKind.teacher_train)
    session.commit()

    run_teacher_round(runtime, job.id)

    session.expire_all()
    job = session.get(type(job), job.id)
    assert job is not None and job.status == JobStatus.succeeded
    assert job.result == {"examples": 0, "teacher_version": None}
    assert session.scalars(select(TeacherVersion)).all() == []


def test_the_shared_teacher_is_used_by_tenants_without_their_own(
    session: Session, runtime: Runtime
) -> None:
    shared = save_teacher(
        runtime,
        runtime.teacher.fresh_state("teacher"),
        tenant_id=None,
        parent_id=None,
        metrics={},
        promote=True,
    )
    tenant, _ = make_tenant(session)
    make_document(session, tenant, text=FACT, questions=[("Who founded it?", "Marisol Quenby")])
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    edits = session.scalars(select(SelfEdit).where(SelfEdit.job_id == job.id)).all()
    assert edits and {e.teacher_version_id for e in edits} == {shared.id}


def test_shared_training_reports_each_round(session: Session, runtime: Runtime) -> None:
    passage = Passage("Zorblat Industries", FACT, (QA("Who founded it?", "Marisol Quenby"),))
    rounds = []
    report = train_shared_teacher(runtime, [passage], [passage], 2, on_round=rounds.append)
    assert [r.round for r in report.rounds] == [1, 2] == [r.round for r in rounds]
    k = runtime.settings.num_candidates
    for r in report.rounds:
        assert len(r.result.rewards) == k
        assert (r.version is None) == (r.result.teacher is None)
    assert len(report.baseline_heldout.graded) == 1


def test_a_round_without_a_new_teacher_reports_the_teacher_it_kept(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 2 trains no teacher: its held-out figure is round 1's teacher's, not the
    baseline's (the teacher it kept is round 1's)."""
    from seal.grading import Evaluation, Graded, Probe
    from seal.restem import RoundResult
    from worker.jobs import teacher as teacher_module

    probe = Probe("Zorblat Industries", QA("Who founded it?", "Marisol Quenby"))
    graded = {True: Evaluation([Graded(probe, "Marisol Quenby", True)])}
    graded[False] = Evaluation([Graded(probe, "nobody", False)])
    trained = iter([runtime.teacher.fresh_state("teacher"), None])

    def one_round(*args, **kwargs):  # type: ignore[no-untyped-def]
        return RoundResult(scored=[], teacher=next(trained))

    def heldout(host, passages, inner, teacher):  # type: ignore[no-untyped-def]
        return graded[teacher.state is not None]  # the baseline misses, round 1's answers

    monkeypatch.setattr(teacher_module, "restem_round", one_round)
    monkeypatch.setattr(teacher_module, "heldout_evaluation", heldout)
    passage = Passage("Zorblat Industries", FACT, (probe.qa,))
    report = train_shared_teacher(runtime, [passage], [passage], 2)
    assert report.baseline_heldout.accuracy == 0.0
    first, second = report.rounds
    assert first.version is not None and first.heldout.accuracy == 1.0
    assert second.version is None and second.heldout.accuracy == 1.0


class Stop(Exception):
    pass


def test_a_stopped_rest_em_run_resumes_after_its_last_scored_passage(
    session: Session, runtime: Runtime, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from seal import restem
    from seal.journal import Journal

    passages = [
        Passage("Zorblat Industries", FACT, (QA("Who founded it?", "Marisol Quenby"),)),
        Passage(
            "Vellmora", "Vellmora's mayor is Ada Thorne.", (QA("Who is mayor?", "Ada Thorne"),)
        ),
    ]
    path, settings = tmp_path / "train.jsonl", {"rounds": 2}

    def stop_in_round_2(number: int, index: int, scored) -> None:  # type: ignore[no-untyped-def]
        if number == 2:
            raise Stop

    first: list = []
    with pytest.raises(Stop):
        train_shared_teacher(
            runtime,
            passages,
            passages[:1],
            2,
            on_passage=stop_in_round_2,
            on_round=first.append,
            journal=Journal(path, settings),
        )
    versions = len(teacher_repo.shared_teacher_versions(session))
    scored: list[str] = []
    real = restem.score_passage

    def counting(host, passage, *args, **kwargs):  # type: ignore[no-untyped-def]
        scored.append(passage.title)
        return real(host, passage, *args, **kwargs)

    monkeypatch.setattr(restem, "score_passage", counting)
    # nothing is sampled again: round 2's self-edits were journaled before its first passage
    monkeypatch.setattr(restem, "write_self_edits_many", None)
    monkeypatch.setattr("worker.jobs.teacher.heldout_evaluation", _only_for_new_teachers())
    resumed = train_shared_teacher(
        runtime, passages, passages[:1], 2, journal=Journal(path, settings, resume=True)
    )
    assert scored == ["Vellmora"]  # round 2's second passage only
    [round_1] = first
    again = resumed.rounds[0]
    assert (again.version, again.promoted, again.result.rewards) == (
        round_1.version,
        round_1.promoted,
        round_1.result.rewards,
    )
    assert [r.round for r in resumed.rounds] == [1, 2]
    made = len(teacher_repo.shared_teacher_versions(session)) - versions
    assert made == (resumed.rounds[1].version is not None)  # round 1 was not made again


def _only_for_new_teachers():  # type: ignore[no-untyped-def]
    """The held-out evaluation, refusing to run for the baseline (journaled already)."""
    from worker.jobs import teacher as teacher_module

    real = teacher_module.heldout_evaluation
    calls: list[int] = []

    def evaluation(host, heldout, inner, teacher, **kwargs):  # type: ignore[no-untyped-def]
        assert teacher.state is not None, "the baseline was evaluated again"
        calls.append(1)
        return real(host, heldout, inner, teacher, **kwargs)

    return evaluation
