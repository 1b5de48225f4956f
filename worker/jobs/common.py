"""What the update and the rebuild share: the teacher and adapter weights a job loads, its
seed, the tenant's learned sequences and retention probes, progress in units, and where a new
version's folder goes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from seal.grading import Probe
from seal.knowledge import Teacher
from seal.lora import AdapterState, load_adapter
from seal.selfedit import QA, ChatTurn, Passage, training_sequences
from service.artifacts import artifacts
from service.settings import Settings
from service.store.models import DocumentStatus, TeacherVersion, VersionMixin
from service.store.repositories import documents as document_repo
from service.store.repositories import learning as learning_repo
from worker.jobs.lifecycle import JobRun, artifact_folder


def load_teacher(settings: Settings, version: TeacherVersion | None) -> Teacher:
    """The teacher a version names (its checksum checked); the base model for None."""
    return Teacher(state=weights(settings, version))


def job_seed(settings: Settings, job_id: str, params: dict) -> int:
    """The request's seed; without one, repeatable per job and different between jobs (a
    retry samples afresh)."""
    if params.get("seed") is not None:
        return int(params["seed"])
    return (settings.seed + int(job_id.replace("-", "")[:8], 16)) % 2**31


def weights(settings: Settings, version: VersionMixin | None) -> AdapterState | None:
    """The weights of a version of any history (adapter, skill, teacher), wherever the
    artifact store keeps them, their checksum checked; None for none (the base model)."""
    if version is None or not version.artifact_uri:
        return None
    folder = artifacts(settings).local(version.artifact_uri, version.checksum)
    return load_adapter(folder, expected_checksum=version.checksum)


def retention_probes(session: Session, settings: Settings, tenant_id: str) -> list[Probe]:
    """The retention set: probe questions of documents learned earlier (and feedback)."""
    return [
        Probe(title, QA(p.question, p.answer))
        for title, p in document_repo.retention_probes(
            session, tenant_id=tenant_id, limit=settings.retention_max_questions
        )
    ]


def learned_sequences(
    session: Session, tenant_id: str, *, qa_form: str = "text"
) -> dict[str, list[str | ChatTurn]]:
    """Each learned document's training sequences (oldest first): its kept self-edits' items
    (question-answer items in ``qa_form``) and the document itself; a document the passage
    alone taught has the document only."""
    learned = document_repo.list_documents_by_status(
        session, tenant_id=tenant_id, statuses=[DocumentStatus.learned]
    )
    edits: dict[str, list[tuple[str, str]]] = {d.id: [] for d in learned}
    for edit, doc in learning_repo.kept_self_edits_of_learned_documents(
        session, tenant_id=tenant_id
    ):
        edits[doc.id].append((edit.format, edit.text))
    return {
        d.id: training_sequences(Passage(d.title, d.text), edits[d.id], qa_form=qa_form)
        for d in learned
    }


class Progress:
    """Reports a job's progress in units of work done out of ``total`` (the lifecycle records
    it and checks for cancellation). The progress shown never goes back: after ``restart()``
    (a rebuild's new attempt) it holds until the new count passes it."""

    def __init__(self, run: JobRun, total: float):
        self.run, self.total, self.done, self.shown = run, max(total, 1), 0.0, 0.0

    def restart(self) -> None:
        self.done = 0.0

    def step(
        self, message: str, units: float = 1, *, data: dict | None = None, tick: bool = False
    ) -> None:
        """``units`` more done; the stage goes into the job's story (``GET
        /v1/jobs/{id}/events``) with its ``data``, unless it is a ``tick`` of a long stage
        (a training step)."""
        self.done += units
        self.shown = max(self.shown, 0.95 * self.done / self.total)
        self.run.progress(self.shown, message, event=not tick, data=data)


def version_folder(settings: Settings, tenant_id: str, job_id: str) -> Path:
    """The folder a job's new adapter version is saved in."""
    return artifact_folder(settings.resolved_adapter_dir / tenant_id, job_id)
