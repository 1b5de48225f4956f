"""Webhook endpoints and the deliveries of events to them: events become deliveries in the
transaction that made them (an outbox); the dispatcher claims the due ones and records each
attempt."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.store.base import utcnow
from service.store.webhook_models import DeliveryStatus, WebhookDelivery, WebhookEndpoint


def create_endpoint(
    session: Session,
    *,
    tenant_id: str,
    url: str,
    events: list[str] | None,
    description: str | None,
    secret: str,
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        tenant_id=tenant_id, url=url, events=events, description=description, secret=secret
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def get_endpoint(session: Session, *, tenant_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant_id
    )
    return session.scalar(stmt)


def list_endpoints(session: Session, *, tenant_id: str) -> list[WebhookEndpoint]:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
    return list(session.scalars(stmt.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)))


def count_endpoints(session: Session, *, tenant_id: str) -> int:
    stmt = select(func.count()).where(WebhookEndpoint.tenant_id == tenant_id)
    return session.scalar(stmt) or 0


def delete_endpoint(session: Session, *, endpoint: WebhookEndpoint) -> None:
    session.delete(endpoint)  # its deliveries go with it (ON DELETE CASCADE)
    session.flush()


def _delivery(endpoint: WebhookEndpoint, event_type: str, data: dict[str, Any]) -> WebhookDelivery:
    now = utcnow()
    payload = {"type": event_type, "timestamp": now.isoformat(), "data": data}
    return WebhookDelivery(
        endpoint_id=endpoint.id,
        tenant_id=endpoint.tenant_id,
        event_type=event_type,
        payload=payload,
        status=DeliveryStatus.pending,
        attempts=[],
        next_attempt_at=now,
    )


def add_event(
    session: Session, *, tenant_id: str, event_type: str, data: dict[str, Any]
) -> list[WebhookDelivery]:
    """One delivery of the event to each of the tenant's enabled endpoints that asked for its
    type, in the caller's transaction: sent once that commits, dropped with a rollback."""
    deliveries = [
        _delivery(endpoint, event_type, data)
        for endpoint in list_endpoints(session, tenant_id=tenant_id)
        if endpoint.enabled and (endpoint.events is None or event_type in endpoint.events)
    ]
    session.add_all(deliveries)
    session.flush()
    return deliveries


def add_test_delivery(session: Session, *, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A ``webhook.test`` event to this endpoint alone, whatever its event types."""
    delivery = _delivery(endpoint, "webhook.test", {"endpoint_id": endpoint.id})
    session.add(delivery)
    session.flush()
    return delivery


def claim_due(
    session: Session, *, now: datetime, lease_s: float, limit: int
) -> list[tuple[WebhookDelivery, WebhookEndpoint]]:
    """The deliveries due now, each claimed for ``lease_s`` by one conditional UPDATE, so that
    two dispatchers (two beats) never send the same attempt; a claim that dies with its
    process is retried when the lease runs out."""
    stmt = (
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.status == DeliveryStatus.pending)
        .where(WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    claimed = []
    for delivery, endpoint in session.execute(stmt).all():
        won = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
                WebhookDelivery.status == DeliveryStatus.pending,
            )
            .values(next_attempt_at=now + timedelta(seconds=lease_s))
            .execution_options(synchronize_session=False)
        )
        if won.rowcount:  # type: ignore[attr-defined]
            claimed.append((delivery, endpoint))
    session.flush()
    return claimed


def list_deliveries(
    session: Session, *, endpoint_id: str, limit: int, offset: int
) -> tuple[list[WebhookDelivery], int]:
    """An endpoint's deliveries, newest first, and how many there are."""
    where = WebhookDelivery.endpoint_id == endpoint_id
    total = session.scalar(select(func.count()).where(where)) or 0
    stmt = (
        select(WebhookDelivery)
        .where(where)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(stmt)), total
