"""The teacher's part of an update: every document's self-edits, sampled in shared batches,
and probe questions for documents that came without any (those for which none can be found
or written are set aside until questions come)."""

from __future__ import annotations

from collections import Counter

from seal.augment import SENTENCES, sentence_drafts
from seal.grounding import ground_drafts
from seal.knowledge import Draft, InnerLoopConfig, write_drafts_many, write_probe_questions_many
from seal.lora import AdapterHost
from seal.openbook import OPEN_BOOK, write_open_book_many
from seal.probes import with_cloze
from seal.selfedit import Passage
from service.settings import Settings
from service.store.db import session_scope
from service.store.models import DocumentStatus, ProbeSource
from service.store.repositories import documents as document_repo
from worker.jobs.common import Progress
from worker.jobs.lifecycle import JobRun
from worker.jobs.update.state import DocumentWork, Snapshot
from worker.runtime import Runtime

#: What a user can do for a document the update could not judge.
NEEDS_QUESTIONS = (
    "no probe question could be found or written for it, so no update of it can be judged; "
    "add questions with their answers (POST /v1/documents with the same title and text and "
    '"questions", or POST /v1/feedback with its document_id), and the next update learns it'
)


def sample_self_edits(
    teacher_host: AdapterHost,
    answer_host: AdapterHost,
    snap: Snapshot,
    config: InnerLoopConfig,
    k: int,
    progress: Progress,
) -> dict[str, list[Draft]]:
    """k self-edits of each document, by document id (``open-book``: answered by the base
    model of ``answer_host``, the student; ``sentences``: cut from the document, no teacher).
    The teacher does not change during a job, so every document's self-edits are sampled
    first, in shared batches (far cheaper per document than one document at a time)."""
    docs = snap.documents
    if not k:
        progress.step("no self-edits: the documents alone are trained on", len(docs))
        return {w.id: [] for w in docs}
    written = [0]

    def wrote(done: int, total: int) -> None:
        progress.step(
            f"the teacher wrote {k} self-edits for {done}/{total} documents", done - written[0]
        )
        written[0] = done

    passages = [w.passage for w in docs]
    if config.format == OPEN_BOOK:  # the teacher asks, the student's base answers open book
        batched = write_open_book_many(
            teacher_host,
            answer_host,
            passages,
            k,
            config.sample,
            snap.teacher,
            answer_max_tokens=config.answer_max_tokens,
            on_batch=wrote,
        )
    elif config.format == SENTENCES:  # no teacher: the documents' own sentences
        batched = [sentence_drafts(p, k, snap.seed + i) for i, p in enumerate(passages)]
        wrote(len(passages), len(passages))
    else:
        batched = write_drafts_many(
            teacher_host, passages, config.format, k, config.sample, snap.teacher, on_batch=wrote
        )
    return {w.id: drafts for w, drafts in zip(docs, batched, strict=True)}


def grounded_self_edits(
    settings: Settings, snap: Snapshot, drafts: dict[str, list[Draft]], fmt: str
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Each judgeable document's self-edits as they will be trained: checked against the
    document and its probes (:func:`seal.grounding.ground_drafts`), or as written when
    ``ground_self_edits`` is off (a cut-off one still goes by ``truncated_self_edits``).
    Returns them by document id, and how many items and whole self-edits each rule dropped."""
    kept: dict[str, list[str]] = {}
    dropped: Counter[str] = Counter()
    for work in snap.documents:
        mine = drafts.get(work.id, [])
        if settings.ground_self_edits:
            grounded = ground_drafts(
                mine, fmt, work.passage, on_truncated=settings.truncated_self_edits
            )
            kept[work.id] = grounded.texts
            dropped.update(grounded.dropped)
            continue
        drop_cut = settings.truncated_self_edits == "drop"
        kept[work.id] = [d.text for d in mine if not (drop_cut and d.truncated)]
        if len(kept[work.id]) < len(mine):
            dropped["truncated_self_edits"] += len(mine) - len(kept[work.id])
    return kept, dict(dropped)


def write_probes(
    runtime: Runtime, snap: Snapshot, works: list[DocumentWork], teacher_host: AdapterHost
) -> None:
    """Probe questions for ``works`` (documents without any): the teacher's, all written in
    shared batches, then cloze questions up to the setting; the store keeps them."""
    settings = runtime.settings
    written = write_probe_questions_many(
        teacher_host,
        [w.passage for w in works],
        settings.generated_probe_questions,
        snap.teacher,
        seed=settings.seed,
        batch_size=settings.sample_batch_size,
    )
    n = settings.generated_probe_questions
    with session_scope(runtime.sessions) as session:
        for work, questions in zip(works, written, strict=True):
            probes = with_cloze(work.passage.title, work.passage.text, questions, n)
            for i, qa in enumerate(probes):
                source = ProbeSource.teacher if i < len(questions) else ProbeSource.cloze
                document_repo.add_probe_question(
                    session,
                    tenant_id=snap.tenant_id,
                    document_id=work.id,
                    question=qa.question,
                    answer=qa.answer,
                    source=source,
                )
            work.passage = Passage(work.passage.title, work.passage.text, tuple(probes))


def judgeable(run: JobRun, snap: Snapshot, teacher_host: AdapterHost) -> list[DocumentWork]:
    """The documents the update can judge: probe questions are written for those without
    any; documents still without a single one wait for questions instead of being trained on
    and judged on nothing (``snap.needs_questions``)."""
    unprobed = [w for w in snap.documents if not w.passage.questions]
    if unprobed:
        write_probes(run.runtime, snap, unprobed, teacher_host)
    unjudged = [w for w in snap.documents if not w.passage.questions]
    if unjudged:
        with session_scope(run.runtime.sessions) as session:
            document_repo.set_document_status(
                session,
                document_ids=[w.id for w in unjudged],
                status=DocumentStatus.needs_questions,
                error=NEEDS_QUESTIONS,
            )
        snap.needs_questions = [w.id for w in unjudged]
        snap.documents = [w for w in snap.documents if w.passage.questions]
    return snap.documents


def finish_unjudged(run: JobRun, snap: Snapshot) -> None:
    """The job's end when no document could be judged."""
    run.succeed(
        f"{len(snap.needs_questions)} document(s) need probe questions: {NEEDS_QUESTIONS}",
        {
            "documents": 0,
            "adapter_version": None,
            "promoted": False,
            "rejected_because": None,
            "needs_questions": snap.needs_questions,
            "left_to_memory": snap.left_to_memory,
        },
    )
