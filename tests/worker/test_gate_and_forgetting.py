"""The promotion gate, replay of earlier self-edits, batch mode and the auto format."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from seal.grading import Evaluation, Graded, Probe
from seal.selfedit import FORMATS, QA
from service.store.models import (
    AdapterVersion,
    DocumentStatus,
    Job,
    JobStatus,
    Reward,
    SelfEdit,
)
from service.store.repositories import jobs as job_repo
from tests.factories import make_document, make_job, make_self_edit, make_tenant
from worker.jobs.update import BATCH_METRIC, Gate, run_update
from worker.runtime import Runtime

FACT = "Zorblat Industries was founded by Marisol Quenby in 1987."
QUESTION = [("Who founded Zorblat Industries?", "Marisol Quenby")]


def evaluation(*correct: bool) -> Evaluation:
    probe = Probe("t", QA("q?", "a"))
    return Evaluation([Graded(probe, "", c) for c in correct])


def test_the_gate_promotes_an_improvement_that_keeps_old_knowledge() -> None:
    gate = Gate(
        evaluation(False), evaluation(True), evaluation(True, True), evaluation(True, True), 0.05
    )
    assert gate.refusal() is None


def test_the_gate_rejects_a_version_that_did_not_improve() -> None:
    gate = Gate(evaluation(True), evaluation(True), evaluation(), evaluation(), 0.05, min_gain=1)
    assert "did not improve" in (gate.refusal() or "")


def test_by_default_the_gate_promotes_a_version_no_worse_and_rejects_a_worse_one() -> None:
    same = Gate(evaluation(True, False), evaluation(False, True), evaluation(), evaluation(), 0.05)
    assert same.refusal() is None
    worse = Gate(evaluation(True, True), evaluation(True, False), evaluation(), evaluation(), 0.05)
    assert "answered fewer of its 2 probe questions (2 right before, 1 after)" in (
        worse.refusal() or ""
    )


def test_a_version_without_probe_questions_is_never_said_not_to_improve() -> None:
    gate = Gate(evaluation(), evaluation(), evaluation(), evaluation(), 0.05, min_gain=1)
    refusal = gate.refusal() or ""
    assert "no probe questions" in refusal and "did not improve" not in refusal


def test_the_gate_rejects_a_harmful_version_that_forgot_earlier_documents() -> None:
    retained, forgotten = evaluation(True, True, True, True), evaluation(True, True, True, False)
    gate = Gate(evaluation(False), evaluation(True), retained, forgotten, 0.05)
    assert "forgot earlier documents" in (gate.refusal() or "")
    lenient = Gate(evaluation(False), evaluation(True), retained, forgotten, 0.25)
    assert lenient.refusal() is None


def _learned_document_with_kept_self_edit(session: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    earlier = make_document(
        session,
        tenant,
        title="Quillfen Observatory",
        text="The Quillfen Observatory was built by Tavish Orrell.",
        status=DocumentStatus.learned,
        questions=[("Who built the Quillfen Observatory?", "Tavish Orrell")],
    )
    make_self_edit(
        session,
        earlier,
        text="1. Tavish Orrell built the Quillfen Observatory.\n"
        "2. The observatory's builder was Tavish Orrell.",
        selected=True,
    )


def test_an_update_replays_earlier_self_edits_and_measures_retention(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    _learned_document_with_kept_self_edit(session, tenant)
    make_document(session, tenant, title="Zorblat Industries", text=FACT, questions=QUESTION)
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    version = session.scalars(select(AdapterVersion)).one()
    metrics = version.metrics
    assert metrics["replayed_sequences"] > 0
    assert metrics["retention_questions"] == 1
    assert {"retention_accuracy_before", "retention_accuracy"} <= metrics.keys()
    assert metrics["train_sequences"] > metrics["replayed_sequences"]


def test_no_replay_when_the_share_is_zero(session: Session, runtime: Runtime) -> None:
    runtime.settings = runtime.settings.model_copy(update={"replay_fraction": 0.0})
    tenant, _ = make_tenant(session)
    _learned_document_with_kept_self_edit(session, tenant)
    make_document(session, tenant, text=FACT, questions=QUESTION)
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    assert session.scalars(select(AdapterVersion)).one().metrics["replayed_sequences"] == 0


def test_a_batch_update_trains_once_and_rewards_each_self_edit(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _ = make_tenant(session)
    docs = [
        make_document(
            session, tenant, title=f"Doc {i}", text=f"{FACT} Fact {i}.", questions=QUESTION
        )
        for i in range(2)
    ]
    job = make_job(session, tenant)
    job.params = {"mode": "batch"}
    session.commit()
    reported: list[float] = []
    real = job_repo.report_progress

    def spy(session, *, job_id, attempt, progress, message):  # type: ignore[no-untyped-def]
        reported.append(progress)
        return real(session, job_id=job_id, attempt=attempt, progress=progress, message=message)

    monkeypatch.setattr(job_repo, "report_progress", spy)
    run_update(runtime, job.id)

    # the bar fills as the work goes: 2 self-edit units, then train, evaluate (of 2 + 3 units)
    assert reported == sorted(reported) and reported[-1] == pytest.approx(0.95 * 4 / 5)

    session.expire_all()
    job = session.get(Job, job.id)
    assert job is not None and job.status == JobStatus.succeeded, job.error
    assert job.result is not None and job.result["metrics"]["mode"] == "batch"
    edits = session.scalars(select(SelfEdit)).all()
    assert sorted(e.document_id for e in edits) == sorted(d.id for d in docs)  # one per document
    assert all(e.selected for e in edits)
    rewards = session.scalars(select(Reward).where(Reward.metric == BATCH_METRIC)).all()
    version = session.scalars(select(AdapterVersion)).one()
    assert len(rewards) == 2 and all(r.adapter_version_id == version.id for r in rewards)


@pytest.mark.parametrize("fmt", ["self-qa", "auto"])
def test_the_tenant_format_is_used(session: Session, runtime: Runtime, fmt: str) -> None:
    tenant, _ = make_tenant(session)
    tenant.self_edit_format = fmt
    make_document(session, tenant, text=FACT, questions=QUESTION)
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    edits = session.scalars(select(SelfEdit)).all()
    expected = "self-qa" if fmt == "self-qa" else FORMATS[0]  # auto: an untried format first
    assert edits and {e.format for e in edits} == {expected}
    version = session.scalars(select(AdapterVersion)).one()
    assert version.metrics["format"] == expected
    session.expire_all()
    job = session.get(Job, job.id)
    assert job is not None and job.result is not None
    assert job.result["metrics"]["format"] == expected
    assert session.get(type(tenant), tenant.id).self_edit_format == fmt, "auto stays auto"
