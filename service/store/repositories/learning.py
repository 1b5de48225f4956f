"""What the teacher wrote and what it earned: self-edits and their rewards (the teacher's
versions: :mod:`.teachers`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.models import (
    AdapterVersion,
    Document,
    DocumentStatus,
    Reward,
    SelfEdit,
    TeacherVersion,
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
