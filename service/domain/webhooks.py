"""Webhooks (the Standard Webhooks specification): a tenant's endpoints, which URLs they may
have, their signing secrets, and what happens after each delivery attempt (the retry schedule,
and an endpoint disabled after a day of failures). The dispatcher that sends them runs in the
beat (:mod:`worker.webhooks`), never in a request and never behind training."""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from service.domain.errors import Conflict, InvalidRequest, NotFound
from service.settings import Settings
from service.store.base import utcnow
from service.store.models import Tenant
from service.store.repositories import webhooks as webhook_repo
from service.store.webhook_models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

#: The events an endpoint can ask for (``events`` omitted: all of them).
EVENTS = (
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "adapter.promoted",
    "adapter.rejected",
    "adapter.rolled_back",
    "skill.learned",
)
MAX_ENDPOINTS = 16
#: After a rotation the old secret signs beside the new one for this long.
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise InvalidRequest(f"the webhook URL's host {host!r} does not resolve") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_url(url: str, settings: Settings) -> None:
    """Refuse a URL that is not http(s), that points at the service itself, or (when
    ``webhooks_refuse_private``: production) whose host does not resolve or resolves to a
    loopback, private, link-local or otherwise internal address: an endpoint must not make the
    service call its own network. The dispatcher checks again before each attempt (a name's
    addresses can change)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("a webhook URL is http:// or https:// with a host")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if port == settings.port and _is_this_host(host, settings):
        raise InvalidRequest("a webhook URL cannot point at this service itself")
    if settings.webhooks_refuse_private:
        internal = [a for a in _addresses(host) if not a.is_global or a.is_multicast]
        if internal:
            raise InvalidRequest(
                f"the webhook URL's host resolves to {internal[0]}, an internal address "
                "(SEAL_WEBHOOK_PRIVATE_ADDRESSES=refuse)"
            )


def _is_this_host(host: str, settings: Settings) -> bool:
    if host in ("localhost", settings.host):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _check_events(events: list[str] | None) -> list[str] | None:
    if events is None:
        return None
    wrong = [e for e in events if e not in EVENTS]
    if wrong or not events:
        raise InvalidRequest(f"events must be among {', '.join(EVENTS)}; got {wrong or events}")
    return list(dict.fromkeys(events))


def create(
    session: Session,
    settings: Settings,
    tenant: Tenant,
    *,
    url: str,
    events: list[str] | None,
    description: str | None,
) -> WebhookEndpoint:
    if webhook_repo.count_endpoints(session, tenant_id=tenant.id) >= MAX_ENDPOINTS:
        raise Conflict(f"a tenant has at most {MAX_ENDPOINTS} webhook endpoints")
    check_url(url, settings)
    return webhook_repo.create_endpoint(
        session,
        tenant_id=tenant.id,
        url=url,
        events=_check_events(events),
        description=description,
        secret=new_secret(),
    )


def get(session: Session, tenant: Tenant, endpoint_id: str) -> WebhookEndpoint:
    endpoint = webhook_repo.get_endpoint(session, tenant_id=tenant.id, endpoint_id=endpoint_id)
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return endpoint


def change(
    session: Session, settings: Settings, endpoint: WebhookEndpoint, fields: dict[str, Any]
) -> WebhookEndpoint:
    """Change an endpoint's ``url``, ``events``, ``description`` or ``enabled``; enabling it
    again forgets its failures, and its later events are sent."""
    if "url" in fields:
        check_url(fields["url"], settings)
        endpoint.url = fields["url"]
    if "events" in fields:
        endpoint.events = _check_events(fields["events"])
    if "description" in fields:
        endpoint.description = fields["description"]
    if fields.get("enabled") is True and not endpoint.enabled:
        endpoint.enabled, endpoint.failing_since, endpoint.disabled_reason = True, None, None
    elif fields.get("enabled") is False:
        disable(session, endpoint, "disabled by the tenant")
    session.flush()
    return endpoint


def rotate_secret(session: Session, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret; the old one signs beside it for 24 hours (two signatures in
    ``webhook-signature``), so a receiver can switch without losing a message."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = utcnow() + ROTATION_OVERLAP
    endpoint.secret = new_secret()
    session.flush()
    return endpoint


def signature_headers(
    endpoint: WebhookEndpoint, message_id: str, body: str, now: datetime
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    signatures = [Webhook(endpoint.secret).sign(message_id, now, body)]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and until > now:
        signatures.append(Webhook(endpoint.previous_secret).sign(message_id, now, body))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
        "user-agent": "seal-webhooks/1",
    }


def disable(session: Session, endpoint: WebhookEndpoint, reason: str) -> None:
    """Stop sending to an endpoint: its pending deliveries are skipped."""
    endpoint.enabled, endpoint.disabled_reason = False, reason
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == DeliveryStatus.pending,
        )
        .values(status=DeliveryStatus.skipped, next_attempt_at=None)
        .execution_options(synchronize_session="fetch")
    )


def after_attempt(
    session: Session,
    settings: Settings,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    attempt: dict[str, Any],
    ok: bool,
) -> None:
    """Record an attempt: delivered; or the next one at its time in the retry schedule; or,
    the schedule spent, failed. An endpoint failing for ``webhook_disable_after_s`` without a
    success is disabled."""
    now = utcnow()
    delivery.attempts = [*delivery.attempts, attempt]
    if ok:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
            DeliveryStatus.delivered,
            now,
            None,
        )
        endpoint.failing_since = None
        session.flush()
        return
    retries = settings.webhook_retry_schedule_s
    done = len(delivery.attempts)
    if done <= len(retries):
        delivery.next_attempt_at = now + timedelta(seconds=retries[done - 1])
    else:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.failed, None
    endpoint.failing_since = endpoint.failing_since or now
    failing_for = (now - endpoint.failing_since).total_seconds()
    if endpoint.enabled and failing_for >= settings.webhook_disable_after_s:
        disable(session, endpoint, f"every delivery failed for {failing_for / 3600:.0f} h")
    session.flush()
