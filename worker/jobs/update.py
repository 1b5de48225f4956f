"""The update job: a tenant's pending documents in, one new adapter version out.

Two modes. ``select`` (on demand): for each document the teacher samples k self-edits, each is
scored by the inner loop (a LoRA update from the active adapter, rewarded by the probe accuracy
it gained) and the best is kept. ``batch`` (the nightly schedule, the paper's continued
pre-training): the teacher's self-edits of all documents, no inner loop. Either way one new
version is trained from the active one on the kept self-edits, the documents and a replayed
sample of earlier kept self-edits (every candidate rehearses the same sample, so the winner
of a one-document update is the version itself), saved atomically, and promoted only when it
answers the batch's probe questions better than the active version and did not forget the
retention set (probe questions of documents learned earlier) beyond a tolerance.

The third mode, ``rebuild``, is :mod:`worker.jobs.rebuild`. Every mode runs through the job
lifecycle (:mod:`worker.jobs.lifecycle`: heartbeat, attempts, cancellation).

Progress and each document's scored self-edits are committed as they come (short
transactions, so the API shows them); the version, its promotion and the job's result in one
final transaction. A cancelled or failed job leaves the active version and the pending
documents as they were; a job whose worker died runs again as a new attempt.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy.orm import Session

from seal.grading import Evaluation, Probe
from seal.knowledge import (
    Candidate,
    InnerLoopConfig,
    Teacher,
    best_candidate,
    evaluate_state,
    score_candidates,
    train_on,
    write_probe_questions_many,
    write_self_edits_many,
)
from seal.lora import AdapterHost, AdapterState, save_adapter
from seal.multi import split
from seal.probes import cloze_questions
from seal.selfedit import (
    PASSAGE,
    QA,
    ChatTurn,
    Passage,
    choose_format,
    parse_items,
    training_sequences,
)
from service.settings import Settings
from service.store.db import in_transaction, session_scope
from service.store.models import (
    DocumentStatus,
    JobStatus,
    ProbeSource,
    UpdateMode,
    VersionStatus,
)
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import learning as learning_repo
from service.store.repositories import tenants as tenant_repo
from worker.bundled import usable
from worker.jobs.common import (
    Progress,
    job_seed,
    learned_sequences,
    load_teacher,
    retention_probes,
    version_folder,
    weights,
)
from worker.jobs.lifecycle import JobInfo, JobRun, run_job
from worker.jobs.rebuild import run_rebuild
from worker.runtime import Runtime, inner_loop_config, remote_teacher, student_spec

#: The reward of a candidate self-edit: the probe accuracy its own inner loop gained.
CANDIDATE_METRIC = "probe_accuracy_gain"
#: A candidate self-edit's probe accuracy above the passage-alone candidate trained beside it
#: (what ReST-EM keeps self-edits by: only those that teach more than the document itself).
PASSAGE_GAIN_METRIC = "gain_over_passage"
#: The reward of a batch self-edit: its document's accuracy gain in the batch's version.
BATCH_METRIC = "batch_probe_accuracy_gain"
#: The gain of a whole version on its batch's probe questions.
VERSION_METRIC = "version_probe_accuracy_gain"

log = logging.getLogger(__name__)


@dataclass
class DocumentWork:
    id: str
    passage: Passage
    baseline: Evaluation | None = None
    after: Evaluation | None = None
    kept: list[Candidate] = field(default_factory=list)
    """The self-edits this document is learned from (select: the best, or none when the
    passage alone won; batch: all written)."""
    winner: Candidate | None = None
    """select: the candidate chosen (a self-edit or the passage alone), its adapter trained."""


@dataclass
class Snapshot:
    """What the job read from the store when it started (plain data, no ORM objects)."""

    tenant_id: str
    mode: UpdateMode
    seed: int
    fmt: str
    parent_id: str | None
    parent_state: AdapterState | None
    teacher: Teacher
    teacher_version_id: str | None
    documents: list[DocumentWork]
    retention: list[Probe]
    replay_pool: list[str | ChatTurn]
    """Training sequences of earlier kept self-edits (and their documents) to rehearse."""
    needs_questions: list[str] = field(default_factory=list)
    """Documents set aside during the job: no probe question could be found or written."""


def run_update(runtime: Runtime, job_id: str) -> None:
    """Run one update job (any mode, a rebuild included) to its end through the job
    lifecycle; every outcome is recorded on the job."""
    claimed: list[Snapshot] = []

    def body(run: JobRun) -> None:
        if run.job.params.get("mode") == UpdateMode.rebuild:
            run_rebuild(run)
            return
        snapshot = in_transaction(runtime.sessions, lambda s: _snapshot(s, runtime, run.job))
        claimed.append(snapshot)
        if not snapshot.documents:
            run.succeed(
                "no pending documents",
                {"documents": 0, "adapter_version": None, "promoted": False},
            )
            return
        _learn(run, snapshot)

    def undo(session: Session, error: str | None) -> None:
        """A failed or cancelled update puts its documents back to pending."""
        for snapshot in claimed:
            document_repo.set_document_status(
                session,
                document_ids=[w.id for w in snapshot.documents],
                status=DocumentStatus.pending,
                error=error,
            )

    run_job(runtime, job_id, body, message="reading pending documents", undo=undo)


def _snapshot(session: Session, runtime: Runtime, job: JobInfo) -> Snapshot:
    settings = runtime.settings
    tenant_id, job_id, params = job.tenant_id, job.id, job.params
    # first, so that a document is either claimed here or deleted by the API, never both
    pending = document_repo.claim_pending_documents(session, tenant_id=tenant_id)
    tenant = tenant_repo.get_tenant(session, tenant_id=tenant_id)
    assert tenant is not None
    active = adapter_repo.active_adapter(session, tenant_id=tenant_id)
    probes = document_repo.probe_questions_for_documents(
        session, document_ids=[d.id for d in pending]
    )
    works = [
        DocumentWork(
            id=d.id,
            passage=Passage(d.title, d.text, tuple(QA(p.question, p.answer) for p in probes[d.id])),
        )
        for d in pending
    ]
    state = weights(active)

    seed = job_seed(settings, job_id, params)
    fmt = tenant.self_edit_format or settings.self_edit_format
    if fmt == "auto":
        rewards = learning_repo.rewards_by_format(
            session, tenant_id=tenant_id, metric=CANDIDATE_METRIC
        )
        fmt = choose_format(rewards, random.Random(seed), explore=settings.auto_explore)

    remote = remote_teacher(settings)
    if remote is not None:  # an external endpoint writes every tenant's self-edits
        teacher_version, teacher = None, Teacher(remote=remote)
    else:
        teacher_version = usable(
            settings, learning_repo.teacher_in_use(session, tenant_id=tenant_id)
        )
        teacher = load_teacher(teacher_version)

    retention = retention_probes(session, settings, tenant_id)
    learned = learned_sequences(session, tenant_id, qa_form=settings.qa_form)
    replay_pool = [seq for seqs in learned.values() for seq in seqs]
    return Snapshot(
        tenant_id=tenant_id,
        mode=UpdateMode(params.get("mode", UpdateMode.select)),
        seed=seed,
        fmt=fmt,
        parent_id=active.id if active else None,
        parent_state=state,
        teacher=teacher,
        teacher_version_id=teacher_version.id if teacher_version else None,
        documents=works,
        retention=retention,
        replay_pool=replay_pool,
    )


def _learn(run: JobRun, snap: Snapshot) -> None:
    runtime, job_id = run.runtime, run.id
    settings = runtime.settings
    config = inner_loop_config(settings, snap.fmt)
    rng = random.Random(snap.seed)
    config = replace(config, sample=replace(config.sample, seed=rng.randrange(2**31)))
    host, teacher_host = runtime.student, runtime.teacher
    select = snap.mode == UpdateMode.select
    # format ``passage``: the documents alone, no self-edits (the tenant's own baseline)
    k = 0 if snap.fmt == PASSAGE else config.num_candidates if select else settings.batch_self_edits
    docs = snap.documents
    # units: per document 1 for its self-edits (+ k + 1 for training its candidates, the
    # passage alone among them, and 1 for the kept one in select mode), then the version's
    # training, evaluation and saving
    progress = Progress(run, total=len(docs) * ((k + 3) if select else 1) + 3)
    replay = _replay_sample(snap.replay_pool, settings, rng)
    progress.step(f"{snap.mode} update of {len(docs)} document(s), format {snap.fmt}", 0)

    written = [0]

    def wrote(done: int, total: int) -> None:
        progress.step(
            f"the teacher wrote {k} self-edits for {done}/{total} documents", done - written[0]
        )
        written[0] = done

    # The teacher does not change during a job, so every document's self-edits are sampled
    # first, in shared batches (far cheaper per document than one document at a time).
    if k:
        batched = write_self_edits_many(
            teacher_host,
            [w.passage for w in docs],
            config.format,
            k,
            config.sample,
            snap.teacher,
            on_batch=wrote,
        )
    else:
        batched = [[] for _ in docs]
        progress.step("no self-edits: the documents alone are trained on", len(docs))
    texts_of = {w.id: texts for w, texts in zip(docs, batched, strict=True)}
    unprobed = [w for w in docs if not w.passage.questions]
    if unprobed:
        _write_probes(runtime, snap, unprobed, teacher_host)
    unjudged = [w for w in docs if not w.passage.questions]
    if unjudged:  # nothing to grade them on: set aside until questions come
        _set_aside(runtime, snap, unjudged)
        snap.needs_questions = [w.id for w in unjudged]
        docs = snap.documents = [w for w in docs if w.passage.questions]
        if not docs:
            _finish_unjudged(run, unjudged)
            return
    # every document's baseline graded in the same batches
    baselines = _evaluate_each(host, snap.parent_state, docs, config)
    for index, (work, baseline) in enumerate(zip(docs, baselines, strict=True), 1):
        label = f"document {index}/{len(docs)}"
        work.baseline = baseline
        texts = texts_of[work.id]
        if not select:
            work.kept = [Candidate(text=t, items=parse_items(t, config.format)) for t in texts]
            continue
        n = len(texts) + 1

        def report(i: int, c: Candidate, label: str = label, n: int = n) -> None:
            what = "the passage alone" if c.passage_alone else f"candidate {i + 1}/{n - 1}"
            progress.step(f"{label}: {what} earned reward {c.reward:+.3f}", 0)

        reported = [0]

        def training(
            done: int, total: int, label: str = label, seen: list[int] = reported, n: int = n
        ) -> None:
            # the candidates train together: n progress units spread over their steps
            if done == total or done - seen[0] >= max(1, total // 10):
                units, seen[0] = n * (done - seen[0]) / total, done
                progress.step(f"{label}: training {n} candidates, step {done}/{total}", units)

        candidates = score_candidates(
            host,
            work.passage,
            texts,
            config,
            init=snap.parent_state,
            baseline=baseline,
            replay=replay,
            passage_alone=True,
            on_candidate=report,
            on_step=training,
        )
        best = best_candidate(candidates)
        work.winner = best
        work.kept = [] if best.passage_alone else [best]
        work.after = best.evaluation
        _record_candidates(runtime, job_id, snap, work, candidates, best, config)
        kept = "the passage alone" if best.passage_alone else "a self-edit"
        progress.step(f"{label}: kept {kept}, reward {best.reward:+.3f}")

    own = [
        seq
        for w in docs
        for seq in training_sequences(
            w.passage,
            [s for c in w.kept for s in c.self_edits(config.format)],
            qa_form=config.qa_form,
        )
    ]
    winner = docs[0].winner if select and len(docs) == 1 else None
    if winner is not None and winner.trained is not None:
        # same data, same start, same seed: the chosen candidate's adapter is the version
        trained = winner.trained
    else:
        trained = train_on(host, own + replay, config.train, init=snap.parent_state)
        afters = _evaluate_each(host, trained.state, docs, config)
        for work, after in zip(docs, afters, strict=True):
            work.after = after
    progress.step(f"trained the new version on {len(own)} sequences + {len(replay)} replayed")

    before = _merge([w.baseline for w in docs if w.baseline])
    after = _merge([w.after for w in docs if w.after])
    retention_before = _evaluate(host, snap.parent_state, snap.retention, config)
    retention_after = _evaluate(host, trained.state, snap.retention, config)
    progress.step("evaluated the new version")

    target = version_folder(settings, snap.tenant_id, job_id)
    digest = save_adapter(
        trained.state,
        student_spec(settings),
        target,
        base_model=settings.student_model,
        extra={"tenant_id": snap.tenant_id, "job_id": job_id},
    )
    metrics = {
        "mode": snap.mode,
        "seed": snap.seed,
        "format": config.format,
        "documents": len(docs),
        "probe_questions": len(before.graded),
        "probe_accuracy_before": before.accuracy,
        "probe_accuracy": after.accuracy,
        "retention_questions": len(snap.retention),
        "retention_accuracy_before": retention_before.accuracy,
        "retention_accuracy": retention_after.accuracy,
        "replayed_sequences": len(replay),
        "documents_won_by_passage_alone": sum(
            1 for w in docs if w.winner is not None and w.winner.passage_alone
        ),
        "train_sequences": len(own) + len(replay),
        "train_loss": trained.losses[-1] if trained.losses else None,
        "train_tokens": trained.tokens,
        "train_seconds": round(trained.seconds, 3),
    }
    gate = Gate(
        before,
        after,
        retention_before,
        retention_after,
        settings.retention_tolerance,
        min_gain=settings.promotion_min_probe_gain,
    )
    try:
        _commit_version(run, snap, target, digest, metrics, gate, config)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # a version folder exists only if recorded
        raise


@dataclass(frozen=True)
class Gate:
    """Promotion: the batch's probe questions answered by at least ``min_gain`` more than
    before (0: no fewer), and the retention accuracy fell by no more than the tolerance."""

    before: Evaluation
    after: Evaluation
    retention_before: Evaluation
    retention_after: Evaluation
    tolerance: float
    min_gain: int = 0

    def refusal(self) -> str | None:
        if not self.before.graded:
            return "had no probe questions to be judged on"
        counts = f"({self.before.correct} right before, {self.after.correct} after)"
        questions = f"its {len(self.before.graded)} probe questions"
        if self.after.correct < self.before.correct:
            return f"answered fewer of {questions} {counts}"
        if self.after.correct - self.before.correct < self.min_gain:
            return f"did not improve on {questions} by {self.min_gain} {counts}"
        drop = self.retention_before.accuracy - self.retention_after.accuracy
        if drop > self.tolerance + 1e-9:
            return (
                f"forgot earlier documents: retention accuracy fell "
                f"{self.retention_before.accuracy:.3f} -> {self.retention_after.accuracy:.3f} "
                f"(tolerance {self.tolerance:.3f})"
            )
        return None


def _probes(work: DocumentWork) -> list[Probe]:
    return [Probe(work.passage.title, qa) for qa in work.passage.questions]


def _evaluate(
    host: AdapterHost, state: AdapterState | None, probes: list[Probe], config: InnerLoopConfig
) -> Evaluation:
    return evaluate_state(host, state, probes, config.answer_max_tokens)


def _evaluate_each(
    host: AdapterHost, state: AdapterState | None, docs: list[DocumentWork], config: InnerLoopConfig
) -> list[Evaluation]:
    """Each document's evaluation, all their probes graded in the same batches."""
    flat = _evaluate(host, state, [p for w in docs for p in _probes(w)], config).graded
    return [Evaluation(part) for part in split(flat, [len(w.passage.questions) for w in docs])]


def _merge(evaluations: list[Evaluation]) -> Evaluation:
    return Evaluation([g for e in evaluations for g in e.graded])


def _replay_sample(
    pool: list[str | ChatTurn], settings: Settings, rng: random.Random
) -> list[str | ChatTurn]:
    """The job's sample of earlier sequences: every candidate and the version rehearse it, so
    a candidate's measured reward is that of the run that becomes the version."""
    want = math.ceil(len(pool) * settings.replay_fraction)
    return rng.sample(pool, min(want, settings.replay_max_sequences, len(pool)))


def _write_probes(
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
            given = {q.answer.lower() for q in questions}
            cloze = [
                qa
                for qa in cloze_questions(work.passage.title, work.passage.text, n)
                if qa.answer.lower() not in given
            ][: n - len(questions)]
            sourced = [(qa, ProbeSource.teacher) for qa in questions]
            for qa, source in [*sourced, *((qa, ProbeSource.cloze) for qa in cloze)]:
                document_repo.add_probe_question(
                    session,
                    tenant_id=snap.tenant_id,
                    document_id=work.id,
                    question=qa.question,
                    answer=qa.answer,
                    source=source,
                )
            work.passage = Passage(work.passage.title, work.passage.text, (*questions, *cloze))


#: What a user can do for a document the update could not judge.
NEEDS_QUESTIONS = (
    "no probe question could be found or written for it, so no update of it can be judged; "
    "add questions with their answers (POST /v1/documents with the same title and text and "
    '"questions", or POST /v1/feedback with its document_id), and the next update learns it'
)
#: What a user can do for a document whose version was rejected.
RETRY = (
    "it stays pending and the next update tries again with new self-edits; to help it, add "
    "questions about it with their answers or send feedback, or set another self_edit_format "
    '(e.g. "passage", the document alone)'
)


def _set_aside(runtime: Runtime, snap: Snapshot, works: list[DocumentWork]) -> None:
    """Documents without a single probe question wait for questions instead of being
    trained on and judged on nothing."""
    with session_scope(runtime.sessions) as session:
        document_repo.set_document_status(
            session,
            document_ids=[w.id for w in works],
            status=DocumentStatus.needs_questions,
            error=NEEDS_QUESTIONS,
        )


def _finish_unjudged(run: JobRun, works: list[DocumentWork]) -> None:
    run.succeed(
        f"{len(works)} document(s) need probe questions: {NEEDS_QUESTIONS}",
        {
            "documents": 0,
            "adapter_version": None,
            "promoted": False,
            "rejected_because": None,
            "needs_questions": [w.id for w in works],
        },
    )


def _record_candidates(
    runtime: Runtime,
    job_id: str,
    snap: Snapshot,
    work: DocumentWork,
    candidates: list[Candidate],
    best: Candidate,
    config: InnerLoopConfig,
) -> None:
    """Every self-edit with its reward and its gain over the passage alone (whose accuracy is
    that reward's baseline); the passage-alone candidate is no self-edit and is not stored."""
    baseline = work.baseline.accuracy if work.baseline else 0.0
    plain = next((c.accuracy for c in candidates if c.passage_alone), None)
    with session_scope(runtime.sessions) as session:
        for candidate in candidates:
            if candidate.passage_alone:
                continue
            rewards = [(CANDIDATE_METRIC, candidate.reward, baseline)]
            if plain is not None and candidate.over_passage is not None:
                rewards.append((PASSAGE_GAIN_METRIC, candidate.over_passage, plain))
            _store_rewarded_self_edit(
                session,
                snap,
                work.id,
                config.format,
                candidate.text,
                job_id,
                selected=candidate is best,
                rewards=rewards,
            )


def _store_rewarded_self_edit(
    session: Session,
    snap: Snapshot,
    document_id: str,
    fmt: str,
    text: str,
    job_id: str,
    *,
    selected: bool,
    rewards: list[tuple[str, float, float]],
    adapter_version_id: str | None = None,
) -> None:
    """A self-edit with the teacher version that wrote it, and the rewards it earned
    (metric, value, baseline)."""
    row = learning_repo.add_self_edit(
        session,
        tenant_id=snap.tenant_id,
        document_id=document_id,
        format=fmt,
        text=text,
        job_id=job_id,
        selected=selected,
        teacher_version_id=snap.teacher_version_id,
    )
    for metric, value, baseline in rewards:
        learning_repo.add_reward(
            session,
            tenant_id=snap.tenant_id,
            metric=metric,
            value=value,
            baseline=baseline,
            self_edit_id=row.id,
            document_id=document_id,
            adapter_version_id=adapter_version_id,
        )


def _commit_version(
    run: JobRun,
    snap: Snapshot,
    target: Path,
    digest: str,
    metrics: dict,
    gate: Gate,
    config: InnerLoopConfig,
) -> None:
    run.finish_with(
        "recording the version",
        lambda session: _record_version(
            session, run.id, snap, target, digest, metrics, gate, config
        ),
    )


def _record_version(
    session: Session,
    job_id: str,
    snap: Snapshot,
    target: Path,
    digest: str,
    metrics: dict,
    gate: Gate,
    config: InnerLoopConfig,
) -> None:
    """The version, its rewards, its promotion or rejection, its documents' status and the
    job's result, in the job's final transaction (its row already held)."""
    doc_ids = [w.id for w in snap.documents]
    active = adapter_repo.active_adapter(session, tenant_id=snap.tenant_id)
    if (active.id if active else None) != snap.parent_id:
        # An admin rolled back meanwhile: never silently undo that.
        reason: str | None = "the active version changed while the update ran"
    else:
        reason = gate.refusal()
    version = adapter_repo.create_adapter_version(
        session,
        tenant_id=snap.tenant_id,
        parent_id=snap.parent_id,
        artifact_uri=str(target),
        checksum=digest,
        metrics={**metrics, "rejected_because": reason},
        job_id=job_id,
    )
    learning_repo.add_reward(
        session,
        tenant_id=snap.tenant_id,
        metric=VERSION_METRIC,
        value=gate.after.accuracy - gate.before.accuracy,
        baseline=gate.before.accuracy,
        adapter_version_id=version.id,
    )
    if snap.mode != UpdateMode.select:  # batch: each self-edit earns its document's gain
        for work in snap.documents:
            base = work.baseline.accuracy if work.baseline else 0.0
            gain = (work.after.accuracy if work.after else 0.0) - base
            for candidate in work.kept:
                _store_rewarded_self_edit(
                    session,
                    snap,
                    work.id,
                    config.format,
                    candidate.text,
                    job_id,
                    selected=True,
                    rewards=[(BATCH_METRIC, gain, base)],
                    adapter_version_id=version.id,
                )
    if reason is None:
        adapter_repo.promote_version(session, tenant_id=snap.tenant_id, version=version)
        document_repo.set_document_status(
            session,
            document_ids=doc_ids,
            status=DocumentStatus.learned,
            learned_version_id=version.id,
        )
    else:
        adapter_repo.set_version_status(session, version=version, status=VersionStatus.rejected)
        document_repo.set_document_status(
            session,
            document_ids=doc_ids,
            status=DocumentStatus.pending,
            error=f"version {version.number} was not promoted ({reason}); {RETRY}",
        )
    job_repo.finish_job(
        session,
        job_id=job_id,
        status=JobStatus.succeeded,
        message=f"version {version.number} promoted"
        if reason is None
        else f"version {version.number} rejected: it {reason}",
        result={
            "adapter_version": version.number,
            "promoted": reason is None,
            "rejected_because": reason,
            "advice": None if reason is None else RETRY,
            "documents": len(doc_ids),
            "needs_questions": snap.needs_questions,
            "metrics": metrics,
        },
    )
