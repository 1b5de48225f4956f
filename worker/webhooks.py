"""The webhook dispatcher: sends the deliveries that are due, one attempt each, and records how
it went (:func:`service.domain.webhooks.after_attempt`). It runs in the beat, in a thread of
its own that wakes every ``webhook_poll_s``: never in a request, never behind training. Several
beats may run: each delivery attempt is claimed by one of them
(:func:`service.store.repositories.webhooks.claim_due`)."""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
from sqlalchemy.orm import Session, sessionmaker

from service.domain import webhooks as webhook_domain
from service.domain.errors import InvalidRequest
from service.settings import Settings
from service.store.base import utcnow
from service.store.db import session_scope
from service.store.repositories import webhooks as webhook_repo
from service.store.webhook_models import WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)
#: Deliveries one pass sends at most; the next pass takes the rest.
BATCH = 50


def _attempt(
    client: httpx.Client, settings: Settings, delivery: WebhookDelivery, endpoint: WebhookEndpoint
) -> tuple[dict[str, object], bool]:
    """One POST of the delivery: what the attempt record says, and whether it was a 2xx."""
    started, now = time.perf_counter(), utcnow()
    record: dict[str, object] = {"at": now.isoformat(), "status_code": None, "error": None}
    try:
        webhook_domain.check_url(endpoint.url, settings)  # again: its DNS may have changed
        body = json.dumps(delivery.payload, separators=(",", ":"))
        headers = webhook_domain.signature_headers(endpoint, delivery.id, body, now)
        response = client.post(endpoint.url, content=body, headers=headers)
        record["status_code"] = response.status_code
        ok = 200 <= response.status_code < 300
        if not ok:
            record["error"] = f"answered {response.status_code}"
    except InvalidRequest as exc:
        record["error"], ok = f"refused: {exc}", False
    except httpx.HTTPError as exc:
        record["error"], ok = f"{type(exc).__name__}: {exc}"[:500], False
    record["ms"] = round((time.perf_counter() - started) * 1000)
    return record, ok


def deliver_due(sessions: sessionmaker[Session], settings: Settings, client: httpx.Client) -> int:
    """One pass: claim what is due, send each, record each attempt; how many attempts."""
    lease = settings.webhook_timeout_s * BATCH + 60  # longer than a pass can take
    with session_scope(sessions) as session:
        claimed = [
            (d.id, e.id)
            for d, e in webhook_repo.claim_due(session, now=utcnow(), lease_s=lease, limit=BATCH)
        ]
    attempts = 0
    for delivery_id, endpoint_id in claimed:
        with session_scope(sessions) as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            endpoint = session.get(WebhookEndpoint, endpoint_id)
            if delivery is None or endpoint is None or not endpoint.enabled:
                continue  # deleted or disabled meanwhile (its deliveries were skipped)
            record, ok = _attempt(client, settings, delivery, endpoint)
            webhook_domain.after_attempt(session, settings, delivery, endpoint, record, ok)
            attempts += 1
    return attempts


def run_dispatcher(
    sessions: sessionmaker[Session], settings: Settings, stop: threading.Event
) -> None:
    """Pass after pass until ``stop`` is set; a pass that fails is logged and tried again."""
    with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as client:
        while not stop.is_set():
            try:
                sent = deliver_due(sessions, settings, client)
            except Exception:
                log.exception("webhooks: a pass failed; trying again")
                sent = 0
            if not sent and stop.wait(settings.webhook_poll_s):  # nothing due: wait
                return


def start_dispatcher(
    sessions: sessionmaker[Session], settings: Settings, stop: threading.Event
) -> threading.Thread:
    thread = threading.Thread(
        target=run_dispatcher, args=(sessions, settings, stop), name="webhooks", daemon=True
    )
    thread.start()
    return thread
