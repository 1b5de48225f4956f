"""Teacher versions: a tenant's round of ReST-EM, and rollback (a tenant's own or the
shared teacher)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.domain import quotas
from service.domain.errors import Conflict
from service.enqueue import TEACHER_ROUND_TASK, enqueue_after_commit
from service.settings import Settings
from service.store.models import (
    Job,
    JobKind,
    TeacherDomain,
    Tenant,
)
from service.store.repositories import jobs as job_repo
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
