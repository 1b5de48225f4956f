"""Tenants, their API keys and their deletion with everything of them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from service.artifacts import artifacts, is_remote
from service.domain.errors import Conflict, NotFound
from service.domain.files import remove_after_commit
from service.domain.skills import skill_folder
from service.settings import Settings
from service.store.models import ApiKey, MemoryMode, Tenant
from service.store.repositories import jobs as job_repo
from service.store.repositories import tenants as tenant_repo

log = logging.getLogger(__name__)


def get_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = tenant_repo.get_tenant(session, tenant_id=tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} not found")
    return tenant


def create_tenant(
    session: Session,
    *,
    name: str,
    self_edit_format: str | None,
    update_schedule: str | None,
    memory: MemoryMode = MemoryMode.hybrid,
) -> tuple[Tenant, str]:
    """A new tenant and its first API key (the key in plain text, shown only now)."""
    if tenant_repo.get_tenant_by_name(session, name=name) is not None:
        raise Conflict(f"a tenant named {name!r} already exists")
    tenant = tenant_repo.create_tenant(
        session,
        name=name,
        self_edit_format=self_edit_format,
        update_schedule=update_schedule,
        memory=memory,
    )
    _key, plain = tenant_repo.create_api_key(session, tenant_id=tenant.id)
    return tenant, plain


def revoke_key(session: Session, tenant: Tenant, key_id: str) -> ApiKey:
    """Revoke a key (from the next request on it answers 401); a revoked key keeps its first
    revocation time."""
    key = tenant_repo.get_api_key(session, tenant_id=tenant.id, key_id=key_id)
    if key is None:
        raise NotFound(f"tenant {tenant.name!r} has no API key {key_id}")
    return tenant_repo.revoke_api_key(session, key=key)


@dataclass
class TenantDeletion:
    deleted: dict[str, int]
    stopped_jobs: list[str]
    folders_removed: list[str]
    folders_left: list[str]


def delete_tenant(session: Session, settings: Settings, tenant: Tenant) -> TenantDeletion:
    """Delete a tenant with its keys, documents, jobs, self-edits, rewards, chats, feedback,
    skills, and its adapter, skill and teacher versions; their folders go once the rows are
    committed. Its open jobs go too: a worker running one stops at its next check."""
    tenant_id, name = tenant.id, tenant.name
    stopped = [job.id for job in job_repo.list_open_jobs(session, tenant_id=tenant_id)]
    recorded = tenant_repo.tenant_artifacts(session, tenant_id=tenant_id)
    deleted = tenant_repo.delete_tenant(session, tenant_id=tenant_id)
    root = settings.resolved_adapter_dir
    own = [root / tenant_id, root / "teachers" / tenant_id, skill_folder(settings, tenant_id)]
    folders = dict.fromkeys([*recorded, *map(str, own)])
    removed: list[str] = []
    left: list[str] = []
    moved: list[Path] = []
    existing = [f for f in folders if not is_remote(f) and Path(f).exists()]
    for folder in sorted(existing, key=lambda f: len(Path(f).parts)):  # a folder before its own
        path = Path(folder)
        if any(path.is_relative_to(m) for m in moved):
            removed.append(folder)  # goes with the folder it is in
        elif remove_after_commit(session, path):
            moved.append(path)
            removed.append(folder)
        else:
            left.append(folder)
    store = artifacts(settings)
    if store.remote:  # every object of the tenant's versions lies under these
        removed += store.delete_prefixes_after_commit(
            session, [tenant_id, f"teachers/{tenant_id}", f"skills/{tenant_id}"]
        )
    log.info("deleted tenant %s (%s): %s", tenant_id, name, deleted)
    return TenantDeletion(deleted, stopped, removed, left)
