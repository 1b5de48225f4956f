"""A job's story: one row for each stage a job went through, with its time, the progress it
had reached and the stage's figures (a candidate's training losses and reward, the new
version's, the gate's decision and why). ``service.store.models`` imports it, so the metadata
holds the table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.store.base import Base, CreatedAtMixin, IdMixin


class JobEvent(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_created_at", "job_id", "created_at"),)

    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    message: Mapped[str] = mapped_column(String(500))
    #: The job's progress (0..1) when the stage ended.
    progress: Mapped[float] = mapped_column(Float)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
