"""The webhook tables: a tenant's endpoints and the deliveries of its events to them (an
outbox: a delivery is written in the transaction that made its event, so it is sent only once
that commits). ``service.store.models`` imports them, so the metadata holds every table."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, true
from sqlalchemy.orm import Mapped, mapped_column

from service.store.base import Base, CreatedAtMixin, IdMixin, str_enum


class DeliveryStatus(StrEnum):
    pending = "pending"  # to be sent (again) at next_attempt_at
    delivered = "delivered"  # the endpoint answered 2xx
    failed = "failed"  # every attempt of the retry schedule failed
    skipped = "skipped"  # the endpoint was disabled or deleted first


def new_message_id() -> str:
    """The ``webhook-id`` of a delivery: the same on every retry, so receivers de-duplicate."""
    return f"msg_{uuid.uuid4().hex}"


class WebhookEndpoint(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "webhook_endpoints"

    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    #: The event types sent here; None: all of them.
    events: Mapped[list[str] | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(500))
    #: ``whsec_`` and the base64 key (Standard Webhooks).
    secret: Mapped[str] = mapped_column(String(100))
    #: After a rotation, the old secret signs too until this time, so receivers can switch.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    #: When the deliveries to it began to fail without a success since; None: not failing.
    failing_since: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(500))


class WebhookDelivery(CreatedAtMixin, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_message_id)
    endpoint_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(64))
    #: The body sent: ``{"type", "timestamp", "data"}``.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[DeliveryStatus] = mapped_column(
        str_enum(DeliveryStatus), default=DeliveryStatus.pending
    )
    #: Each attempt: ``{"at", "status_code", "error", "ms"}``.
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
