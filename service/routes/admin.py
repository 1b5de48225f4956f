"""Admin endpoints (the admin key): tenants, their keys and settings, adapter and teacher
rollback, and deleting an old adapter version's weights."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, status
from fastapi import Path as PathParam

from service.deps import AdminDep, SessionDep, SettingsDep
from service.errors import COMMON_ERRORS, Conflict, NotFound, error_responses
from service.routes.adapters import adapter_public
from service.routes.teachers import teacher_public
from service.schemas import (
    MAX_NUMBER,
    AdapterPurged,
    ApiKeyCreated,
    ApiKeyPublic,
    RollbackRequest,
    RollbackResult,
    TeacherRollbackRequest,
    TeacherRollbackResult,
    TenantCreate,
    TenantCreated,
    TenantDeleted,
    TenantPublic,
    TenantUpdate,
)
from service.store.models import Tenant, VersionStatus
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import learning as learning_repo
from service.store.repositories import tenants as tenant_repo

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["admin"], responses=error_responses(*COMMON_ERRORS))


def _tenant_or_404(session: SessionDep, tenant_id: str) -> Tenant:
    tenant = tenant_repo.get_tenant(session, tenant_id=tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} not found")
    return tenant


@router.post(
    "/tenants",
    response_model=TenantCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
def create_tenant(body: TenantCreate, session: SessionDep, _admin: AdminDep) -> TenantCreated:
    if tenant_repo.get_tenant_by_name(session, name=body.name) is not None:
        raise Conflict(f"a tenant named {body.name!r} already exists")
    tenant = tenant_repo.create_tenant(
        session,
        name=body.name,
        self_edit_format=body.self_edit_format,
        update_schedule=body.update_schedule,
    )
    _key, plain = tenant_repo.create_api_key(session, tenant_id=tenant.id)
    return TenantCreated(id=tenant.id, name=tenant.name, api_key=plain)


@router.get("/tenants", response_model=list[TenantPublic])
def list_tenants(session: SessionDep, _admin: AdminDep) -> list[TenantPublic]:
    return [TenantPublic.model_validate(t) for t in tenant_repo.list_tenants(session)]


@router.patch(
    "/admin/tenants/{tenant_id}", response_model=TenantPublic, responses=error_responses(404)
)
def update_tenant(
    tenant_id: str, body: TenantUpdate, session: SessionDep, _admin: AdminDep
) -> TenantPublic:
    """Change a tenant's settings; only the fields present in the body change (null resets
    one to the default)."""
    tenant = _tenant_or_404(session, tenant_id)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    tenant = tenant_repo.update_tenant(session, tenant=tenant, changes=changes)
    return TenantPublic.model_validate(tenant)


@router.delete(
    "/admin/tenants/{tenant_id}", response_model=TenantDeleted, responses=error_responses(404)
)
def delete_tenant(
    tenant_id: str, session: SessionDep, settings: SettingsDep, _admin: AdminDep
) -> TenantDeleted:
    """Delete a tenant with everything of it: its keys, documents, jobs, self-edits, rewards,
    chats, feedback, and its adapter and teacher versions with their folders. Its open jobs
    go too: a worker running one stops at its next check. Nothing of it stays in the shared
    teacher, which learns from public data only."""
    tenant = _tenant_or_404(session, tenant_id)
    name = tenant.name
    stopped = [job.id for job in job_repo.list_open_jobs(session, tenant_id=tenant.id)]
    artifacts = tenant_repo.tenant_artifacts(session, tenant_id=tenant.id)
    deleted = tenant_repo.delete_tenant(session, tenant_id=tenant.id)
    session.commit()  # the rows go first: a folder is removed only once nothing points to it

    root = settings.resolved_adapter_dir
    removed, left = [], []
    candidates = [*artifacts, str(root / tenant_id), str(root / "teachers" / tenant_id)]
    for folder in dict.fromkeys(candidates):
        path = Path(folder)
        if not path.exists():
            continue
        try:
            shutil.rmtree(path)
            removed.append(folder)
        except OSError:
            log.exception("could not remove %s of deleted tenant %s", folder, tenant_id)
            left.append(folder)
    log.info("deleted tenant %s (%s): %s", tenant_id, name, deleted)
    return TenantDeleted(
        id=tenant_id,
        name=name,
        deleted=deleted,
        stopped_jobs=stopped,
        folders_removed=removed,
        folders_left=left,
    )


@router.post(
    "/admin/tenants/{tenant_id}/keys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404),
)
def create_key(tenant_id: str, session: SessionDep, _admin: AdminDep) -> ApiKeyCreated:
    tenant = _tenant_or_404(session, tenant_id)
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
    tenant = _tenant_or_404(session, tenant_id)
    return [
        ApiKeyPublic.model_validate(k)
        for k in tenant_repo.list_api_keys(session, tenant_id=tenant.id)
    ]


@router.delete(
    "/admin/tenants/{tenant_id}/keys/{key_id}",
    response_model=ApiKeyPublic,
    responses=error_responses(404),
)
def revoke_key(tenant_id: str, key_id: str, session: SessionDep, _admin: AdminDep) -> ApiKeyPublic:
    """Revoke a key: from the next request on it answers 401. Revoking a revoked key changes
    nothing (its first revocation time stays)."""
    tenant = _tenant_or_404(session, tenant_id)
    key = tenant_repo.get_api_key(session, tenant_id=tenant.id, key_id=key_id)
    if key is None:
        raise NotFound(f"tenant {tenant.name!r} has no API key {key_id}")
    return ApiKeyPublic.model_validate(tenant_repo.revoke_api_key(session, key=key))


@router.post(
    "/admin/tenants/{tenant_id}/rollback",
    response_model=RollbackResult,
    responses=error_responses(404, 409),
)
def rollback(
    tenant_id: str, body: RollbackRequest, session: SessionDep, _admin: AdminDep
) -> RollbackResult:
    """Make an earlier adapter version active at once (``version: 0``: the base model)."""
    tenant = _tenant_or_404(session, tenant_id)
    target = None
    if body.version != 0:
        target = adapter_repo.get_adapter_version(session, tenant_id=tenant.id, number=body.version)
        if target is None:
            raise NotFound(f"tenant {tenant.name!r} has no adapter version {body.version}")
        if target.status == VersionStatus.rejected:
            raise Conflict(f"version {body.version} was rejected and cannot be made active")
        if not target.artifact_uri:
            raise Conflict(f"version {body.version} has no artifact")
    previous = adapter_repo.promote_version(session, tenant_id=tenant.id, version=target)
    return RollbackResult(
        active=adapter_public(session, target) if target else None,
        previous=adapter_public(session, previous) if previous else None,
    )


@router.delete(
    "/admin/tenants/{tenant_id}/adapters/{version}",
    response_model=AdapterPurged,
    responses=error_responses(404, 409),
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
    tenant = _tenant_or_404(session, tenant_id)
    row = adapter_repo.get_adapter_version(session, tenant_id=tenant.id, number=version)
    if row is None:
        raise NotFound(f"tenant {tenant.name!r} has no adapter version {version}")
    try:
        folder = adapter_repo.drop_weights(session, version=row)
    except ValueError:
        raise Conflict(
            f"version {version} is active: make another version active first (rollback, or a "
            "rebuild)"
        ) from None
    session.commit()  # the row first: a folder is removed only once nothing points to it
    session.refresh(row)
    removed = left = None
    if folder is not None and Path(folder).exists():
        left = folder
        if Path(folder).resolve().is_relative_to(settings.resolved_adapter_dir):
            try:
                shutil.rmtree(folder)
                removed, left = folder, None
            except OSError:
                log.exception("could not remove %s of adapter version %s", folder, row.id)
    return AdapterPurged(
        **adapter_public(session, row).model_dump(), folder_removed=removed, folder_left=left
    )


@router.post(
    "/admin/teachers/rollback",
    response_model=TeacherRollbackResult,
    responses=error_responses(404, 409),
)
def rollback_teacher(
    body: TeacherRollbackRequest, session: SessionDep, _admin: AdminDep
) -> TeacherRollbackResult:
    """Make a teacher version active at once: a tenant's own (``tenant_id``) or the shared
    one (``tenant_id: null``); ``version: 0`` retires the active one (the base teacher, or
    for a tenant the shared teacher)."""
    owner = "the shared teacher"
    if body.tenant_id is not None:
        tenant = _tenant_or_404(session, body.tenant_id)
        owner = f"tenant {tenant.name!r}"
    target = None
    if body.version != 0:
        target = learning_repo.get_teacher_version(
            session, tenant_id=body.tenant_id, number=body.version
        )
        if target is None:
            raise NotFound(f"{owner} has no teacher version {body.version}")
        if target.status == VersionStatus.rejected:
            raise Conflict(f"teacher version {body.version} was rejected and cannot be made active")
        if not target.artifact_uri:
            raise Conflict(f"teacher version {body.version} of {owner} has no artifact")
    previous = learning_repo.set_active_teacher_version(
        session, tenant_id=body.tenant_id, version=target
    )
    return TeacherRollbackResult(
        active=teacher_public(session, target) if target else None,
        previous=teacher_public(session, previous) if previous else None,
    )
