"""What the teacher wrote for a tenant and what it earned: self-edits and their rewards (the
adapter versions they trained: ``routes/adapters.py``; the teachers: ``routes/teachers.py``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from service.deps import CurrentTenant, SessionDep
from service.errors import COMMON_ERRORS, NotFound, error_responses
from service.limits import MAX_ID_CHARS
from service.schemas import (
    MAX_NUMBER,
    RewardGroup,
    RewardList,
    RewardPublic,
    RewardSummary,
    SelfEditPublic,
)
from service.store.repositories import documents as document_repo
from service.store.repositories import learning as learning_repo

router = APIRouter(prefix="/v1", tags=["learning"], responses=error_responses(*COMMON_ERRORS))
DocumentIdQuery = Annotated[str | None, Query(max_length=MAX_ID_CHARS)]


def _check_document(session: Session, tenant_id: str, document_id: str | None) -> None:
    if document_id is not None and (
        document_repo.get_document(session, tenant_id=tenant_id, document_id=document_id) is None
    ):
        raise NotFound(f"document {document_id} not found")


@router.get("/self-edits", response_model=list[SelfEditPublic], responses=error_responses(404))
def list_self_edits(
    session: SessionDep,
    tenant: CurrentTenant,
    document_id: DocumentIdQuery = None,
    selected: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[SelfEditPublic]:
    _check_document(session, tenant.id, document_id)
    rows = learning_repo.list_self_edits(
        session, tenant_id=tenant.id, document_id=document_id, selected=selected, limit=limit
    )
    return [
        SelfEditPublic(
            id=s.id,
            document_id=s.document_id,
            format=s.format,
            teacher_version=number,
            text=s.text,
            selected=s.selected,
            created_at=s.created_at,
        )
        for s, number in rows
    ]


@router.get("/rewards", response_model=RewardList, responses=error_responses(404))
def list_rewards(
    session: SessionDep,
    tenant: CurrentTenant,
    document_id: DocumentIdQuery = None,
    format: Annotated[str | None, Query(max_length=64)] = None,
    teacher_version: Annotated[
        int | None, Query(ge=0, le=MAX_NUMBER, description="0: the untrained base teacher.")
    ] = None,
    metric: Annotated[
        str | None, Query(max_length=64, description="e.g. probe_accuracy, rating.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> RewardList:
    """The tenant's rewards, oldest first, with a summary: count and mean, by metric, and,
    over the rewards of self-edits, by format and by teacher version."""
    _check_document(session, tenant.id, document_id)
    rows = learning_repo.list_rewards(
        session,
        tenant_id=tenant.id,
        document_id=document_id,
        format=format,
        teacher_version=teacher_version,
        metric=metric,
        limit=limit,
    )
    items = [
        RewardPublic(
            id=row.reward.id,
            self_edit_id=row.reward.self_edit_id,
            document_id=row.reward.document_id,
            adapter_version=row.adapter_version,
            format=row.format,
            metric=row.reward.metric,
            value=row.reward.value,
            baseline=row.reward.baseline,
            created_at=row.reward.created_at,
        )
        for row in rows
    ]
    return RewardList(items=items, summary=_summary(rows))


def _group(values: list[float]) -> RewardGroup:
    return RewardGroup(count=len(values), mean=sum(values) / len(values) if values else None)


def _summary(rows: list[learning_repo.RewardRow]) -> RewardSummary:
    """Count and mean of all rows, by metric, and, over the rewards of self-edits, by format
    and by teacher version ("base": the untrained base teacher)."""
    by_metric: dict[str, list[float]] = defaultdict(list)
    by_format: dict[str, list[float]] = defaultdict(list)
    by_teacher: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        value = row.reward.value
        by_metric[row.reward.metric].append(value)
        if row.reward.self_edit_id is not None and row.format is not None:
            by_format[row.format].append(value)
            teacher = "base" if row.teacher_version is None else str(row.teacher_version)
            by_teacher[teacher].append(value)
    overall = _group([row.reward.value for row in rows])
    return RewardSummary(
        count=overall.count,
        mean=overall.mean,
        by_metric={k: _group(v) for k, v in by_metric.items()},
        by_format={k: _group(v) for k, v in by_format.items()},
        by_teacher_version={k: _group(v) for k, v in by_teacher.items()},
    )
