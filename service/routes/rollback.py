"""Rollback (the admin key): make an earlier version of a history active at once. One rule for
every history (:func:`service.domain.versions.rollback`) and one URL shape, the history's path
and ``/rollback``:

- ``/v1/admin/tenants/{id}/adapters/rollback``: a tenant's adapter;
- ``/v1/admin/tenants/{id}/skills/{skill_id}/rollback``: one of its skills;
- ``/v1/admin/tenants/{id}/teachers/rollback``: its own teacher;
- ``/v1/admin/teachers/rollback``: the shared teacher.

The earlier paths keep answering as documented: ``/v1/admin/tenants/{id}/rollback`` (the
adapter) and ``/v1/admin/teachers/rollback`` with ``tenant_id`` in the body."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from service.deps import AdminDep, SessionDep
from service.domain import skills as skill_domain
from service.domain import tenants as tenant_domain
from service.domain.versions import rollback
from service.errors import COMMON_ERRORS, WRITE_ERRORS, error_responses
from service.presenters import adapter_public, rolled_back, skill_version_public, teacher_public
from service.schemas import (
    RollbackRequest,
    RollbackResult,
    TeacherRollbackRequest,
    TeacherRollbackResult,
    TenantTeacherRollbackRequest,
)
from service.skill_schemas import SkillRollbackRequest, SkillRollbackResult
from service.store.models import TeacherDomain
from service.store.repositories.adapters import ADAPTERS
from service.store.repositories.skills import SKILL_VERSIONS
from service.store.repositories.teachers import TEACHERS

router = APIRouter(prefix="/v1", tags=["admin"], responses=error_responses(*COMMON_ERRORS))
RESPONSES = error_responses(404, 409, 410, *WRITE_ERRORS)


@router.post(
    "/admin/tenants/{tenant_id}/adapters/rollback",
    response_model=RollbackResult,
    responses=RESPONSES,
)
@router.post(
    "/admin/tenants/{tenant_id}/rollback", response_model=RollbackResult, responses=RESPONSES
)
def rollback_adapter(
    tenant_id: str, body: RollbackRequest, session: SessionDep, _admin: AdminDep
) -> RollbackResult:
    """Make an earlier adapter version active at once (``version: 0``: the base model)."""
    tenant = tenant_domain.get_tenant(session, tenant_id)
    versions = rollback(
        session, ADAPTERS, body.version, owner_name=f"tenant {tenant.name!r}", tenant_id=tenant.id
    )
    return RollbackResult(**rolled_back(session, versions, adapter_public))


@router.post(
    "/admin/tenants/{tenant_id}/skills/{skill_id}/rollback",
    response_model=SkillRollbackResult,
    responses=RESPONSES,
)
def rollback_skill(
    tenant_id: str, skill_id: str, body: SkillRollbackRequest, session: SessionDep, _admin: AdminDep
) -> SkillRollbackResult:
    """Make an earlier version of a tenant's skill active at once (``version: 0``: none, so
    chats with the skill answer 409 until a job promotes a version)."""
    tenant = tenant_domain.get_tenant(session, tenant_id)
    skill = skill_domain.get_skill(session, tenant, skill_id)
    versions = rollback(
        session, SKILL_VERSIONS, body.version, owner_name=f"skill {skill.name!r}", skill_id=skill.id
    )
    return SkillRollbackResult(**rolled_back(session, versions, skill_version_public))


def _rollback_teacher(
    session: Session, tenant_id: str | None, number: int, domain: TeacherDomain
) -> TeacherRollbackResult:
    owner_name = "the shared teacher"
    if tenant_id is not None:
        owner_name = f"tenant {tenant_domain.get_tenant(session, tenant_id).name!r}"
    versions = rollback(
        session,
        TEACHERS,
        number,
        owner_name=f"{owner_name} (teacher of {domain})",
        tenant_id=tenant_id,
        domain=domain,
    )
    return TeacherRollbackResult(**rolled_back(session, versions, teacher_public))


@router.post(
    "/admin/tenants/{tenant_id}/teachers/rollback",
    response_model=TeacherRollbackResult,
    responses=RESPONSES,
)
def rollback_tenant_teacher(
    tenant_id: str, body: TenantTeacherRollbackRequest, session: SessionDep, _admin: AdminDep
) -> TeacherRollbackResult:
    """Make a version of a tenant's own teacher active at once, of documents or of skills
    (``domain``); ``version: 0`` retires the active one, so the tenant's jobs use the shared
    teacher."""
    return _rollback_teacher(session, tenant_id, body.version, body.domain)


@router.post("/admin/teachers/rollback", response_model=TeacherRollbackResult, responses=RESPONSES)
def rollback_teacher(
    body: TeacherRollbackRequest, session: SessionDep, _admin: AdminDep
) -> TeacherRollbackResult:
    """Make a teacher version active at once: the shared teacher's (``tenant_id`` null or
    absent) or, as this path always took it, a tenant's own (``tenant_id``); of documents or
    of skills (``domain``); ``version: 0`` retires the active one (the base teacher, or for a
    tenant the shared teacher)."""
    return _rollback_teacher(session, body.tenant_id, body.version, body.domain)
