"""Update jobs: on demand (``select``, ``batch``), a ``rebuild``, and cancelling a job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from service.domain import quotas
from service.domain.errors import Conflict, JobFinished, NotFound
from service.enqueue import UPDATE_TASK, enqueue_after_commit
from service.store.models import FINISHED_JOB_STATUSES, DocumentStatus, Job, Tenant, UpdateMode
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo


def request_update(
    session: Session,
    tenant: Tenant,
    params: dict[str, Any],
    *,
    limits: Mapping[str, int] | None = None,
) -> Job:
    """An update of the tenant's adapter now (``params["mode"]``, an :class:`UpdateMode`): a
    new job, or the update already queued or running (for a rebuild, only a rebuild). A new
    one counts against the tenant's ``queued_jobs`` quota (``limits``); the open one is
    returned whatever the quota."""
    if params["mode"] == UpdateMode.rebuild:
        learned = document_repo.count_documents(
            session, tenant_id=tenant.id, status=DocumentStatus.learned
        )
        if not learned and adapter_repo.active_adapter(session, tenant_id=tenant.id) is None:
            raise Conflict("nothing to rebuild: the tenant has no learned documents and no adapter")
        if (
            limits is not None
            and job_repo.get_open_update_job(session, tenant_id=tenant.id) is None
        ):
            quotas.check_room_for_job(session, limits, tenant.id)
        return open_rebuild(session, tenant.id, params)
    job = job_repo.get_open_update_job(session, tenant_id=tenant.id)
    if job is None:
        if document_repo.count_documents(session, tenant_id=tenant.id) == 0:
            raise Conflict("there are no pending documents to learn; add documents first")
        if limits is not None:
            quotas.check_room_for_job(session, limits, tenant.id)
        job, created = job_repo.create_update_job(session, tenant_id=tenant.id, params=params)
        if created:
            enqueue_after_commit(session, UPDATE_TASK, job_id=job.id)
    return job


def open_rebuild(session: Session, tenant_id: str, params: dict[str, Any]) -> Job:
    """The tenant's rebuild job: a new one, or the one already queued or running (a running
    one starts again by itself if documents it trains on are deleted). A conflict while an
    update of another mode is open: it trains from the active version, which still holds
    what the rebuild is to remove."""
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


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = job_repo.get_job(session, job_id=job_id, tenant_id=tenant_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def cancel_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """Cancel a queued or running job (a running one stops at its next check);
    :class:`JobFinished` when it has finished, also if its worker finished it meanwhile."""
    job = get_job(session, tenant_id, job_id)
    if job.status in FINISHED_JOB_STATUSES:
        raise JobFinished(f"job {job_id} is already {job.status}")
    return job_repo.cancel_job(session, job=job)
