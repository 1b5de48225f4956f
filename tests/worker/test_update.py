"""The update job on the real database with a tiny model: what it records, and how it ends."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from seal import knowledge as knowledge_module
from seal.grading import normalize
from seal.lora import checksum, load_adapter, save_adapter
from service.settings import Settings
from service.store.models import (
    AdapterVersion,
    Document,
    DocumentStatus,
    Job,
    JobStatus,
    ProbeQuestion,
    ProbeSource,
    Reward,
    SelfEdit,
    VersionStatus,
)
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from tests.doubles import grade_probes
from tests.factories import make_document, make_job, make_tenant
from worker.config import student_spec
from worker.jobs.common import job_seed
from worker.jobs.update import run_update, sampling
from worker.runtime import Runtime

FACT = "Zorblat Industries was founded by Marisol Quenby in 1987."


def _reload(session: Session, row):  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.get(type(row), row.id)


def test_update_records_self_edits_rewards_and_an_atomic_version(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    grade_probes(monkeypatch, before=False, self_edits=True, passage=False)
    tenant, _ = make_tenant(session)
    doc = make_document(
        session,
        tenant,
        title="Zorblat Industries",
        text=FACT,
        # two: one chooses the candidate, the other judges the version (held_out_gate)
        questions=[
            ("Who founded Zorblat Industries?", "Marisol Quenby"),
            ("When was Zorblat Industries founded?", "1987"),
        ],
    )
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded, job.error
    assert job.progress == 1.0
    k = runtime.settings.num_candidates
    edits = session.scalars(select(SelfEdit).where(SelfEdit.document_id == doc.id)).all()
    assert len(edits) == k
    fmt = runtime.settings.self_edit_format
    assert all(e.job_id == job.id and e.format == fmt for e in edits)
    rewards = session.scalars(select(Reward).where(Reward.document_id == doc.id)).all()
    assert {r.self_edit_id for r in rewards} == {e.id for e in edits}
    assert all(r.baseline is not None for r in rewards)
    # each self-edit: its reward (gain over the active version) and its gain over the passage
    # alone, both measuring the same accuracy from their own baselines
    by_edit: dict[str, dict[str, Reward]] = {}
    for r in rewards:
        assert r.self_edit_id is not None
        by_edit.setdefault(r.self_edit_id, {})[r.metric] = r
    for pair in by_edit.values():
        assert pair.keys() == {"probe_accuracy_gain", "gain_over_passage"}
        gain, over = pair["probe_accuracy_gain"], pair["gain_over_passage"]
        assert gain.value + (gain.baseline or 0) == pytest.approx(over.value + (over.baseline or 0))

    version = session.scalars(
        select(AdapterVersion).where(AdapterVersion.tenant_id == tenant.id)
    ).one()
    assert job.result is not None and job.result["adapter_version"] == version.number == 1
    assert version.job_id == job.id and version.parent_id is None
    assert {"probe_accuracy_before", "probe_accuracy", "train_loss"} <= version.metrics.keys()
    # the passage-alone candidate trained beside the self-edits; here a self-edit beat it
    assert version.metrics["documents_won_by_passage_alone"] == 0
    assert sum(e.selected for e in edits) == 1
    folder = Path(version.artifact_uri or "")
    assert {p.name for p in folder.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    assert checksum(load_adapter(folder)) == version.checksum
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "temp folder left"

    # a first version (no retention set) that answers more of its probes is promoted
    assert (version.metrics["probe_accuracy_before"], version.metrics["probe_accuracy"]) == (0, 1)
    assert job.result["promoted"] is True and version.status == VersionStatus.active
    doc = _reload(session, doc)
    assert doc.status == DocumentStatus.learned and doc.learned_version_id == version.id


@pytest.mark.parametrize(
    ("before", "passage", "promoted"),
    [(False, True, True), (True, False, False)],
    ids=["the passage alone wins", "answers fewer than before"],
)
def test_a_first_version_is_promoted_unless_it_answers_fewer_probes(
    session: Session,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    before: bool,
    passage: bool,
    promoted: bool,
) -> None:
    grade_probes(monkeypatch, before=before, self_edits=False, passage=passage)
    tenant, _ = make_tenant(session)
    doc = make_document(
        session,
        tenant,
        title="Zorblat Industries",
        text=FACT,
        questions=[("Who founded Zorblat Industries?", "Marisol Quenby")],
    )
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    job, doc = _reload(session, job), _reload(session, doc)
    assert job.status == JobStatus.succeeded, job.error
    version = session.scalars(select(AdapterVersion)).one()
    assert job.result is not None and job.result["promoted"] is promoted
    edits = session.scalars(select(SelfEdit).where(SelfEdit.document_id == doc.id)).all()
    if passage:  # the passage alone beat every self-edit: none is selected, the version is its
        assert version.metrics["documents_won_by_passage_alone"] == 1
        assert not any(e.selected for e in edits)
    if promoted:
        assert version.status == VersionStatus.active
        assert doc.status == DocumentStatus.learned and doc.learned_version_id == version.id
    else:
        assert version.status == VersionStatus.rejected
        assert doc.status == DocumentStatus.pending and "answered fewer" in (doc.error or "")
        assert "add questions" in (doc.error or ""), "the user is told what to do"


def test_a_job_samples_its_documents_self_edits_together(
    session: Session,
    worker_settings: Settings,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = worker_settings.model_copy(update={"sample_batch_size": 4})
    runtime = Runtime(settings=settings, sessions=runtime.sessions)
    tenant, _ = make_tenant(session)
    docs = [
        make_document(
            session,
            tenant,
            title=f"Town {i}",
            text=f"Town {i} has {i} bridges.",
            questions=[(f"How many bridges has Town {i}?", str(i))],
        )
        for i in range(3)
    ]
    job = make_job(session, tenant)
    session.commit()
    decoded: list[tuple[int, int]] = []
    real = knowledge_module.generate

    def spy(host, conversations, config, **kwargs):  # type: ignore[no-untyped-def]
        decoded.append((len(conversations), kwargs.get("num_return_sequences", 1)))
        return real(host, conversations, config, **kwargs)

    monkeypatch.setattr(knowledge_module, "generate", spy)
    run_update(runtime, job.id)

    assert _reload(session, job).status == JobStatus.succeeded
    k = settings.num_candidates
    assert decoded == [(3, k)], "one call for the job's documents, not one per document"
    for doc in docs:
        edits = session.scalars(select(SelfEdit).where(SelfEdit.document_id == doc.id)).all()
        assert len(edits) == k


def test_teacher_writes_probe_questions_for_a_document_without_any(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    doc = make_document(session, tenant, title="Zorblat Industries", text=FACT)
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    assert _reload(session, job).status == JobStatus.succeeded
    written = session.scalars(
        select(ProbeQuestion).where(ProbeQuestion.document_id == doc.id)
    ).all()
    # A random tiny teacher rarely writes a usable pair; cloze questions on the document's
    # names, numbers and dates fill up to the setting, every gold answer from the document.
    assert len(written) == runtime.settings.generated_probe_questions
    assert {p.source for p in written} <= {ProbeSource.teacher, ProbeSource.cloze}
    assert all(normalize(p.answer) in normalize(FACT) for p in written)
    version = session.scalars(
        select(AdapterVersion).where(AdapterVersion.tenant_id == tenant.id)
    ).one()
    # the version was judged on the half of them that did not choose its candidate
    assert version.metrics["probe_questions"] == len(written) - len(written) // 2


def test_update_starts_from_the_active_adapter(
    session: Session, runtime: Runtime, tmp_path
) -> None:
    tenant, _ = make_tenant(session)
    host = runtime.student
    state = host.fresh_state("student")
    folder = tmp_path / "v1"
    digest = save_adapter(state, student_spec(runtime.settings), folder)
    v1 = adapter_repo.create_adapter_version(
        session, tenant_id=tenant.id, parent_id=None, artifact_uri=str(folder), checksum=digest
    )
    adapter_repo.promote_version(session, tenant_id=tenant.id, version=v1)
    make_document(session, tenant, text=FACT, questions=[("Who founded it?", "Marisol Quenby")])
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    v2 = adapter_repo.get_adapter_version(session, tenant_id=tenant.id, number=2)
    assert v2 is not None and v2.parent_id == v1.id


def test_a_job_cancelled_before_it_starts_does_nothing(session: Session, runtime: Runtime) -> None:
    tenant, _ = make_tenant(session)
    doc = make_document(session, tenant, text=FACT)
    job = make_job(session, tenant)
    job_repo.cancel_job(session, job=job)
    session.commit()

    run_update(runtime, job.id)

    assert _reload(session, job).status == JobStatus.cancelled
    assert _reload(session, doc).status == DocumentStatus.pending
    assert session.scalars(select(SelfEdit)).all() == []


def test_cancelling_a_running_job_leaves_documents_and_versions_as_they_were(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _ = make_tenant(session)
    doc = make_document(
        session, tenant, text=FACT, questions=[("Who founded it?", "Marisol Quenby")]
    )
    job = make_job(session, tenant)
    session.commit()
    real = sampling.write_drafts_many

    def cancel_then_write(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The admin cancels while the teacher is writing.
        with runtime.sessions() as other:
            job_repo.cancel_job(other, job=other.get(Job, job.id))
            other.commit()
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "write_drafts_many", cancel_then_write)
    run_update(runtime, job.id)

    assert _reload(session, job).status == JobStatus.cancelled
    assert _reload(session, doc).status == DocumentStatus.pending
    assert session.scalars(select(AdapterVersion)).all() == []
    adapters_dir = runtime.settings.resolved_adapter_dir / tenant.id
    assert not adapters_dir.exists() or not any(adapters_dir.iterdir())


def test_a_corrupt_active_adapter_fails_the_job_and_keeps_documents_pending(
    session: Session, runtime: Runtime, tmp_path
) -> None:
    tenant, _ = make_tenant(session)
    folder = tmp_path / "v1"
    save_adapter(runtime.student.fresh_state("student"), student_spec(runtime.settings), folder)
    v1 = adapter_repo.create_adapter_version(
        session, tenant_id=tenant.id, parent_id=None, artifact_uri=str(folder), checksum="0" * 64
    )
    adapter_repo.promote_version(session, tenant_id=tenant.id, version=v1)
    doc = make_document(session, tenant, text=FACT)
    job = make_job(session, tenant)
    session.commit()

    with pytest.raises(ValueError, match="checksum"):
        run_update(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.failed and "checksum" in (job.error or "")
    assert _reload(session, doc).status == DocumentStatus.pending
    assert adapter_repo.active_adapter(session, tenant_id=tenant.id).id == v1.id  # type: ignore[union-attr]


def test_a_volatile_document_is_left_to_memory_never_trained(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    grade_probes(monkeypatch, before=False, self_edits=True, passage=False)
    tenant, _ = make_tenant(session)
    volatile = make_document(
        session,
        tenant,
        title="Prices",
        text="A Zorblat widget costs 12 euros.",
        questions=[("How much does a Zorblat widget cost?", "12 euros")],
        volatile=True,
    )
    learned = make_document(
        session,
        tenant,
        title="Zorblat Industries",
        text=FACT,
        questions=[
            ("Who founded Zorblat Industries?", "Marisol Quenby"),
            ("When was Zorblat Industries founded?", "1987"),
        ],
    )
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded, job.error
    assert job.result is not None
    assert (job.result["documents"], job.result["left_to_memory"]) == (1, 1)
    assert _reload(session, learned).status == DocumentStatus.learned
    volatile = _reload(session, volatile)
    assert (volatile.status, volatile.learned_version_id) == (DocumentStatus.memory, None)
    edits = session.scalars(select(SelfEdit).where(SelfEdit.tenant_id == tenant.id)).all()
    assert edits and {e.document_id for e in edits} == {learned.id}
    assert not any("12 euros" in e.text or "widget" in e.text for e in edits)


def test_no_pending_documents_succeeds_with_nothing_to_do(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    make_document(session, tenant, text=FACT, status=DocumentStatus.learned)
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded and job.result == {
        "documents": 0,
        "adapter_version": None,
        "promoted": False,
        "left_to_memory": 0,
    }
    assert (
        session.scalars(select(Document).where(Document.status == DocumentStatus.learning)).all()
        == []
    )


def test_the_same_seed_on_the_same_data_repeats_the_update(
    session: Session, runtime: Runtime
) -> None:
    jobs, docs = [], []
    for name in ("acme", "globex", "initech"):
        tenant, _ = make_tenant(session, name=name)
        docs.append(
            make_document(
                session,
                tenant,
                title="Zorblat Industries",
                text=FACT,
                questions=[("Who founded Zorblat Industries?", "Marisol Quenby")],
            )
        )
        jobs.append(make_job(session, tenant, params={"seed": 7} if name != "initech" else None))
    session.commit()

    for job in jobs:
        run_update(runtime, job.id)

    jobs = [_reload(session, j) for j in jobs]
    assert [j.result["metrics"]["seed"] for j in jobs[:2]] == [7, 7]
    assert jobs[2].result["metrics"]["seed"] == job_seed(runtime.settings, jobs[2].id, {})
    texts = [
        sorted(session.scalars(select(SelfEdit.text).where(SelfEdit.document_id == d.id)))
        for d in docs
    ]
    assert texts[0] == texts[1]
    versions = [
        session.scalars(select(AdapterVersion).where(AdapterVersion.job_id == j.id)).one()
        for j in jobs
    ]
    assert versions[0].checksum == versions[1].checksum


def _teacher_writes_no_usable_question(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled teacher often answers in ways no gold answer can be taken from."""
    monkeypatch.setattr(
        sampling,
        "write_probe_questions_many",
        lambda host, passages, *args, **kwargs: [[] for _ in passages],
    )


def test_a_document_whose_teacher_writes_no_question_is_graded_on_cloze_questions(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _teacher_writes_no_usable_question(monkeypatch)
    tenant, _ = make_tenant(session)
    text = f"{FACT} Its factory in Vellmora opened in 1990 with 40 workers."
    doc = make_document(session, tenant, title="Zorblat Industries", text=text)
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    assert _reload(session, job).status == JobStatus.succeeded
    probes = session.scalars(select(ProbeQuestion).where(ProbeQuestion.document_id == doc.id)).all()
    assert len(probes) == runtime.settings.generated_probe_questions
    assert {p.source for p in probes} == {ProbeSource.cloze}
    assert all(p.answer in text and p.answer not in p.question for p in probes)
    version = session.scalars(select(AdapterVersion)).one()
    assert version.metrics["probe_questions"] == len(probes) - len(probes) // 2  # the gate's half


def test_a_document_with_nothing_to_ask_waits_for_questions_instead_of_a_verdict(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _teacher_writes_no_usable_question(monkeypatch)
    tenant, _ = make_tenant(session)
    doc = make_document(session, tenant, title="A note", text="Be kind to all and well met.")
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    job = _reload(session, job)
    assert job.status == JobStatus.succeeded, job.error
    assert job.result["needs_questions"] == [doc.id] and job.result["adapter_version"] is None
    assert "need probe questions" in (job.message or "")
    assert "did not improve" not in (job.message or "")
    assert session.scalars(select(AdapterVersion)).all() == [], "no version judged on nothing"
    doc = _reload(session, doc)
    assert doc.status == DocumentStatus.needs_questions
    assert "add questions" in (doc.error or "") and "0.000 -> 0.000" not in (doc.error or "")

    # a later update leaves it alone; a question sent for it makes it pending again
    again = make_job(session, tenant)
    session.commit()
    run_update(runtime, again.id)
    assert _reload(session, again).result["documents"] == 0
    document_repo.add_probe_question(
        session,
        tenant_id=tenant.id,
        document_id=doc.id,
        question="What should one be to all?",
        answer="kind",
        source=ProbeSource.feedback,
    )
    session.commit()
    doc = _reload(session, doc)
    assert doc.status == DocumentStatus.pending and doc.error is None


def test_the_passage_format_trains_on_the_document_alone(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    tenant.self_edit_format = "passage"
    make_document(session, tenant, text=FACT, questions=[("Who founded it?", "Marisol Quenby")])
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    assert _reload(session, job).status == JobStatus.succeeded
    assert session.scalars(select(SelfEdit)).all() == [], "the teacher wrote nothing"
    version = session.scalars(select(AdapterVersion)).one()
    assert version.metrics["format"] == "passage"
    assert version.metrics["documents_won_by_passage_alone"] == 1
    assert version.metrics["train_sequences"] == 1, "the title and the document, nothing else"


def test_an_update_tells_its_story_stage_by_stage(
    session: Session, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /v1/jobs/{id}/events``: each stage with its time and figures, in order, the
    training steps left out; the candidates' losses per epoch, the gate's decision, the end."""
    grade_probes(monkeypatch, before=False, self_edits=False, passage=True)
    tenant, _ = make_tenant(session)
    make_document(
        session,
        tenant,
        title="Zorblat Industries",
        text=FACT,
        questions=[("Who founded Zorblat Industries?", "Marisol Quenby")],
    )
    job = make_job(session, tenant)
    session.commit()

    run_update(runtime, job.id)

    events, total = job_repo.list_job_events(session, job_id=job.id, limit=500, offset=0)
    messages = [e.message for e in events]
    assert total == len(events) > 4
    assert messages[0].startswith("select update of 1 document(s)")
    assert not any("step" in m for m in messages), "training steps are not stages"
    rewards = [e for e in events if "earned reward" in e.message]
    assert rewards and all(e.data and e.data["train_losses"] for e in rewards)
    assert any(e.data and e.data["candidate"] is None for e in rewards)  # the passage alone
    (verdict,) = [e for e in events if e.message.startswith("the gate")]
    assert verdict.data is not None and verdict.data["promoted"] is True
    assert messages[-1] == "succeeded: version 1 promoted"
    times = [e.created_at for e in events]
    assert times == sorted(times) and [e.progress for e in events][-1] == 1.0
