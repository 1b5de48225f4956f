"""Teacher versions: a tenant's round of ReST-EM, and rollback (a tenant's own or the
shared teacher)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.domain import quotas
from service.domain.errors import Conflict, NotFound
from service.domain.versions import check_can_activate
from service.enqueue import TEACHER_ROUND_TASK, enqueue_after_commit
from service.settings import Settings
from service.store.models import (
    Job,
    JobKind,
    TeacherDomain,
    TeacherVersion,
    Tenant,
)
from service.store.repositories import jobs as job_repo
from service.store.repositories import learning as learning_repo
from service.store.repositories import tenants as tenant_repo


def request_round(
    session: Session,
    settings: Settings,
    tenant: Tenant,
    *,
    domain: TeacherDomain = TeacherDomain.documents,
) -> Job:
    """The tenant's teacher round of ``domain``: a new job (params ``{"domain": "skills"}``
    for the skills teacher; none for documents), or the one of that domain already queued or
    running. An external teacher (SEAL_TEACHER_URL) cannot be trained."""
    if settings.external_teacher:
        raise Conflict(
            "the teacher is an external endpoint (SEAL_TEACHER_URL); ReST-EM trains the "
            "bundled teacher's adapter and cannot train it"
        )
    # two requests at once must not both start a round: the tenant's row is held until the
    # commit (PostgreSQL; SQLite's writers already take turns)
    tenant_repo.hold_tenant(session, tenant_id=tenant.id)
    open_jobs = job_repo.list_open_jobs(session, tenant_id=tenant.id, kind=JobKind.teacher_train)
    job = next(
        (j for j in open_jobs if (j.params or {}).get("domain", TeacherDomain.documents) == domain),
        None,
    )
    if job is None:
        quotas.check_room_for_job(session, quotas.limits_of(settings, tenant), tenant.id)
        params = {} if domain == TeacherDomain.documents else {"domain": domain.value}
        job = job_repo.create_job(
            session, tenant_id=tenant.id, kind=JobKind.teacher_train, params=params
        )
        enqueue_after_commit(session, TEACHER_ROUND_TASK, job_id=job.id)
    return job


def rollback(
    session: Session,
    tenant_id: str | None,
    number: int,
    domain: TeacherDomain = TeacherDomain.documents,
) -> tuple[TeacherVersion | None, TeacherVersion | None]:
    """Make teacher version ``number`` of a tenant (or of the shared teacher, ``tenant_id``
    None) in ``domain`` active at once; 0 retires the active one. The new active version and
    the one it replaced."""
    owner = "the shared teacher"
    if tenant_id is not None:
        tenant = tenant_repo.get_tenant(session, tenant_id=tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} not found")
        owner = f"tenant {tenant.name!r}"
    target = None
    if number != 0:
        target = learning_repo.get_teacher_version(
            session, tenant_id=tenant_id, number=number, domain=domain
        )
        if target is None:
            raise NotFound(f"{owner} has no teacher version {number} of {domain}")
        check_can_activate(target, f"teacher version {number} of {owner}")
    previous = learning_repo.set_active_teacher_version(
        session, tenant_id=tenant_id, version=target, domain=domain
    )
    return target, previous
