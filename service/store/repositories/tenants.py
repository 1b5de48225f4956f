"""Tenants and their API keys (only a key's SHA-256 is stored)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.store.base import utcnow
from service.store.models import (
    AdapterVersion,
    ApiKey,
    Completion,
    Document,
    Feedback,
    Job,
    JobEvent,
    MemoryChunk,
    MemoryMode,
    Reward,
    SelfEdit,
    Skill,
    SkillExample,
    SkillSelfEdit,
    SkillVersion,
    TeacherVersion,
    Tenant,
    WebhookDelivery,
    WebhookEndpoint,
)

KEY_PREFIX = "seal-"
DISPLAY_PREFIX_LEN = 12
_UPDATABLE = frozenset({"self_edit_format", "update_schedule", "memory", "quotas"})


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_tenant(
    session: Session,
    *,
    name: str,
    self_edit_format: str | None = None,
    update_schedule: str | None = None,
    memory: MemoryMode = MemoryMode.hybrid,
) -> Tenant:
    tenant = Tenant(
        name=name,
        self_edit_format=self_edit_format,
        update_schedule=update_schedule,
        memory=memory,
    )
    session.add(tenant)
    session.flush()
    return tenant


def update_tenant(session: Session, *, tenant: Tenant, changes: Mapping[str, Any]) -> Tenant:
    """Set the given settings of a tenant (``self_edit_format``, ``update_schedule``,
    ``memory``, ``quotas``)."""
    for name, value in changes.items():
        if name not in _UPDATABLE:
            raise ValueError(f"tenant field {name!r} cannot be changed")
        setattr(tenant, name, value)
    session.flush()
    return tenant


def get_tenant(session: Session, *, tenant_id: str) -> Tenant | None:
    return session.get(Tenant, tenant_id)


def get_tenant_by_name(session: Session, *, name: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.name == name))


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.name)))


def create_api_key(session: Session, *, tenant_id: str) -> tuple[ApiKey, str]:
    """A new key of the tenant: the row and the plain key, which is not stored anywhere."""
    key = generate_api_key()
    row = ApiKey(tenant_id=tenant_id, prefix=key[:DISPLAY_PREFIX_LEN], key_hash=hash_api_key(key))
    session.add(row)
    session.flush()
    return row, key


def list_api_keys(session: Session, *, tenant_id: str) -> list[ApiKey]:
    """A tenant's keys, revoked ones included, oldest first."""
    stmt = (
        select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at, ApiKey.id)
    )
    return list(session.scalars(stmt))


def get_api_key(session: Session, *, tenant_id: str, key_id: str) -> ApiKey | None:
    """One of a tenant's keys by id (None for another tenant's key)."""
    return session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id))


def revoke_api_key(session: Session, *, key: ApiKey) -> ApiKey:
    """Revoke a key from now on; a key already revoked keeps its first revocation time."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


def tenant_for_api_key(session: Session, *, key: str) -> Tenant | None:
    """The tenant owning a valid (not revoked) key, or None."""
    stmt = (
        select(Tenant)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None))
    )
    return session.scalar(stmt)


_TENANT_ROWS = {
    "api_keys": ApiKey.tenant_id,
    "documents": Document.tenant_id,
    "memory_chunks": MemoryChunk.tenant_id,
    "jobs": Job.tenant_id,
    "job_events": JobEvent.tenant_id,
    "adapter_versions": AdapterVersion.tenant_id,
    "teacher_versions": TeacherVersion.tenant_id,
    "self_edits": SelfEdit.tenant_id,
    "rewards": Reward.tenant_id,
    "completions": Completion.tenant_id,
    "feedback": Feedback.tenant_id,
    "skills": Skill.tenant_id,
    "skill_examples": SkillExample.tenant_id,
    "skill_versions": SkillVersion.tenant_id,
    "skill_configs": SkillSelfEdit.tenant_id,
    "webhook_endpoints": WebhookEndpoint.tenant_id,
    "webhook_deliveries": WebhookDelivery.tenant_id,
}
"""Every kind of row a tenant owns, by the column that names the tenant."""


def tenant_artifacts(session: Session, *, tenant_id: str) -> list[str]:
    """The artifact folders of the tenant's adapter versions, skill versions and own teacher
    versions."""
    uris = [
        *session.scalars(
            select(AdapterVersion.artifact_uri).where(AdapterVersion.tenant_id == tenant_id)
        ),
        *session.scalars(
            select(SkillVersion.artifact_uri).where(SkillVersion.tenant_id == tenant_id)
        ),
        *session.scalars(
            select(TeacherVersion.artifact_uri).where(TeacherVersion.tenant_id == tenant_id)
        ),
    ]
    return [uri for uri in uris if uri]


def delete_tenant(session: Session, *, tenant_id: str) -> dict[str, int]:
    """Delete a tenant and every row of it (the store's cascades: keys, documents and their
    questions, jobs, adapter and teacher versions, self-edits, rewards, completions,
    feedback, skills with their examples, versions and configurations, webhook endpoints and
    their deliveries); returns how many rows
    of each kind went."""
    counts = {
        name: session.scalar(select(func.count()).where(column == tenant_id)) or 0
        for name, column in _TENANT_ROWS.items()
    }
    session.execute(
        delete(Tenant).where(Tenant.id == tenant_id).execution_options(synchronize_session="fetch")
    )
    session.expunge_all()  # the cascades removed rows the session may hold
    return counts


def hold_tenant(session: Session, *, tenant_id: str) -> None:
    """Lock the tenant's row until the transaction ends (``SELECT ... FOR UPDATE``; a no-op on
    SQLite, whose writers hold the whole store): requests of one tenant that check, then
    create, take turns."""
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
