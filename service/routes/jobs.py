"""Updates on demand and the jobs that run them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy.orm import Session

from service.deps import CurrentTenant, SessionDep
from service.enqueue import UPDATE_TASK, enqueue_after_commit
from service.errors import COMMON_ERRORS, Conflict, NotFound, error_responses
from service.schemas import MAX_NUMBER, JobPublic, Page, UpdateAccepted, UpdateCreate
from service.store.models import FINISHED_JOB_STATUSES, DocumentStatus, Job, UpdateMode
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo

router = APIRouter(prefix="/v1", tags=["jobs"], responses=error_responses(*COMMON_ERRORS))


@router.post(
    "/updates",
    response_model=UpdateAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409),
)
def request_update(
    session: SessionDep, tenant: CurrentTenant, body: UpdateCreate | None = None
) -> UpdateAccepted:
    """Start an update of the tenant's adapter on its pending documents now (mode
    ``rebuild``: again from the base model on its learned documents). An update already
    queued or running is returned instead of a second one (for a rebuild, only a rebuild)."""
    params = (body or UpdateCreate()).model_dump(mode="json", exclude_none=True)
    if params["mode"] == UpdateMode.rebuild:
        learned = document_repo.count_documents(
            session, tenant_id=tenant.id, status=DocumentStatus.learned
        )
        if not learned and adapter_repo.active_adapter(session, tenant_id=tenant.id) is None:
            raise Conflict("nothing to rebuild: the tenant has no learned documents and no adapter")
        rebuild = open_rebuild(session, tenant.id, params)
        return UpdateAccepted(job_id=rebuild.id, status=rebuild.status)
    job = job_repo.get_open_update_job(session, tenant_id=tenant.id)
    if job is None:
        if document_repo.count_documents(session, tenant_id=tenant.id) == 0:
            raise Conflict("there are no pending documents to learn; add documents first")
        job, created = job_repo.create_update_job(session, tenant_id=tenant.id, params=params)
        if created:
            enqueue_after_commit(session, UPDATE_TASK, job_id=job.id)
    return UpdateAccepted(job_id=job.id, status=job.status)


def open_rebuild(session: Session, tenant_id: str, params: dict[str, Any]) -> Job:
    """The tenant's rebuild job: a new one, or the one already queued or running (a running
    one starts again by itself if documents it trains on are deleted). 409 while an update of
    another mode is open: it trains from the active version, which still holds what the
    rebuild is to remove."""
    job, created = job_repo.create_update_job(session, tenant_id=tenant_id, params=params)
    mode = (job.params or {}).get("mode", UpdateMode.select)
    if not created and mode != UpdateMode.rebuild:
        raise Conflict(
            f"update job {job.id} ({mode}) is {job.status}; request the rebuild once it has "
            f"ended (or cancel it: POST /v1/jobs/{job.id}/cancel)"
        )
    if created:
        enqueue_after_commit(session, UPDATE_TASK, job_id=job.id)
    return job


def _job_or_404(session: SessionDep, tenant_id: str, job_id: str) -> Job:
    job = job_repo.get_job(session, job_id=job_id, tenant_id=tenant_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


@router.get("/jobs", response_model=Page[JobPublic])
def list_jobs(
    session: SessionDep,
    tenant: CurrentTenant,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_NUMBER)] = 0,
) -> Page[JobPublic]:
    """The tenant's jobs, newest first."""
    jobs, total = job_repo.list_jobs(session, tenant_id=tenant.id, limit=limit, offset=offset)
    return Page(
        items=[JobPublic.model_validate(j) for j in jobs], total=total, limit=limit, offset=offset
    )


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=error_responses(404))
def get_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> JobPublic:
    return JobPublic.model_validate(_job_or_404(session, tenant.id, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic, responses=error_responses(404, 409))
def cancel_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> JobPublic:
    """Cancel a queued or running job; a running one stops at its next check."""
    job = _job_or_404(session, tenant.id, job_id)
    if job.status in FINISHED_JOB_STATUSES:
        raise Conflict(f"job {job_id} is already {job.status}")
    try:
        return JobPublic.model_validate(job_repo.cancel_job(session, job=job))
    except ValueError as exc:  # its worker finished it meanwhile
        raise Conflict(str(exc)) from None
