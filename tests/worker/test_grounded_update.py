"""The update's honest path on the real database with the tiny model: self-edits checked
against their document before training, and a gate that judges on probes the selection did
not use. The tiny model writes random tokens, so its drafts and verdicts are decided here;
sampling's bookkeeping, training and the records run for real."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from seal import knowledge
from seal.grading import Evaluation, Graded
from seal.knowledge import Draft, split_probes
from seal.selfedit import QA, parse_qa
from service.store.models import AdapterVersion, Job, JobStatus, SelfEdit, VersionStatus
from tests.factories import make_document, make_job, make_tenant
from worker.jobs.update import job as job_module
from worker.jobs.update import run_update, sampling
from worker.runtime import Runtime

TITLE = "Zorblat Industries"
FACT = "Zorblat Industries was founded by Marisol Quenby in 1987 in Oslo."
QUESTIONS = [
    ("Who founded Zorblat Industries?", "Marisol Quenby"),
    ("When was Zorblat Industries founded?", "1987"),
    ("Where was Zorblat Industries founded?", "Oslo"),
    ("Which company did Marisol Quenby found?", "Zorblat Industries"),
]
SEED = 7


def _teacher_writes(monkeypatch: pytest.MonkeyPatch, drafts: list[Draft]) -> None:
    def write(host, passages, fmt, k, sample, teacher, *, on_batch=None):  # type: ignore[no-untyped-def]
        if on_batch is not None:
            on_batch(len(passages), len(passages))
        return [list(drafts) for _ in passages]

    monkeypatch.setattr(sampling, "write_drafts_many", write)


def _grounded(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={"ground_self_edits": True, "truncated_self_edits": "drop"}
    )


def test_an_update_trains_only_grounded_items_and_counts_what_it_dropped(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _grounded(runtime)
    _teacher_writes(
        monkeypatch,
        [
            Draft(
                "Question: Who was Zorblat's first customer?\nAnswer: Bergen Shipping\n"
                "Question: In what year did Quenby found the company?\nAnswer: In 1987\n"
                "Question: Who founded Zorblat Industries?\nAnswer: Marisol Quenby"
            ),
            Draft("Question: Where is Zorblat based?\nAnswer: Oslo, where it was fou", True),
        ],
    )
    tenant, _ = make_tenant(session)  # the default format: self-qa
    make_document(session, tenant, title=TITLE, text=FACT, questions=QUESTIONS[:1])
    job = make_job(session, tenant, params={"seed": SEED})
    session.commit()

    run_update(runtime, job.id)

    session.expire_all()
    job = session.get(Job, job.id)
    assert job is not None and job.status == JobStatus.succeeded, job.error
    edits = session.scalars(select(SelfEdit)).all()
    kept = QA("In what year did Quenby found the company?", "In 1987")
    # the ungrounded pair, the probe's own question and the truncated draft are gone
    assert [parse_qa(e.text) for e in edits] == [[kept]]
    version = session.scalars(select(AdapterVersion)).one()
    assert version.metrics["self_edit_items_dropped"] == {
        "ungrounded_items": 1,
        "repeats_probe_items": 1,
        "truncated_items": 1,
        "empty_self_edits": 1,
    }


def _verdicts(chosen: Sequence[int], judged: Sequence[int]) -> object:
    """The base model answers the judged half; every self-edit answers the chosen half and
    forgets the judged one; the passage alone answers nothing."""

    def grade(host, states, probes, max_new_tokens, *, slot=None):  # type: ignore[no-untyped-def]
        def evaluation(right: set[int]) -> Evaluation:
            return Evaluation(
                [
                    Graded(p, p.qa.answer if i in right else "no", i in right)
                    for i, p in enumerate(probes)
                ]
            )

        if len(states) == 1:  # the baseline (and the empty retention set)
            return [evaluation(set(judged))]
        return [evaluation(set(chosen))] * (len(states) - 1) + [evaluation(set())]

    return grade


def test_the_gate_judges_on_the_probes_the_selection_did_not_use(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen, judged = split_probes(len(QUESTIONS), SEED)
    monkeypatch.setattr(knowledge, "evaluate_many", _verdicts(chosen, judged))
    tenant, _ = make_tenant(session)
    make_document(session, tenant, title=TITLE, text=FACT, questions=QUESTIONS)
    job = make_job(session, tenant, params={"seed": SEED})
    session.commit()

    run_update(runtime, job.id)

    version = session.scalars(select(AdapterVersion)).one()
    # the self-edit won on the chosen half (2 against the passage's 0) ...
    assert version.metrics["documents_won_by_passage_alone"] == 0
    # ... and is judged on the other half only, where it answers fewer than before; graded on
    # all four it would have tied (2 right before, 2 after) and been promoted
    assert version.metrics["probe_questions"] == len(judged)
    assert version.status == VersionStatus.rejected
    assert "answered fewer" in version.metrics["rejected_because"]


def test_a_sentences_update_trains_the_documents_own_sentences_without_the_teacher(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_teacher(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the sentences format must not call the teacher")

    monkeypatch.setattr(sampling, "write_drafts_many", no_teacher)
    tenant, _ = make_tenant(session)
    tenant.self_edit_format = "sentences"
    text = f"{FACT} It makes glass bicycles in Vellmora for export."
    make_document(session, tenant, title=TITLE, text=text, questions=QUESTIONS[:2])
    job = make_job(session, tenant, params={"seed": SEED})
    session.commit()

    run_update(runtime, job.id)

    session.expire_all()
    job = session.get(Job, job.id)
    assert job is not None and job.status == JobStatus.succeeded, job.error
    version = session.scalars(select(AdapterVersion)).one()
    assert version.metrics["format"] == "sentences"
    assert not version.metrics["self_edit_items_dropped"]
    edits = session.scalars(select(SelfEdit)).all()
    assert len(edits) == runtime.settings.num_candidates
    # the first cut: every sentence of the document alone
    assert edits[0].text == f"1. {FACT}\n2. It makes glass bicycles in Vellmora for export."


def test_an_anchored_version_of_several_documents_continues_from_them_alone(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``anchored_training``: with a self-edit kept, a version of several documents is the
    documents alone trained first, then their self-edits + the documents from there."""
    runtime.settings = runtime.settings.model_copy(update={"anchored_training": True})
    monkeypatch.setattr(knowledge, "evaluate_many", _verdicts([0, 1, 2, 3], []))
    _teacher_writes(
        monkeypatch, [Draft("Question: In what year did Quenby found it?\nAnswer: In 1987")]
    )
    tenant, _ = make_tenant(session)
    make_document(session, tenant, title=TITLE, text=FACT, questions=QUESTIONS)
    make_document(
        session,
        tenant,
        title="Vellmora",
        text="Vellmora lies on the river Quell.",
        questions=[("Where does Vellmora lie?", "on the river Quell")],
    )
    job = make_job(session, tenant, params={"seed": SEED})
    session.commit()
    steps: list[int] = []
    train_on = job_module.train_on

    def counted(host, sequences, config, *, init):  # type: ignore[no-untyped-def]
        steps.append(len(sequences))
        return train_on(host, sequences, config, init=init)

    monkeypatch.setattr(job_module, "train_on", counted)

    run_update(runtime, job.id)

    session.expire_all()
    job = session.get(Job, job.id)
    assert job is not None and job.status == JobStatus.succeeded, job.error
    version = session.scalars(select(AdapterVersion)).one()
    assert version.metrics["documents_won_by_passage_alone"] < 2  # a self-edit was kept
    # the two documents alone, then their self-edit's item + the two documents
    assert steps == [2, 3]
