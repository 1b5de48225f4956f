"""What the teacher wrote and what it earned: self-edits, rewards, teacher versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session, aliased

from service.store.models import (
    AdapterVersion,
    Document,
    DocumentStatus,
    Reward,
    SelfEdit,
    TeacherDomain,
    TeacherVersion,
    VersionStatus,
)


def add_self_edit(
    session: Session,
    *,
    tenant_id: str,
    document_id: str,
    format: str,
    text: str,
    job_id: str | None = None,
    teacher_version_id: str | None = None,
    selected: bool = False,
) -> SelfEdit:
    self_edit = SelfEdit(
        tenant_id=tenant_id,
        document_id=document_id,
        format=format,
        text=text,
        job_id=job_id,
        teacher_version_id=teacher_version_id,
        selected=selected,
    )
    session.add(self_edit)
    session.flush()
    return self_edit


def mark_selected(session: Session, *, self_edit_ids: Sequence[str], selected: bool = True) -> None:
    """Mark self-edits as (not) selected for training."""
    for self_edit in session.scalars(select(SelfEdit).where(SelfEdit.id.in_(self_edit_ids))):
        self_edit.selected = selected
    session.flush()


def list_self_edits(
    session: Session,
    *,
    tenant_id: str,
    document_id: str | None = None,
    document_ids: Sequence[str] | None = None,
    selected: bool | None = None,
    limit: int | None = None,
) -> list[tuple[SelfEdit, int | None]]:
    """The tenant's self-edits, oldest first, each with its teacher version's number
    (None for the untrained base teacher)."""
    stmt = (
        select(SelfEdit, TeacherVersion.number)
        .outerjoin(TeacherVersion, TeacherVersion.id == SelfEdit.teacher_version_id)
        .where(SelfEdit.tenant_id == tenant_id)
        .order_by(SelfEdit.created_at, SelfEdit.id)
    )
    if document_id is not None:
        stmt = stmt.where(SelfEdit.document_id == document_id)
    if document_ids is not None:
        stmt = stmt.where(SelfEdit.document_id.in_(list(document_ids)))
    if selected is not None:
        stmt = stmt.where(SelfEdit.selected.is_(selected))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [(self_edit, number) for self_edit, number in session.execute(stmt)]


def add_reward(
    session: Session,
    *,
    tenant_id: str,
    metric: str,
    value: float,
    baseline: float | None = None,
    self_edit_id: str | None = None,
    adapter_version_id: str | None = None,
    document_id: str | None = None,
) -> Reward:
    reward = Reward(
        tenant_id=tenant_id,
        metric=metric,
        value=value,
        baseline=baseline,
        self_edit_id=self_edit_id,
        adapter_version_id=adapter_version_id,
        document_id=document_id,
    )
    session.add(reward)
    session.flush()
    return reward


@dataclass(frozen=True)
class RewardRow:
    """A reward with the numbers and format it is reported with."""

    reward: Reward
    adapter_version: int | None
    format: str | None
    teacher_version: int | None


def list_rewards(
    session: Session,
    *,
    tenant_id: str,
    document_id: str | None = None,
    format: str | None = None,
    teacher_version: int | None = None,
    metric: str | None = None,
    limit: int | None = None,
) -> list[RewardRow]:
    """The tenant's rewards, oldest first. ``teacher_version=0`` means the base teacher;
    filtering by format or teacher version keeps only rewards of self-edits."""
    stmt = (
        select(Reward, AdapterVersion.number, SelfEdit.format, TeacherVersion.number)
        .outerjoin(AdapterVersion, AdapterVersion.id == Reward.adapter_version_id)
        .outerjoin(SelfEdit, SelfEdit.id == Reward.self_edit_id)
        .outerjoin(TeacherVersion, TeacherVersion.id == SelfEdit.teacher_version_id)
        .where(Reward.tenant_id == tenant_id)
        .order_by(Reward.created_at, Reward.id)
    )
    if document_id is not None:
        stmt = stmt.where(Reward.document_id == document_id)
    if metric is not None:
        stmt = stmt.where(Reward.metric == metric)
    if format is not None:
        stmt = stmt.where(SelfEdit.format == format)
    if teacher_version is not None:
        if teacher_version == 0:
            stmt = stmt.where(SelfEdit.id.is_not(None), SelfEdit.teacher_version_id.is_(None))
        else:
            stmt = stmt.where(TeacherVersion.number == teacher_version)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        RewardRow(reward=r, adapter_version=a, format=f, teacher_version=t)
        for r, a, f, t in session.execute(stmt)
    ]


def best_self_edits(
    session: Session,
    *,
    tenant_id: str | None,
    metric: str,
    min_value: float = 0.0,
    since: datetime | None = None,
) -> list[tuple[SelfEdit, float]]:
    """For ReST-EM: per document, the self-edit with the highest reward above ``min_value``
    (``tenant_id=None``: across all tenants), with that reward."""
    stmt = (
        select(SelfEdit, Reward.value)
        .join(Reward, Reward.self_edit_id == SelfEdit.id)
        .where(Reward.metric == metric, Reward.value > min_value)
        .order_by(SelfEdit.document_id, Reward.value.desc(), SelfEdit.created_at)
    )
    if tenant_id is not None:
        stmt = stmt.where(SelfEdit.tenant_id == tenant_id)
    if since is not None:
        stmt = stmt.where(Reward.created_at >= since)
    best: dict[str, tuple[SelfEdit, float]] = {}
    for self_edit, value in session.execute(stmt):
        best.setdefault(self_edit.document_id, (self_edit, value))
    return list(best.values())


def next_teacher_number(
    session: Session, *, tenant_id: str | None, domain: TeacherDomain = TeacherDomain.documents
) -> int:
    """1 for an owner's first teacher version of ``domain`` (``tenant_id=None``: the shared
    teacher), then one more than the highest so far."""
    stmt = select(func.max(TeacherVersion.number)).where(_teacher_owner(tenant_id, domain))
    return (session.scalar(stmt) or 0) + 1


def create_teacher_version(
    session: Session,
    *,
    tenant_id: str | None,
    parent_id: str | None,
    artifact_uri: str | None = None,
    checksum: str | None = None,
    metrics: dict[str, Any] | None = None,
    status: VersionStatus = VersionStatus.candidate,
    domain: TeacherDomain = TeacherDomain.documents,
) -> TeacherVersion:
    """A new teacher version of an owner (``tenant_id=None``: the shared teacher), numbered
    after the last one of its ``domain``: each domain is a lineage of its own."""
    version = TeacherVersion(
        tenant_id=tenant_id,
        domain=domain,
        number=next_teacher_number(session, tenant_id=tenant_id, domain=domain),
        parent_id=parent_id,
        status=status,
        artifact_uri=artifact_uri,
        checksum=checksum,
        metrics=dict(metrics or {}),
    )
    session.add(version)
    session.flush()
    return version


def _teacher_owner(tenant_id: str | None, domain: TeacherDomain) -> ColumnElement[bool]:
    owner = (
        TeacherVersion.tenant_id.is_(None)
        if tenant_id is None
        else TeacherVersion.tenant_id == tenant_id
    )
    return and_(owner, TeacherVersion.domain == domain)


def active_teacher_version(
    session: Session, *, tenant_id: str | None, domain: TeacherDomain = TeacherDomain.documents
) -> TeacherVersion | None:
    """The active teacher of a tenant (``None``: the shared teacher) for ``domain``; None: the
    base teacher."""
    stmt = select(TeacherVersion).where(
        TeacherVersion.status == VersionStatus.active, _teacher_owner(tenant_id, domain)
    )
    return session.scalars(stmt.order_by(TeacherVersion.number.desc())).first()


def get_teacher_version(
    session: Session,
    *,
    tenant_id: str | None,
    number: int,
    domain: TeacherDomain = TeacherDomain.documents,
) -> TeacherVersion | None:
    """Teacher version ``number`` of a tenant (``None``: of the shared teacher) in ``domain``."""
    stmt = select(TeacherVersion).where(
        _teacher_owner(tenant_id, domain), TeacherVersion.number == number
    )
    return session.scalars(stmt.order_by(TeacherVersion.created_at.desc())).first()


def get_teacher_version_by_id(session: Session, *, version_id: str) -> TeacherVersion | None:
    return session.get(TeacherVersion, version_id)


def shared_teacher_versions(
    session: Session, *, domain: TeacherDomain = TeacherDomain.documents
) -> list[TeacherVersion]:
    """Every version of the shared teacher of ``domain``, oldest first."""
    stmt = select(TeacherVersion).where(_teacher_owner(None, domain))
    return list(session.scalars(stmt.order_by(TeacherVersion.number)))


def list_teacher_versions(
    session: Session, *, tenant_id: str
) -> list[tuple[TeacherVersion, int | None]]:
    """The tenant's own teacher versions of documents and the shared ones, newest first, each
    with its parent's number. Never another tenant's."""
    parent = aliased(TeacherVersion)
    stmt = (
        select(TeacherVersion, parent.number)
        .outerjoin(parent, parent.id == TeacherVersion.parent_id)
        .where(TeacherVersion.tenant_id.is_(None) | (TeacherVersion.tenant_id == tenant_id))
        .where(TeacherVersion.domain == TeacherDomain.documents)
        .order_by(TeacherVersion.created_at.desc(), TeacherVersion.number.desc())
    )
    return [(version, parent_number) for version, parent_number in session.execute(stmt)]


def teacher_versions_trained_on(
    session: Session, *, tenant_id: str, self_edit_ids: Sequence[str]
) -> list[TeacherVersion]:
    """The tenant's own teacher versions that were fine-tuned on any of ``self_edit_ids`` (a
    round records the ids it trained on), and every version trained from one of them; oldest
    first."""
    versions = session.scalars(
        select(TeacherVersion)
        .where(_teacher_owner(tenant_id, TeacherDomain.documents))
        .order_by(TeacherVersion.number)
    ).all()
    wanted = set(self_edit_ids)
    holding: set[str] = set()
    for version in versions:  # a parent's number is lower than its child's
        trained = wanted & set((version.metrics or {}).get("self_edit_ids") or [])
        if trained or version.parent_id in holding:
            holding.add(version.id)
    return [v for v in versions if v.id in holding]


def set_active_teacher_version(
    session: Session,
    *,
    tenant_id: str | None,
    version: TeacherVersion | None,
    domain: TeacherDomain = TeacherDomain.documents,
) -> TeacherVersion | None:
    """Make ``version`` the active teacher of its owner (``tenant_id``; ``None``: shared) in
    ``domain``, retiring the one active before; ``version=None`` retires the active one, so
    the owner falls back to the base teacher (a tenant: to the shared teacher). Returns the
    version that was active before (or None)."""
    if version is not None and version.tenant_id != tenant_id:
        raise ValueError("the teacher version belongs to another owner")
    if version is not None and version.domain != domain:
        raise ValueError(f"the teacher version is one of {version.domain}, not of {domain}")
    previous = active_teacher_version(session, tenant_id=tenant_id, domain=domain)
    stmt = select(TeacherVersion).where(
        TeacherVersion.status == VersionStatus.active, _teacher_owner(tenant_id, domain)
    )
    for active in session.scalars(stmt):
        if version is None or active.id != version.id:
            active.status = VersionStatus.retired
    session.flush()
    if version is not None:
        version.status = VersionStatus.active
        session.flush()
    return previous


def teacher_in_use(
    session: Session, *, tenant_id: str, domain: TeacherDomain = TeacherDomain.documents
) -> TeacherVersion | None:
    """The teacher a tenant's jobs of ``domain`` use (its updates: documents; its skill jobs:
    skills): its own active version, else the shared active one; None: the untrained base
    teacher."""
    return active_teacher_version(
        session, tenant_id=tenant_id, domain=domain
    ) or active_teacher_version(session, tenant_id=None, domain=domain)


def promote_teacher_version(session: Session, *, version: TeacherVersion) -> TeacherVersion | None:
    """Make a teacher version active; the one active before it (same owner) is retired and
    returned."""
    return set_active_teacher_version(
        session, tenant_id=version.tenant_id, version=version, domain=version.domain
    )


def rewards_by_format(session: Session, *, tenant_id: str, metric: str) -> dict[str, list[float]]:
    """The tenant's rewards of ``metric``, grouped by the format of the self-edit that earned
    them (what the ``auto`` format chooses by)."""
    stmt = (
        select(SelfEdit.format, Reward.value)
        .join(Reward, Reward.self_edit_id == SelfEdit.id)
        .where(SelfEdit.tenant_id == tenant_id, Reward.metric == metric)
        .order_by(Reward.created_at, Reward.id)
    )
    grouped: dict[str, list[float]] = {}
    for fmt, value in session.execute(stmt):
        grouped.setdefault(fmt, []).append(value)
    return grouped


def kept_self_edits_of_learned_documents(
    session: Session, *, tenant_id: str
) -> list[tuple[SelfEdit, Document]]:
    """The tenant's selected self-edits of documents it has learned (what a batch replays),
    oldest first."""
    stmt = (
        select(SelfEdit, Document)
        .join(Document, Document.id == SelfEdit.document_id)
        .where(
            SelfEdit.tenant_id == tenant_id,
            SelfEdit.selected.is_(True),
            Document.status == DocumentStatus.learned,
        )
        .order_by(SelfEdit.created_at, SelfEdit.id)
    )
    return [(self_edit, document) for self_edit, document in session.execute(stmt)]
