"""Admin endpoints (the admin key): tenants, their keys and settings, adapter, skill and
teacher rollback, and deleting an old adapter version's weights."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi import Path as PathParam

from service.deps import AdminDep, SessionDep, SettingsDep
from service.domain import adapters as adapter_domain
from service.domain import tenants as tenant_domain
from service.errors import COMMON_ERRORS, WRITE_ERRORS, error_responses
from service.presenters import adapter_public
from service.schemas import (
    MAX_NUMBER,
    AdapterPurged,
    ApiKeyCreated,
    ApiKeyPublic,
    AuditEventPublic,
    Page,
    TenantCreate,
    TenantCreated,
    TenantDeleted,
    TenantPublic,
    TenantUpdate,
)
from service.store.repositories import audit as audit_repo
from service.store.repositories import tenants as tenant_repo

router = APIRouter(prefix="/v1", tags=["admin"], responses=error_responses(*COMMON_ERRORS))


@router.post(
    "/admin/tenants",
    response_model=TenantCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, *WRITE_ERRORS),
)
@router.post(
    "/tenants",
    response_model=TenantCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, *WRITE_ERRORS),
)
def create_tenant(body: TenantCreate, session: SessionDep, _admin: AdminDep) -> TenantCreated:
    tenant, plain = tenant_domain.create_tenant(
        session,
        name=body.name,
        self_edit_format=body.self_edit_format,
        update_schedule=body.update_schedule,
        memory=body.memory,
    )
    return TenantCreated(id=tenant.id, name=tenant.name, api_key=plain)


@router.get("/admin/tenants", response_model=list[TenantPublic])
@router.get("/tenants", response_model=list[TenantPublic])
def list_tenants(session: SessionDep, _admin: AdminDep) -> list[TenantPublic]:
    return [TenantPublic.model_validate(t) for t in tenant_repo.list_tenants(session)]


@router.patch(
    "/admin/tenants/{tenant_id}",
    response_model=TenantPublic,
    responses=error_responses(404, *WRITE_ERRORS),
)
def update_tenant(
    tenant_id: str, body: TenantUpdate, session: SessionDep, _admin: AdminDep
) -> TenantPublic:
    """Change a tenant's settings; only the fields present in the body change (null resets
    one to the default)."""
    tenant = tenant_domain.get_tenant(session, tenant_id)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    tenant = tenant_repo.update_tenant(session, tenant=tenant, changes=changes)
    return TenantPublic.model_validate(tenant)


@router.delete(
    "/admin/tenants/{tenant_id}",
    response_model=TenantDeleted,
    responses=error_responses(404, *WRITE_ERRORS),
)
def delete_tenant(
    tenant_id: str, session: SessionDep, settings: SettingsDep, _admin: AdminDep
) -> TenantDeleted:
    """Delete a tenant with everything of it: its keys, documents, jobs, self-edits, rewards,
    chats, feedback, and its adapter and teacher versions with their folders. Its open jobs
    go too: a worker running one stops at its next check. Nothing of it stays in the shared
    teacher, which learns from public data only."""
    tenant = tenant_domain.get_tenant(session, tenant_id)
    name = tenant.name
    deletion = tenant_domain.delete_tenant(session, settings, tenant)
    return TenantDeleted(
        id=tenant_id,
        name=name,
        deleted=deletion.deleted,
        stopped_jobs=deletion.stopped_jobs,
        folders_removed=deletion.folders_removed,
        folders_left=deletion.folders_left,
    )


@router.post(
    "/admin/tenants/{tenant_id}/keys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404, *WRITE_ERRORS),
)
def create_key(tenant_id: str, session: SessionDep, _admin: AdminDep) -> ApiKeyCreated:
    tenant = tenant_domain.get_tenant(session, tenant_id)
    key, plain = tenant_repo.create_api_key(session, tenant_id=tenant.id)
    return ApiKeyCreated(id=key.id, tenant_id=tenant.id, prefix=key.prefix, api_key=plain)


@router.get(
    "/admin/tenants/{tenant_id}/keys",
    response_model=list[ApiKeyPublic],
    responses=error_responses(404),
)
def list_keys(tenant_id: str, session: SessionDep, _admin: AdminDep) -> list[ApiKeyPublic]:
    """A tenant's API keys, revoked ones included (only their prefixes: a key is shown once,
    when it is made)."""
    tenant = tenant_domain.get_tenant(session, tenant_id)
    return [
        ApiKeyPublic.model_validate(k)
        for k in tenant_repo.list_api_keys(session, tenant_id=tenant.id)
    ]


@router.delete(
    "/admin/tenants/{tenant_id}/keys/{key_id}",
    response_model=ApiKeyPublic,
    responses=error_responses(404, *WRITE_ERRORS),
)
def revoke_key(tenant_id: str, key_id: str, session: SessionDep, _admin: AdminDep) -> ApiKeyPublic:
    """Revoke a key: from the next request on it answers 401. Revoking a revoked key changes
    nothing (its first revocation time stays)."""
    tenant = tenant_domain.get_tenant(session, tenant_id)
    return ApiKeyPublic.model_validate(tenant_domain.revoke_key(session, tenant, key_id))


@router.delete(
    "/admin/tenants/{tenant_id}/adapters/{version}",
    response_model=AdapterPurged,
    responses=error_responses(404, 409, *WRITE_ERRORS),
)
def delete_adapter_weights(
    tenant_id: str,
    version: Annotated[int, PathParam(ge=1, le=MAX_NUMBER)],
    session: SessionDep,
    settings: SettingsDep,
    _admin: AdminDep,
) -> AdapterPurged:
    """Delete the weights of an adapter version that is not active, e.g. the versions that
    learned a document deleted with ``forget=true``, once its rebuild is active. The version
    stays listed with its metrics and lineage, its checksum null; it can no longer be made
    active."""
    tenant = tenant_domain.get_tenant(session, tenant_id)
    deletion = adapter_domain.delete_weights(session, settings, tenant, version)
    return AdapterPurged(
        **adapter_public(session, deletion.version).model_dump(),
        folder_removed=deletion.folder_removed,
        folder_left=deletion.folder_left,
    )


@router.get("/admin/audit", response_model=Page[AuditEventPublic])
def audit_log(
    session: SessionDep,
    _admin: AdminDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_NUMBER)] = 0,
) -> Page[AuditEventPublic]:
    """The audit log, newest first: every admin request that may write and every dashboard
    sign-in attempt, with the admin key's name (never the key), the path and the status."""
    events, total = audit_repo.list_events(session, limit=limit, offset=offset)
    return Page(
        items=[AuditEventPublic.model_validate(e) for e in events],
        total=total,
        limit=limit,
        offset=offset,
    )
