"""The jobs of a tenant (updates, teacher rounds, skills): their progress, and cancelling
them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.deps import CurrentTenant, SessionDep
from service.domain import updates as update_domain
from service.errors import COMMON_ERRORS, WRITE_ERRORS, error_responses
from service.schemas import MAX_NUMBER, JobEventPublic, JobPublic, Page
from service.store.repositories import jobs as job_repo

router = APIRouter(prefix="/v1", tags=["jobs"], responses=error_responses(*COMMON_ERRORS))


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
    return JobPublic.model_validate(update_domain.get_job(session, tenant.id, job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobPublic,
    responses=error_responses(404, 409, *WRITE_ERRORS),
)
def cancel_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> JobPublic:
    """Cancel a queued or running job; a running one stops at its next check."""
    return JobPublic.model_validate(update_domain.cancel_job(session, tenant.id, job_id))


@router.get(
    "/jobs/{job_id}/events", response_model=Page[JobEventPublic], responses=error_responses(404)
)
def job_events(
    job_id: str,
    session: SessionDep,
    tenant: CurrentTenant,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_NUMBER)] = 0,
) -> Page[JobEventPublic]:
    """The job's story, oldest first: each stage with its time, its progress and its figures
    (self-edits written, each candidate's training losses and reward, the gate's decision and
    why, the end)."""
    job = update_domain.get_job(session, tenant.id, job_id)
    events, total = job_repo.list_job_events(session, job_id=job.id, limit=limit, offset=offset)
    return Page(
        items=[JobEventPublic.model_validate(e) for e in events],
        total=total,
        limit=limit,
        offset=offset,
    )
