"""What an update writes to the store: every scored self-edit with its rewards (as it comes),
and in the job's final transaction the version, its promotion or rejection, its documents'
status and the job's result."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from seal.knowledge import Candidate, InnerLoopConfig
from service.artifacts import artifacts
from service.domain.adapters import purge_unused_weights
from service.store.db import session_scope
from service.store.models import (
    AdapterVersion,
    DocumentStatus,
    JobStatus,
    UpdateMode,
    VersionStatus,
)
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import learning as learning_repo
from worker.jobs.lifecycle import JobRun
from worker.jobs.update.gate import Gate
from worker.jobs.update.state import (
    BATCH_METRIC,
    CANDIDATE_METRIC,
    PASSAGE_GAIN_METRIC,
    VERSION_METRIC,
    DocumentWork,
    Snapshot,
)
from worker.runtime import Runtime

#: What a user can do for a document whose version was rejected.
RETRY = (
    "it stays pending and the next update tries again with new self-edits; to help it, add "
    "questions about it with their answers or send feedback, or set another self_edit_format "
    '(e.g. "passage", the document alone)'
)


def record_candidates(
    runtime: Runtime,
    job_id: str,
    snap: Snapshot,
    work: DocumentWork,
    candidates: list[Candidate],
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
                selected=candidate is work.winner,
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


def commit_version(
    run: JobRun,
    snap: Snapshot,
    target: Path,
    digest: str,
    metrics: dict,
    gate: Gate,
    config: InnerLoopConfig,
) -> None:
    """Record the saved version in the job's final transaction; its folder is removed if
    that fails (a version folder exists only if recorded). In the same transaction the
    retention deletes the weights of the tenant's versions past ``keep_rejected_weights`` and
    ``keep_retired_weights``; their folders go once it is committed."""
    purged: list[str] = []
    store = artifacts(run.runtime.settings)

    with store.publishing(target, digest) as uri:

        def record(session: Session) -> None:
            _record_version(session, run.id, snap, uri, digest, metrics, gate, config)
            purged[:] = purge_unused_weights(session, run.runtime.settings, snap.tenant_id)

        run.finish_with("recording the version", record)
    for folder in purged:
        store.discard(folder)


def _record_version(
    session: Session,
    job_id: str,
    snap: Snapshot,
    uri: str,
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
        artifact_uri=uri,
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
    if snap.mode != UpdateMode.select:
        _store_batch_rewards(session, job_id, snap, version.id, config)
    _promote_or_reject(session, snap, version, doc_ids, reason)
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
            "left_to_memory": snap.left_to_memory,
            "metrics": metrics,
        },
    )


def _store_batch_rewards(
    session: Session, job_id: str, snap: Snapshot, version_id: str, config: InnerLoopConfig
) -> None:
    """Outside ``select`` mode (a batch) the kept self-edits all train the one version, so
    none has a reward of its own: each earns its document's gain (its accuracy after the
    version, less its baseline)."""
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
                adapter_version_id=version_id,
            )


def _promote_or_reject(
    session: Session,
    snap: Snapshot,
    version: AdapterVersion,
    doc_ids: list[str],
    reason: str | None,
) -> None:
    """The version becomes active and its documents learned; or, refused for ``reason``, it
    is rejected and its documents stay pending with what the user can do about it."""
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
