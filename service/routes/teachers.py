"""The teachers that write a tenant's self-edits: its own versions, the shared ones, and
teacher rounds that train the tenant's own teacher on its reward history."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.orm import Session

from service.deps import CurrentTenant, SessionDep, SettingsDep
from service.enqueue import TEACHER_ROUND_TASK, enqueue_after_commit
from service.errors import COMMON_ERRORS, Conflict, error_responses
from service.schemas import TeacherListItem, TeacherPublic, TeacherRoundAccepted
from service.store.models import JobKind, TeacherVersion
from service.store.repositories import jobs as job_repo
from service.store.repositories import learning as learning_repo

router = APIRouter(prefix="/v1", tags=["teachers"], responses=error_responses(*COMMON_ERRORS))


def teacher_public(
    session: Session, version: TeacherVersion, parent_number: int | None = None
) -> TeacherPublic:
    if parent_number is None and version.parent_id is not None:
        parent = learning_repo.get_teacher_version_by_id(session, version_id=version.parent_id)
        parent_number = parent.number if parent else None
    return TeacherPublic(
        version=version.number,
        scope="shared" if version.tenant_id is None else "tenant",
        status=version.status,
        parent=parent_number,
        metrics=version.metrics or {},
        created_at=version.created_at,
    )


@router.post(
    "/teacher/rounds",
    response_model=TeacherRoundAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409),
)
def request_teacher_round(
    session: SessionDep, tenant: CurrentTenant, settings: SettingsDep
) -> TeacherRoundAccepted:
    """Train the tenant's own teacher on the self-edits that earned it the best rewards. A
    round already queued or running is returned instead of a second one. 409 when the
    teacher is an external endpoint (SEAL_TEACHER_URL): its weights cannot be trained."""
    if settings.external_teacher:
        raise Conflict(
            "the teacher is an external endpoint (SEAL_TEACHER_URL); ReST-EM trains the "
            "bundled teacher's adapter and cannot train it"
        )
    job = job_repo.get_open_job(session, tenant_id=tenant.id, kind=JobKind.teacher_train)
    if job is None:
        job = job_repo.create_job(
            session, tenant_id=tenant.id, kind=JobKind.teacher_train, params={}
        )
        enqueue_after_commit(session, TEACHER_ROUND_TASK, job_id=job.id)
    return TeacherRoundAccepted(job_id=job.id, status=job.status)


@router.get("/teachers", response_model=list[TeacherListItem])
def list_teachers(session: SessionDep, tenant: CurrentTenant) -> list[TeacherListItem]:
    """The tenant's own teacher versions and the shared ones, newest first. ``in_use`` marks
    the one its updates use now (its own active version, else the shared active one); none
    in use: the untrained base teacher."""
    in_use = learning_repo.teacher_in_use(session, tenant_id=tenant.id)
    return [
        TeacherListItem(
            **teacher_public(session, version, parent).model_dump(),
            in_use=in_use is not None and version.id == in_use.id,
        )
        for version, parent in learning_repo.list_teacher_versions(session, tenant_id=tenant.id)
    ]
