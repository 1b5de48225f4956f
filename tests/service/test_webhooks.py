"""Webhooks: a tenant's endpoints, the events its jobs and versions send, signed as the
Standard Webhooks specification says (verified here with its own library, as a receiver
would), retried on failure with the same id, recorded attempt by attempt, and an endpoint
disabled after a day of failures. The receiver is a real HTTP server on this machine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from service.domain import webhooks as webhook_domain
from service.domain.errors import InvalidRequest
from service.settings import Settings
from service.store.base import utcnow
from service.store.models import JobStatus, VersionStatus
from service.store.repositories import jobs as job_repo
from service.store.webhook_models import WebhookEndpoint
from tests.factories import auth, make_adapter_version, make_job, make_tenant
from tests.receiver import Receiver
from worker.webhooks import deliver_due


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    yield r
    r.close()


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Retries at once (the schedule is a setting; seconds, not hours, in tests)."""
    return settings.model_copy(update={"webhook_retry_schedule_s": [0, 0, 0]})


def _drain(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Dispatcher passes until nothing is due; how many attempts were made."""
    attempts = 0
    with httpx.Client(timeout=5) as client:
        for _ in range(50):
            sent = deliver_due(sessions, settings, client)
            if not sent:
                return attempts
            attempts += sent
    raise AssertionError("deliveries kept coming due")


def _endpoint(client: TestClient, key: str, url: str, **fields: object) -> dict:
    response = client.post("/v1/webhooks", json={"url": url, **fields}, headers=auth(key))
    assert response.status_code == 201, response.text
    return response.json()


def test_an_endpoint_is_made_listed_and_deleted(client: TestClient, session: Session) -> None:
    _, key = make_tenant(session)
    _, other = make_tenant(session)
    made = _endpoint(client, key, "https://hooks.example.com/seal", events=["job.failed"])
    assert made["secret"].startswith("whsec_") and made["events"] == ["job.failed"]
    listed = client.get("/v1/webhooks", headers=auth(key)).json()
    assert [e["id"] for e in listed] == [made["id"]] and "secret" not in listed[0]
    assert client.get(f"/v1/webhooks/{made['id']}", headers=auth(other)).status_code == 404
    for bad in (
        {"url": "ftp://hooks.example.com/x"},
        {"url": "not a url"},
        {"url": "https://hooks.example.com/x", "events": ["job.exploded"]},
        {"url": "https://hooks.example.com/x", "colour": "red"},
    ):
        response = client.post("/v1/webhooks", json=bad, headers=auth(key))
        assert response.status_code == 422, bad
    gone = client.delete(f"/v1/webhooks/{made['id']}", headers=auth(key))
    assert gone.status_code == 204
    assert client.get(f"/v1/webhooks/{made['id']}", headers=auth(key)).status_code == 404


def test_urls_that_reach_inside_are_refused(settings: Settings) -> None:
    itself = f"http://127.0.0.1:{settings.port}/hooks"
    with pytest.raises(InvalidRequest, match="this service itself"):
        webhook_domain.check_url(itself, settings)
    webhook_domain.check_url("http://127.0.0.1:9/hooks", settings)  # development: allowed
    webhook_domain.check_url("https://hooks.example.com/x", settings)  # not resolved here
    production = settings.model_copy(update={"webhook_private_addresses": "refuse"})
    for url in ("http://127.0.0.1:9/hooks", "http://10.1.2.3/x", "http://169.254.169.254/x"):
        with pytest.raises(InvalidRequest, match="internal address"):
            webhook_domain.check_url(url, production)
    with pytest.raises(InvalidRequest, match="does not resolve"):  # cannot be checked: refused
        webhook_domain.check_url("https://no-such-host.invalid/x", production)
    webhook_domain.check_url("https://93.184.216.34/hooks", production)  # a public address


def test_a_job_ending_is_delivered_signed_and_retried_with_the_same_id(
    client: TestClient,
    session: Session,
    test_sessionmaker: sessionmaker[Session],
    fast: Settings,
    receiver: Receiver,
) -> None:
    tenant, key = make_tenant(session)
    everything = _endpoint(client, key, receiver.url)
    _endpoint(client, key, receiver.url, events=["adapter.promoted"])  # not a job's
    _, other_key = make_tenant(session)
    _endpoint(client, other_key, receiver.url)  # another tenant's: sent nothing
    job = make_job(session, tenant, status=JobStatus.running)
    job_repo.finish_job(session, job_id=job.id, status=JobStatus.succeeded, result={"n": 1})
    session.commit()

    assert _drain(test_sessionmaker, fast) == 3  # two failures, then delivered
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1
    headers, body = receiver.requests[-1]
    event = Webhook(everything["secret"]).verify(body, headers)
    assert event["type"] == "job.succeeded" and event["data"]["job"]["id"] == job.id
    assert event["data"]["job"]["result"] == {"n": 1}
    page = client.get(f"/v1/webhooks/{everything['id']}/deliveries", headers=auth(key)).json()
    (delivery,) = page["items"]
    assert delivery["id"] in ids and delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 204]


def test_a_hundred_endings_are_each_delivered_once_whatever_the_first_failures(
    client: TestClient,
    session: Session,
    test_sessionmaker: sessionmaker[Session],
    fast: Settings,
    receiver: Receiver,
) -> None:
    """The issue's target: 100 job endings, a receiver that fails the first two attempts of
    each: 100 delivered, every signature verified, none counted twice as new."""
    tenant, key = make_tenant(session)
    secret = _endpoint(client, key, receiver.url, events=["job.succeeded", "job.failed"])["secret"]
    for n in range(100):
        job = make_job(session, tenant, status=JobStatus.running)
        status = JobStatus.succeeded if n % 2 else JobStatus.failed
        job_repo.finish_job(session, job_id=job.id, status=status)
    session.commit()
    assert _drain(test_sessionmaker, fast) == 300
    verified = [Webhook(secret).verify(body, headers) for headers, body in receiver.requests]
    new = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert len(verified) == 300 and len(new) == 100
    assert {e["data"]["job"]["status"] for e in verified} == {"succeeded", "failed"}


def test_an_endpoint_failing_for_a_day_is_disabled_and_can_be_enabled_again(
    client: TestClient,
    session: Session,
    test_sessionmaker: sessionmaker[Session],
    fast: Settings,
) -> None:
    down = Receiver(fail=10**6)
    try:
        tenant, key = make_tenant(session)
        made = _endpoint(client, key, down.url)
        endpoint = session.get(WebhookEndpoint, made["id"])
        assert endpoint is not None
        endpoint.failing_since = utcnow() - timedelta(days=1, minutes=1)
        for _ in range(2):
            job = make_job(session, tenant, status=JobStatus.running)
            job_repo.finish_job(session, job_id=job.id, status=JobStatus.failed)
        session.commit()
        assert _drain(test_sessionmaker, fast) == 1  # the first attempt disabled it
        shown = client.get(f"/v1/webhooks/{made['id']}", headers=auth(key)).json()
        assert shown["enabled"] is False and "failed" in shown["disabled_reason"]
        page = client.get(f"/v1/webhooks/{made['id']}/deliveries", headers=auth(key)).json()
        assert [d["status"] for d in page["items"]] == ["skipped", "skipped"]
        assert sum(len(d["attempts"]) for d in page["items"]) == 1
        again = client.patch(
            f"/v1/webhooks/{made['id']}", json={"enabled": True}, headers=auth(key)
        )
        assert again.json()["enabled"] is True and again.json()["failing_since"] is None
    finally:
        down.close()


def test_a_rotated_secret_signs_beside_the_old_one_and_a_ping_is_sent(
    client: TestClient,
    session: Session,
    test_sessionmaker: sessionmaker[Session],
    fast: Settings,
) -> None:
    up = Receiver()
    try:
        _, key = make_tenant(session)
        made = _endpoint(client, key, up.url, events=["job.failed"])
        rotated = client.post(f"/v1/webhooks/{made['id']}/rotate-secret", headers=auth(key))
        assert rotated.status_code == 200 and rotated.json()["secret"] != made["secret"]
        ping = client.post(f"/v1/webhooks/{made['id']}/test", headers=auth(key))
        assert ping.status_code == 202 and ping.json()["event_type"] == "webhook.test"
        session.commit()
        assert _drain(test_sessionmaker, fast) == 1
        ((headers, body),) = up.requests
        for secret in (made["secret"], rotated.json()["secret"]):  # either verifies
            assert Webhook(secret).verify(body, headers)["type"] == "webhook.test"
    finally:
        up.close()


def test_versions_send_promoted_rejected_and_rolled_back(
    client: TestClient,
    session: Session,
    test_sessionmaker: sessionmaker[Session],
    fast: Settings,
    admin_headers: dict[str, str],
) -> None:
    up = Receiver()
    try:
        tenant, key = make_tenant(session)
        made = _endpoint(
            client, key, up.url, events=[e for e in webhook_domain.EVENTS if "adapter" in e]
        )
        v1 = make_adapter_version(session, tenant, status=VersionStatus.active)
        make_adapter_version(session, tenant, parent=v1, status=VersionStatus.rejected)
        session.commit()
        url = f"/v1/admin/tenants/{tenant.id}/adapters/rollback"
        assert client.post(url, json={"version": 0}, headers=admin_headers).status_code == 200
        session.commit()
        assert _drain(test_sessionmaker, fast) == 3
        events = [Webhook(made["secret"]).verify(b, h) for h, b in up.requests]
        kinds = sorted(e["type"] for e in events)
        assert kinds == ["adapter.promoted", "adapter.rejected", "adapter.rolled_back"]
        rolled = next(e for e in events if e["type"] == "adapter.rolled_back")
        assert rolled["data"]["version"] is None and rolled["data"]["previous"]["version"] == 1
    finally:
        up.close()


def test_body_is_the_specifications_shape(
    client: TestClient, session: Session, test_sessionmaker: sessionmaker[Session], fast: Settings
) -> None:
    up = Receiver()
    try:
        tenant, key = make_tenant(session)
        _endpoint(client, key, up.url)
        job = make_job(session, tenant)
        job_repo.cancel_job(session, job=job)
        session.commit()
        _drain(test_sessionmaker, fast)
        ((_, body),) = up.requests
        event = json.loads(body)
        assert set(event) == {"type", "timestamp", "data"} and event["type"] == "job.cancelled"
    finally:
        up.close()
