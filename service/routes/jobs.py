"""Updates on demand and the jobs that run them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from service.deps import CurrentTenant, LimitsDep, SessionDep
from service.domain import updates as update_domain
from service.errors import COMMON_ERRORS, WRITE_ERRORS, error_responses
from service.schemas import MAX_NUMBER, JobPublic, Page, UpdateAccepted, UpdateCreate
from service.store.repositories import jobs as job_repo

router = APIRouter(prefix="/v1", tags=["jobs"], responses=error_responses(*COMMON_ERRORS))


@router.post(
    "/updates",
    response_model=UpdateAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409, *WRITE_ERRORS),
)
def request_update(
    session: SessionDep, tenant: CurrentTenant, limits: LimitsDep, body: UpdateCreate | None = None
) -> UpdateAccepted:
    """Start an update of the tenant's adapter on its pending documents now (mode
    ``rebuild``: again from the base model on its learned documents). An update already
    queued or running is returned instead of a second one (for a rebuild, only a rebuild)."""
    params = (body or UpdateCreate()).model_dump(mode="json", exclude_none=True)
    job = update_domain.request_update(session, tenant, params, limits=limits)
    return UpdateAccepted(job_id=job.id, status=job.status)


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
