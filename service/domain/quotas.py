"""Per-tenant quotas: what one tenant may hold and use, so that it cannot take the service from
the others. Each quota is a setting (``SEAL_QUOTA_<NAME>``) that the admin can override for one
tenant (``PATCH /v1/admin/tenants/{id}`` with ``quotas``). Over one, a request is refused at
once, 429 with ``Retry-After`` and a message naming the quota; ``GET /v1/usage`` shows a
tenant its use beside its limits.

The quotas on what is stored (documents, their bytes) and on queued jobs are counted in the
store; the rates and the chats running are counted by the API (:mod:`service.ratelimit`).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.domain.errors import QuotaExceeded
from service.settings import Settings
from service.store.models import Document, Job, Tenant
from service.store.repositories.jobs import OPEN_STATUSES

#: The quotas, by name: each one's setting is ``quota_<name>``.
QUOTAS = (
    "concurrent_chats",
    "requests_per_minute",
    "queued_jobs",
    "documents",
    "stored_bytes",
)
#: The largest quota the admin can set.
MAX_QUOTA = 10**15
#: How long a refused job or document is told to wait before it tries again, in seconds:
#: until a job finishes, or a document is deleted, which nothing here can foresee.
RETRY_STORED = 60


def limits_of(settings: Settings, tenant: Tenant) -> dict[str, int]:
    """The tenant's quotas: its own where the admin set one, else the settings default."""
    own: Mapping[str, int] = tenant.quotas or {}
    return {name: int(own.get(name, getattr(settings, f"quota_{name}"))) for name in QUOTAS}


def stored(session: Session, tenant_id: str) -> tuple[int, int]:
    """How many documents the tenant stores, and their bytes."""
    count, size = session.execute(
        select(func.count(Document.id), func.coalesce(func.sum(Document.size_bytes), 0)).where(
            Document.tenant_id == tenant_id
        )
    ).one()
    return int(count), int(size)


def open_jobs(session: Session, tenant_id: str) -> int:
    """How many of the tenant's jobs are queued or running."""
    stmt = select(func.count(Job.id)).where(
        Job.tenant_id == tenant_id, Job.status.in_(OPEN_STATUSES)
    )
    return int(session.scalar(stmt) or 0)


def check_room_for_document(
    session: Session, limits: Mapping[str, int], tenant_id: str, size_bytes: int
) -> None:
    """Refuse a new document that would take the tenant past its ``documents`` or
    ``stored_bytes`` quota."""
    count, size = stored(session, tenant_id)
    if count + 1 > limits["documents"]:
        raise QuotaExceeded(
            f"over quota documents: this tenant stores {count:,} documents, its limit is "
            f"{limits['documents']:,}; delete some (DELETE /v1/documents/{{id}}) or ask the "
            "admin for a larger quota",
            retry_after=RETRY_STORED,
        )
    if size + size_bytes > limits["stored_bytes"]:
        raise QuotaExceeded(
            f"over quota stored_bytes: this tenant's documents hold {size:,} bytes and this one "
            f"{size_bytes:,}, its limit is {limits['stored_bytes']:,}; delete some documents or "
            "ask the admin for a larger quota",
            retry_after=RETRY_STORED,
        )


def check_room_for_job(session: Session, limits: Mapping[str, int], tenant_id: str) -> None:
    """Refuse a new job while the tenant has ``queued_jobs`` of them queued or running."""
    n = open_jobs(session, tenant_id)
    if n >= limits["queued_jobs"]:
        raise QuotaExceeded(
            f"over quota queued_jobs: {n} of this tenant's jobs are queued or running, its "
            f"limit is {limits['queued_jobs']}; wait for one to finish (GET /v1/jobs) or "
            "cancel one",
            retry_after=RETRY_STORED,
        )


def check_quotas(quotas: Mapping[str, int]) -> dict[str, int]:
    """An admin's quotas for one tenant, checked for known names (the schema bounds each
    value: a whole number from 1 to :data:`MAX_QUOTA`)."""
    unknown = sorted(set(quotas) - set(QUOTAS))
    if unknown:
        raise ValueError(f"unknown quota(s) {unknown}; expected some of {', '.join(QUOTAS)}")
    return dict(quotas)
