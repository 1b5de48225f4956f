"""The teachers that write a tenant's self-edits: its own versions, the shared ones, and
teacher rounds that train the tenant's own teacher on its reward history."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.deps import CurrentTenant, SessionDep, SettingsDep
from service.domain import teachers as teacher_domain
from service.errors import COMMON_ERRORS, WRITE_ERRORS, error_responses
from service.presenters import teacher_public
from service.schemas import TeacherListItem, TeacherRoundAccepted, TeacherRoundRequest
from service.store.models import TeacherDomain
from service.store.repositories import teachers as teacher_repo

router = APIRouter(prefix="/v1", tags=["teachers"], responses=error_responses(*COMMON_ERRORS))


@router.post(
    "/teachers/rounds",
    response_model=TeacherRoundAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409, *WRITE_ERRORS),
)
@router.post(
    "/teacher/rounds",
    response_model=TeacherRoundAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409, *WRITE_ERRORS),
)
def request_teacher_round(
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    body: TeacherRoundRequest | None = None,
) -> TeacherRoundAccepted:
    """Train the tenant's own teacher of ``domain`` (no body: documents) on the self-edits
    that earned it the best rewards. A round of that domain already queued or running is
    returned instead of a second one. 409 when the teacher is an external endpoint
    (SEAL_TEACHER_URL): its weights cannot be trained."""
    domain = body.domain if body else TeacherDomain.documents
    job = teacher_domain.request_round(session, settings, tenant, domain=domain)
    return TeacherRoundAccepted(job_id=job.id, status=job.status)


@router.get("/teachers", response_model=list[TeacherListItem])
def list_teachers(session: SessionDep, tenant: CurrentTenant) -> list[TeacherListItem]:
    """The tenant's own teacher versions and the shared ones, newest first. ``in_use`` marks
    the one its updates use now (its own active version, else the shared active one); none
    in use: the untrained base teacher."""
    in_use = teacher_repo.teacher_in_use(session, tenant_id=tenant.id)
    return [
        TeacherListItem(
            **teacher_public(session, version, parent).model_dump(),
            in_use=in_use is not None and version.id == in_use.id,
        )
        for version, parent in teacher_repo.list_teacher_versions(session, tenant_id=tenant.id)
    ]
