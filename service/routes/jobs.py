"""Updates on demand and the jobs that run them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from service.deps import CurrentTenant, SessionDep
from service.enqueue import UPDATE_TASK, enqueue_after_commit
from service.errors import Conflict, NotFound
from service.schemas import JobPublic, Page, UpdateAccepted, UpdateCreate
from service.store.models import FINISHED_JOB_STATUSES, Job
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.post("/updates", response_model=UpdateAccepted, status_code=status.HTTP_202_ACCEPTED)
def request_update(
    session: SessionDep, tenant: CurrentTenant, body: UpdateCreate | None = None
) -> UpdateAccepted:
    """Start an update of the tenant's adapter on its pending documents now. An update
    already queued or running is returned instead of a second one."""
    params = (body or UpdateCreate()).model_dump(exclude_none=True)
    job = job_repo.get_open_update_job(session, tenant_id=tenant.id)
    if job is None:
        if document_repo.count_pending_documents(session, tenant_id=tenant.id) == 0:
            raise Conflict("there are no pending documents to learn; add documents first")
        job, created = job_repo.create_update_job(session, tenant_id=tenant.id, params=params)
        if created:
            enqueue_after_commit(session, UPDATE_TASK, job_id=job.id)
    return UpdateAccepted(job_id=job.id, status=job.status)


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
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[JobPublic]:
    """The tenant's jobs, newest first."""
    jobs, total = job_repo.list_jobs(session, tenant_id=tenant.id, limit=limit, offset=offset)
    return Page(
        items=[JobPublic.model_validate(j) for j in jobs], total=total, limit=limit, offset=offset
    )


@router.get("/jobs/{job_id}", response_model=JobPublic)
def get_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> JobPublic:
    return JobPublic.model_validate(_job_or_404(session, tenant.id, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> JobPublic:
    """Cancel a queued or running job; a running one stops at its next check."""
    job = _job_or_404(session, tenant.id, job_id)
    if job.status in FINISHED_JOB_STATUSES:
        raise Conflict(f"job {job_id} is already {job.status}")
    return JobPublic.model_validate(job_repo.cancel_job(session, job=job))
