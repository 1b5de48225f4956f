"""The rebuild (after documents were deleted, so that their knowledge leaves the weights): a
version trained again from the base model, not from the active one, on every learned document
and its kept self-edits; no sampling, no inner loop, pending documents untouched. It is
promoted unless the active version changed while it ran (an admin's rollback is never silently
undone), and it is recorded only if every document it trained on still exists when it commits:
a document deleted meanwhile starts it again without that document."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from seal.grading import Probe
from seal.knowledge import train_on
from seal.lora import STUDENT, AdapterState, save_adapter
from seal.multi import evaluate_many
from seal.selfedit import ChatTurn
from service.artifacts import artifacts
from service.store.db import in_transaction
from service.store.models import JobStatus, UpdateMode, VersionStatus
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from worker.config import inner_loop_config, student_spec
from worker.jobs.common import (
    Progress,
    job_seed,
    learned_sequences,
    retention_probes,
    version_folder,
    weights,
)
from worker.jobs.lifecycle import JobRun

#: How often a rebuild starts again when documents it trained on were deleted meanwhile.
REBUILD_ATTEMPTS = 3

log = logging.getLogger(__name__)


class DocumentsDeleted(Exception):
    """Documents a rebuild trained on were deleted before it could record its version."""


@dataclass
class RebuildSnapshot:
    """What a rebuild read from the store (plain data, no ORM objects)."""

    tenant_id: str
    seed: int
    active_id: str | None
    active_state: AdapterState | None
    document_ids: list[str]
    """The learned documents it trains on."""
    sequences: list[str | ChatTurn]
    retention: list[Probe]


def run_rebuild(run: JobRun) -> None:
    """Run a rebuild to its end (its success recorded; a failure raised for the lifecycle to
    record). Documents are only read, so a cancelled or failed rebuild has nothing to put
    back."""
    # units per pass: 8 for training, 1 for the evaluation, 1 for saving
    progress = Progress(run, total=10)
    for attempt in range(1, REBUILD_ATTEMPTS + 1):
        snap = in_transaction(run.runtime.sessions, lambda s: _rebuild_snapshot(s, run))
        progress.restart()
        try:
            _rebuild(run, snap, attempt, progress)
            return
        except DocumentsDeleted as exc:
            log.info("rebuild job %s: %s; starting again without them", run.id, exc)
    raise DocumentsDeleted(
        f"documents were deleted during each of {REBUILD_ATTEMPTS} passes; "
        "request the rebuild again once deletions are done"
    )


def _rebuild_snapshot(session: Session, run: JobRun) -> RebuildSnapshot:
    settings = run.runtime.settings
    tenant_id = run.job.tenant_id
    active = adapter_repo.active_adapter(session, tenant_id=tenant_id)
    state = weights(settings, active)
    learned = learned_sequences(session, tenant_id, qa_form=settings.qa_form)
    retention = retention_probes(session, settings, tenant_id)
    return RebuildSnapshot(
        tenant_id=tenant_id,
        seed=job_seed(settings, run.id, run.job.params),
        active_id=active.id if active else None,
        active_state=state,
        document_ids=list(learned),
        sequences=[seq for seqs in learned.values() for seq in seqs],
        retention=retention,
    )


def _rebuild(run: JobRun, snap: RebuildSnapshot, attempt: int, progress: Progress) -> None:
    runtime, job_id = run.runtime, run.id
    config = inner_loop_config(runtime.settings)
    host = runtime.student
    again = f" (pass {attempt}: documents were deleted meanwhile)" if attempt > 1 else ""
    progress.step(
        f"rebuilding from the base model on {len(snap.document_ids)} learned document(s), "
        f"{len(snap.sequences)} sequences{again}",
        0,
    )
    trained = None
    if snap.sequences:
        seen = [0]

        def training(done: int, total: int) -> None:
            if done == total or done - seen[0] >= max(1, total // 20):
                units, seen[0] = 8 * (done - seen[0]) / total, done
                progress.step(
                    f"training the rebuilt version, step {done}/{total}", units, tick=True
                )

        trained = train_on(
            host, snap.sequences, replace(config.train, seed=snap.seed), init=None,
            on_step=training,
        )  # fmt: skip
    before, after = evaluate_many(
        host,
        [snap.active_state, trained.state if trained else None],
        snap.retention,
        config.answer_max_tokens,
        slot=STUDENT,
    )
    progress.step("evaluated the rebuilt version")
    metrics = {
        "mode": UpdateMode.rebuild,
        "seed": snap.seed,
        "documents": len(snap.document_ids),
        "attempts": attempt,
        "retention_questions": len(snap.retention),
        "retention_accuracy_before": before.accuracy,
        "retention_accuracy": after.accuracy,
        "train_sequences": len(snap.sequences),
        "train_loss": trained.losses[-1] if trained and trained.losses else None,
        "train_tokens": trained.tokens if trained else 0,
        "train_seconds": round(trained.seconds, 3) if trained else 0.0,
    }
    if trained is None:  # nothing learned is left: the base model serves the tenant
        _commit_rebuild(run, snap, None, metrics)
        return
    target = version_folder(runtime.settings, snap.tenant_id, job_id)
    digest = save_adapter(
        trained.state,
        student_spec(runtime.settings),
        target,
        base_model=runtime.settings.student_model,
        extra={"tenant_id": snap.tenant_id, "job_id": job_id, "mode": UpdateMode.rebuild},
    )
    with artifacts(runtime.settings).publishing(target, digest) as uri:
        _commit_rebuild(run, snap, (uri, digest), metrics)


def _commit_rebuild(
    run: JobRun, snap: RebuildSnapshot, saved: tuple[str, str] | None, metrics: dict
) -> None:
    # The job's row held first (SQLite's write lock), then the documents' row locks
    # (PostgreSQL's): no document is deleted between the check and the commit (a delete that
    # came first is seen; one that comes later waits for it).
    run.finish_with(
        "recording the rebuilt version",
        lambda session: _record_rebuild(session, run.id, snap, saved, metrics),
    )


def _record_rebuild(
    session: Session,
    job_id: str,
    snap: RebuildSnapshot,
    saved: tuple[str, str] | None,
    metrics: dict,
) -> None:
    gone = set(snap.document_ids) - document_repo.lock_documents(
        session, document_ids=snap.document_ids
    )
    if gone:
        raise DocumentsDeleted(f"{len(gone)} of its documents were deleted while it ran")
    active = adapter_repo.active_adapter(session, tenant_id=snap.tenant_id)
    reason = None
    if (active.id if active else None) != snap.active_id:
        reason = "the active version changed while the rebuild ran"
    version = None
    if saved is not None:
        uri, digest = saved
        version = adapter_repo.create_adapter_version(
            session,
            tenant_id=snap.tenant_id,
            parent_id=None,
            artifact_uri=uri,
            checksum=digest,
            metrics={**metrics, "rejected_because": reason},
            job_id=job_id,
        )
    if reason is None:
        adapter_repo.promote_version(session, tenant_id=snap.tenant_id, version=version)
    elif version is not None:
        adapter_repo.set_version_status(session, version=version, status=VersionStatus.rejected)
    number = version.number if version else None
    if reason is not None:
        message = f"rebuilt version {number} rejected" if version else "rebuild not applied"
    elif version is None:
        message = "no learned documents are left: the base model serves the tenant"
    else:
        message = f"rebuilt version {number} promoted"
    job_repo.finish_job(
        session,
        job_id=job_id,
        status=JobStatus.succeeded,
        message=message,
        result={
            "adapter_version": number,
            "promoted": reason is None,
            "rejected_because": reason,
            "documents": len(snap.document_ids),
            "metrics": metrics,
        },
    )
