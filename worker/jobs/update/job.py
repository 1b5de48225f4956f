"""The update job's stages in order: read, sample, score, train the version, judge it, record.

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

import random
from dataclasses import replace

from sqlalchemy.orm import Session

from seal.knowledge import Candidate, InnerLoopConfig, train_on
from seal.lora import save_adapter
from seal.selfedit import PASSAGE, ChatTurn, parse_items, training_sequences
from seal.train import TrainResult
from service.store.db import in_transaction
from service.store.models import DocumentStatus, UpdateMode
from service.store.repositories import documents as document_repo
from worker.config import inner_loop_config, student_spec
from worker.jobs.common import Progress, version_folder
from worker.jobs.lifecycle import JobRun, run_job
from worker.jobs.rebuild import run_rebuild
from worker.jobs.update.gate import Gate, evaluate, evaluate_each, judged, merge
from worker.jobs.update.records import commit_version, record_candidates
from worker.jobs.update.sampling import (
    finish_unjudged,
    grounded_self_edits,
    judgeable,
    sample_self_edits,
)
from worker.jobs.update.scoring import score_document
from worker.jobs.update.state import Snapshot, replay_sample, take_snapshot
from worker.runtime import Runtime


def run_update(runtime: Runtime, job_id: str) -> bool:
    """Run one update job (any mode, a rebuild included) to its end through the job
    lifecycle; every outcome is recorded on the job (False: it was not queued)."""
    claimed: list[Snapshot] = []

    def body(run: JobRun) -> None:
        if run.job.params.get("mode") == UpdateMode.rebuild:
            run_rebuild(run)
            return
        snapshot = in_transaction(runtime.sessions, lambda s: take_snapshot(s, runtime, run.job))
        claimed.append(snapshot)
        if not snapshot.documents:
            run.succeed(
                "no pending documents",
                {
                    "documents": 0,
                    "adapter_version": None,
                    "promoted": False,
                    "left_to_memory": snapshot.left_to_memory,
                },
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

    return run_job(runtime, job_id, body, message="reading pending documents", undo=undo)


def _learn(run: JobRun, snap: Snapshot) -> None:
    settings = run.runtime.settings
    config = inner_loop_config(settings, snap.fmt)
    rng = random.Random(snap.seed)
    config = replace(config, sample=replace(config.sample, seed=rng.randrange(2**31)))
    host, teacher_host = run.runtime.student, run.runtime.teacher
    select = snap.mode == UpdateMode.select
    # format ``passage``: the documents alone, no self-edits (the tenant's own baseline)
    k = 0 if snap.fmt == PASSAGE else config.num_candidates if select else settings.batch_self_edits
    # units: per document 1 for its self-edits (+ k + 1 for training its candidates, the
    # passage alone among them, and 1 for the kept one in select mode), then the version's
    # training, evaluation and saving
    progress = Progress(run, total=len(snap.documents) * ((k + 3) if select else 1) + 3)
    replay = replay_sample(snap.replay_pool, settings, rng)
    progress.step(f"{snap.mode} update of {len(snap.documents)} document(s), format {snap.fmt}", 0)
    drafts = sample_self_edits(teacher_host, host, snap, config, k, progress)
    docs = judgeable(run, snap, teacher_host)
    if not docs:
        finish_unjudged(run, snap)
        return
    texts_of, dropped = grounded_self_edits(settings, snap, drafts, config.format)
    # every document's baseline graded in the same batches
    for work, baseline in zip(
        docs, evaluate_each(host, snap.parent_state, docs, config), strict=True
    ):
        work.baseline = baseline
    for index, work in enumerate(docs, 1):
        texts = texts_of[work.id]
        if not select:
            work.kept = [Candidate(text=t, items=parse_items(t, config.format)) for t in texts]
            continue
        label = f"document {index}/{len(docs)}"
        candidates = score_document(
            host,
            snap,
            work,
            texts,
            config,
            replay,
            progress,
            label,
            position=index - 1,
            margin=settings.selection_margin,
            held_out=settings.held_out_gate,
            anchored=settings.anchored_training,
        )
        record_candidates(run.runtime, run.id, snap, work, candidates, config)
        assert work.winner is not None
        kept = "the passage alone" if work.winner.passage_alone else "a self-edit"
        progress.step(f"{label}: kept {kept}, reward {work.winner.reward:+.3f}")

    trained, own = _train_version(run, snap, config, replay)
    progress.step(
        f"trained the new version on {own} sequences + {len(replay)} replayed",
        data={"train_losses": trained.losses, "tokens": trained.tokens, "seconds": trained.seconds},
    )
    _judge_and_commit(run, snap, config, trained, own, replay, progress, dropped)


def _train_version(
    run: JobRun, snap: Snapshot, config: InnerLoopConfig, replay: list[str | ChatTurn]
) -> tuple[TrainResult, int]:
    """The new version, trained from the active one on every document's kept self-edits, the
    documents and the replay sample; each document's ``after`` graded on it. Returns it and
    the number of the documents' own sequences."""
    host, docs = run.runtime.student, snap.documents
    own = [
        seq
        for w in docs
        for seq in training_sequences(
            w.passage,
            [s for c in w.kept for s in c.self_edits(config.format)],
            qa_form=config.qa_form,
        )
    ]
    single = snap.mode == UpdateMode.select and len(docs) == 1
    winner = docs[0].winner if single else None
    if winner is not None and winner.trained is not None:
        # same data, same start, same seed: the chosen candidate's adapter is the version
        return winner.trained, len(own)
    init = snap.parent_state
    if run.runtime.settings.anchored_training and any(w.kept for w in docs):
        # the documents alone first; their self-edits then continue from them
        passages = [seq for w in docs for seq in training_sequences(w.passage, [])]
        init = train_on(host, passages + replay, config.train, init=init).state
    trained = train_on(host, own + replay, config.train, init=init)
    for work, after in zip(docs, evaluate_each(host, trained.state, docs, config), strict=True):
        work.after = after
    return trained, len(own)


def _judge_and_commit(
    run: JobRun,
    snap: Snapshot,
    config: InnerLoopConfig,
    trained: TrainResult,
    own: int,
    replay: list[str | ChatTurn],
    progress: Progress,
    dropped: dict[str, int],
) -> None:
    """Grade the version against the active one, on the probes that did not choose its
    candidates, save it and record it through the gate."""
    settings, host, docs = run.runtime.settings, run.runtime.student, snap.documents
    before = merge([judged(w.baseline, w) for w in docs])
    after = merge([judged(w.after, w) for w in docs])
    retention_before = evaluate(host, snap.parent_state, snap.retention, config)
    retention_after = evaluate(host, trained.state, snap.retention, config)
    progress.step("evaluated the new version")

    target = version_folder(settings, snap.tenant_id, run.id)
    digest = save_adapter(
        trained.state,
        student_spec(settings),
        target,
        base_model=settings.student_model,
        extra={"tenant_id": snap.tenant_id, "job_id": run.id},
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
        "train_sequences": own + len(replay),
        "self_edit_items_dropped": dropped,
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
    refusal = gate.refusal()
    verdict = "the gate promotes it" if refusal is None else f"the gate refuses it: it {refusal}"
    figures = {k: metrics[k] for k in ("probe_accuracy_before", "probe_accuracy")}
    figures |= {k: metrics[k] for k in ("retention_accuracy_before", "retention_accuracy")}
    progress.step(verdict, 0, data={"promoted": refusal is None, "reason": refusal, **figures})
    commit_version(run, snap, target, digest, metrics, gate, config)
