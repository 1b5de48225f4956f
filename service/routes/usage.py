"""``GET /v1/usage``: the tenant's use of each of its quotas, beside its limits."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.deps import ReadingTenant, ReadSessionDep, SettingsDep
from service.domain import quotas
from service.errors import COMMON_ERRORS, error_responses
from service.schemas import QuotaUse, TenantUsage

router = APIRouter(prefix="/v1", tags=["usage"], responses=error_responses(*COMMON_ERRORS))


@router.get("/usage", response_model=TenantUsage)
def usage(
    request: Request, session: ReadSessionDep, tenant: ReadingTenant, settings: SettingsDep
) -> TenantUsage:
    """What the tenant uses of each quota now, and its limit. Over a quota, a request is
    refused with 429, a message naming the quota and ``Retry-After``."""
    counters = request.app.state.counters
    limits = quotas.limits_of(settings, tenant)
    documents, size = quotas.stored(session, tenant.id)
    used = {
        "concurrent_chats": counters.chats(tenant.id),
        "requests_per_minute": counters.requests(tenant.id, limits["requests_per_minute"]),
        "queued_jobs": quotas.open_jobs(session, tenant.id),
        "documents": documents,
        "stored_bytes": size,
    }
    return TenantUsage(
        quotas={name: QuotaUse(limit=limits[name], used=used[name]) for name in quotas.QUOTAS}
    )
