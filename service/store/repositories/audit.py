"""The audit log of admin actions (:mod:`service.audit` writes it)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.store.models import AuditEvent


def list_events(session: Session, *, limit: int, offset: int) -> tuple[list[AuditEvent], int]:
    """A page of the log, newest first, and how many events it holds."""
    total = session.scalar(select(func.count(AuditEvent.id))) or 0
    stmt = (
        select(AuditEvent)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(stmt)), int(total)
