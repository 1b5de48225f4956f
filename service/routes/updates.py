"""Updates on demand: the tenant's adapter learns its pending documents now (or, in mode
``rebuild``, again from the base model); the job is followed at ``/v1/jobs/{id}``."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.deps import CurrentTenant, LimitsDep, SessionDep
from service.domain import updates as update_domain
from service.errors import COMMON_ERRORS, WRITE_ERRORS, error_responses
from service.schemas import UpdateAccepted, UpdateCreate

router = APIRouter(prefix="/v1", tags=["updates"], responses=error_responses(*COMMON_ERRORS))


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
