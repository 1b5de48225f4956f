"""Saving a teacher adapter as a new teacher version: what the document rounds
(:mod:`worker.jobs.teacher`) and the skills rounds (:mod:`worker.jobs.skill_teacher`) share."""

from __future__ import annotations

from sqlalchemy.orm import Session

from seal.lora import AdapterState, save_adapter
from service.artifacts import artifacts
from service.store.db import in_transaction
from service.store.models import JobStatus, TeacherDomain, TeacherVersion
from service.store.repositories import jobs as job_repo
from service.store.repositories import teachers as teacher_repo
from worker.config import teacher_spec
from worker.jobs.lifecycle import JobRun, artifact_folder
from worker.runtime import Runtime


def save_teacher(
    runtime: Runtime,
    state: AdapterState,
    *,
    tenant_id: str | None,
    parent_id: str | None,
    metrics: dict,
    promote: bool,
    run: JobRun | None = None,
    domain: TeacherDomain = TeacherDomain.documents,
    result: dict | None = None,
) -> TeacherVersion:
    """Write the teacher adapter atomically and record it in ``domain``'s lineage (promoted
    or as a candidate); for a job's ``run``, in the job's final transaction, with its success
    and ``result`` (default: the examples and the version's number)."""
    settings = runtime.settings
    owner = tenant_id or "shared"
    target = artifact_folder(
        settings.resolved_adapter_dir / "teachers" / owner, run.id if run else None
    )
    digest = save_adapter(
        state,
        teacher_spec(settings),
        target,
        base_model=settings.teacher_model,
        extra={"tenant_id": tenant_id, "kind": "teacher"},
    )

    def record(session: Session) -> TeacherVersion:
        version = teacher_repo.create_teacher_version(
            session,
            tenant_id=tenant_id,
            parent_id=parent_id,
            artifact_uri=uri,
            checksum=digest,
            metrics=metrics,
            domain=domain,
        )
        if promote:
            teacher_repo.promote_teacher_version(session, version=version)
        if run is not None:
            outcome = "promoted" if promote else "recorded as a candidate"
            job_repo.finish_job(
                session,
                job_id=run.id,
                status=JobStatus.succeeded,
                message=f"teacher version {version.number} {outcome} for this tenant",
                result={
                    "examples": metrics.get("examples"),
                    "teacher_version": version.number,
                    **(result or {}),
                },
            )
        return version

    with artifacts(settings).publishing(target, digest) as uri:
        if run is not None:
            return run.finish_with("recording the teacher version", record)
        return in_transaction(runtime.sessions, record)
