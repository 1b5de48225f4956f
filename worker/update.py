"""The update job: a tenant's pending documents in, one new adapter version out.

For each document the teacher samples k self-edits; each is scored by the inner loop (a LoRA
update from the active adapter, rewarded by the probe accuracy it gained); the best is kept.
One new version is then trained on the kept self-edits and the documents, saved atomically,
and promoted only when it answers the probe questions better than the active version.

Progress and each document's self-edits are committed as they come (short transactions, so
the API shows them); the version, its promotion and the job's result in one final transaction.
A cancelled or failed job leaves the active version and the pending documents as they were.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy.orm import Session

from seal.grading import Evaluation, Probe, evaluate
from seal.knowledge import (
    STUDENT,
    Candidate,
    InnerLoopConfig,
    Teacher,
    best_candidate,
    score_candidates,
    train_on,
    write_probe_questions,
    write_self_edits,
)
from seal.lora import AdapterHost, AdapterState, load_adapter, save_adapter
from seal.selfedit import QA, Passage, training_sequences
from service.store.db import session_scope
from service.store.models import DocumentStatus, JobStatus, ProbeSource, VersionStatus
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import learning as learning_repo
from service.store.repositories import tenants as tenant_repo
from worker.runtime import Runtime, inner_loop_config, student_spec

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """The job was cancelled while it ran."""


@dataclass
class DocumentWork:
    id: str
    passage: Passage
    baseline: Evaluation | None = None
    best: Candidate | None = None
    self_edit_ids: list[str] = field(default_factory=list)


@dataclass
class Snapshot:
    """What the job read from the store when it started (plain data, no ORM objects)."""

    tenant_id: str
    fmt: str
    parent_id: str | None
    parent_number: int | None
    parent_state: AdapterState | None
    documents: list[DocumentWork]


def run_update(runtime: Runtime, job_id: str) -> None:
    """Run one update job to its end; every outcome is recorded on the job."""
    sessions = runtime.sessions
    with session_scope(sessions) as session:
        job = job_repo.start_job(session, job_id=job_id, message="reading pending documents")
        if job is None:
            log.info("job %s is not queued any more; nothing to do", job_id)
            return
        tenant_id = job.tenant_id
    snapshot: Snapshot | None = None
    try:
        with session_scope(sessions) as session:
            snapshot = _snapshot(session, runtime, tenant_id)
        if not snapshot.documents:
            with session_scope(sessions) as session:
                job_repo.finish_job(
                    session,
                    job_id=job_id,
                    status=JobStatus.succeeded,
                    result={"documents": 0, "adapter_version": None, "promoted": False},
                    message="no pending documents",
                )
            return
        _learn(runtime, job_id, snapshot)
    except JobCancelled:
        log.info("update job %s was cancelled", job_id)
        _restore(runtime, job_id, snapshot, status=None, error=None)
    except Exception as exc:
        log.exception("update job %s failed", job_id)
        error = f"{type(exc).__name__}: {exc}"
        _restore(runtime, job_id, snapshot, status=JobStatus.failed, error=error)
        raise


def _snapshot(session: Session, runtime: Runtime, tenant_id: str) -> Snapshot:
    tenant = tenant_repo.get_tenant(session, tenant_id=tenant_id)
    assert tenant is not None
    active = adapter_repo.active_adapter(session, tenant_id=tenant_id)
    pending = document_repo.list_pending_documents(session, tenant_id=tenant_id)
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
    document_repo.set_document_status(
        session, document_ids=[w.id for w in works], status=DocumentStatus.learning
    )
    state = None
    if active is not None and active.artifact_uri:
        state = load_adapter(Path(active.artifact_uri), expected_checksum=active.checksum)
    return Snapshot(
        tenant_id=tenant_id,
        fmt=tenant.self_edit_format or runtime.settings.self_edit_format,
        parent_id=active.id if active else None,
        parent_number=active.number if active else None,
        parent_state=state,
        documents=works,
    )


class _Progress:
    """Commits the job's progress; raises JobCancelled once the job was cancelled."""

    def __init__(self, runtime: Runtime, job_id: str, total: int):
        self.runtime, self.job_id, self.total, self.done = runtime, job_id, max(total, 1), 0

    def step(self, message: str, units: int = 1) -> None:
        self.done += units
        with session_scope(self.runtime.sessions) as session:
            if job_repo.is_cancelled(session, job_id=self.job_id):
                raise JobCancelled
            job_repo.set_job_progress(
                session, job_id=self.job_id, progress=0.95 * self.done / self.total, message=message
            )


def _learn(runtime: Runtime, job_id: str, snap: Snapshot) -> None:
    settings = runtime.settings
    config = inner_loop_config(settings, snap.fmt)
    # Each job samples afresh (a retried document must not get the same self-edits again),
    # repeatably: the seed derives from the settings' seed and the job's id.
    seed = settings.seed + int(job_id.replace("-", "")[:8], 16)
    config = replace(config, sample=replace(config.sample, seed=seed))
    host, teacher_host = runtime.student, runtime.teacher
    teacher = Teacher()
    k = config.num_candidates
    docs = snap.documents
    progress = _Progress(runtime, job_id, total=len(docs) * (k + 2) + 2)
    progress.step("loading the model", 0)

    for index, work in enumerate(docs, 1):
        label = f"document {index}/{len(docs)}"
        if not work.passage.questions:
            written = write_probe_questions(
                teacher_host,
                work.passage,
                settings.generated_probe_questions,
                teacher,
                seed=settings.seed,
            )
            with session_scope(runtime.sessions) as session:
                for qa in written:
                    document_repo.add_probe_question(
                        session,
                        tenant_id=snap.tenant_id,
                        document_id=work.id,
                        question=qa.question,
                        answer=qa.answer,
                        source=ProbeSource.teacher,
                    )
            work.passage = Passage(work.passage.title, work.passage.text, tuple(written))
        probes = [Probe(work.passage.title, qa) for qa in work.passage.questions]
        work.baseline = evaluate(
            host,
            probes,
            slot=STUDENT if snap.parent_state else None,
            state=snap.parent_state,
            max_new_tokens=config.answer_max_tokens,
        )
        texts = write_self_edits(
            teacher_host, work.passage, config.format, k, config.sample, teacher
        )
        progress.step(f"{label}: the teacher wrote {len(texts)} self-edits")

        def report(i: int, c: Candidate, label: str = label) -> None:
            progress.step(f"{label}: candidate {i + 1}/{k} earned reward {c.reward:+.3f}")

        candidates = score_candidates(
            host,
            work.passage,
            texts,
            config,
            init=snap.parent_state,
            baseline=work.baseline,
            on_candidate=report,
        )
        work.best = best_candidate(candidates)
        _record_candidates(runtime, job_id, snap, work, candidates, config)
        progress.step(f"{label}: kept a self-edit with reward {work.best.reward:+.3f}")

    final_state, train_metrics = _train_version(host, snap, config, progress)
    all_probes = [Probe(w.passage.title, qa) for w in docs for qa in w.passage.questions]
    before = _merge([w.baseline for w in docs if w.baseline])
    if len(docs) == 1 and docs[0].best and docs[0].best.evaluation:
        after = docs[0].best.evaluation
    else:
        after = evaluate(
            host,
            all_probes,
            slot=STUDENT,
            state=final_state,
            max_new_tokens=config.answer_max_tokens,
        )
    progress.step("evaluated the new version")

    target = settings.resolved_adapter_dir / snap.tenant_id / f"{int(time.time())}-{job_id[:8]}"
    digest = save_adapter(
        final_state,
        student_spec(settings),
        target,
        base_model=settings.student_model,
        extra={"tenant_id": snap.tenant_id, "job_id": job_id},
    )
    metrics = {
        "probe_accuracy_before": before.accuracy,
        "probe_accuracy": after.accuracy,
        "probe_questions": len(all_probes),
        "documents": len(docs),
        "format": config.format,
        **train_metrics,
    }
    try:
        _commit_version(runtime, job_id, snap, target, digest, metrics, before, after)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # a version folder exists only if recorded
        raise


def _merge(evaluations: list[Evaluation]) -> Evaluation:
    return Evaluation([g for e in evaluations for g in e.graded])


def _train_version(
    host: AdapterHost, snap: Snapshot, config: InnerLoopConfig, progress: _Progress
) -> tuple[AdapterState, dict]:
    """One adapter on every kept self-edit and document. With one document that is the kept
    candidate's adapter itself (same data, same start, same seed): it is not trained twice."""
    docs = snap.documents
    if len(docs) == 1 and docs[0].best and docs[0].best.trained:
        trained = docs[0].best.trained
    else:
        sequences = [
            seq
            for w in docs
            for seq in training_sequences(w.passage, w.best.items if w.best else [])
        ]
        trained = train_on(host, sequences, config.train, init=snap.parent_state)
    progress.step("trained the new version")
    return trained.state, {
        "train_loss": trained.losses[-1] if trained.losses else None,
        "train_tokens": trained.tokens,
        "train_seconds": round(trained.seconds, 3),
    }


def _record_candidates(
    runtime: Runtime,
    job_id: str,
    snap: Snapshot,
    work: DocumentWork,
    candidates: list[Candidate],
    config: InnerLoopConfig,
) -> None:
    baseline = work.baseline.accuracy if work.baseline else 0.0
    with session_scope(runtime.sessions) as session:
        for candidate in candidates:
            row = learning_repo.add_self_edit(
                session,
                tenant_id=snap.tenant_id,
                document_id=work.id,
                format=config.format,
                text=candidate.text,
                job_id=job_id,
                selected=candidate is work.best,
            )
            work.self_edit_ids.append(row.id)
            learning_repo.add_reward(
                session,
                tenant_id=snap.tenant_id,
                metric="probe_accuracy_gain",
                value=candidate.reward,
                baseline=baseline,
                self_edit_id=row.id,
                document_id=work.id,
            )


def _commit_version(
    runtime: Runtime,
    job_id: str,
    snap: Snapshot,
    target: Path,
    digest: str,
    metrics: dict,
    before: Evaluation,
    after: Evaluation,
) -> None:
    improved = after.accuracy > before.accuracy
    doc_ids = [w.id for w in snap.documents]
    with session_scope(runtime.sessions) as session:
        if job_repo.is_cancelled(session, job_id=job_id):
            raise JobCancelled
        active = adapter_repo.active_adapter(session, tenant_id=snap.tenant_id)
        moved = (active.id if active else None) != snap.parent_id
        reason = None
        if moved:  # an admin rolled back meanwhile: never silently undo that
            reason = "the active version changed while the update ran"
        elif not improved:
            reason = (
                f"did not improve probe accuracy ({before.accuracy:.3f} -> {after.accuracy:.3f})"
            )
        version = adapter_repo.create_adapter_version(
            session,
            tenant_id=snap.tenant_id,
            parent_id=snap.parent_id,
            artifact_uri=str(target),
            checksum=digest,
            metrics=metrics,
            job_id=job_id,
        )
        learning_repo.add_reward(
            session,
            tenant_id=snap.tenant_id,
            metric="version_probe_accuracy_gain",
            value=after.accuracy - before.accuracy,
            baseline=before.accuracy,
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
                error=f"version {version.number} {reason}; the documents stay pending",
            )
            version.metrics = {**version.metrics, "rejected_because": reason}
        job_repo.finish_job(
            session,
            job_id=job_id,
            status=JobStatus.succeeded,
            message=f"version {version.number} {'promoted' if reason is None else 'rejected'}",
            result={
                "adapter_version": version.number,
                "promoted": reason is None,
                "documents": len(doc_ids),
                "metrics": metrics,
            },
        )


def _restore(
    runtime: Runtime,
    job_id: str,
    snap: Snapshot | None,
    *,
    status: JobStatus | None,
    error: str | None,
) -> None:
    """Put the documents back to pending and record how the job ended."""
    with session_scope(runtime.sessions) as session:
        if snap is not None:
            document_repo.set_document_status(
                session,
                document_ids=[w.id for w in snap.documents],
                status=DocumentStatus.pending,
                error=error,
            )
        if status is not None and not job_repo.is_cancelled(session, job_id=job_id):
            job_repo.finish_job(
                session, job_id=job_id, status=status, error=error, message="failed"
            )
