"""Per-tenant quotas through the API, on both stores: the settings' defaults and the admin's
overrides, 429 with ``Retry-After`` and a message naming the quota, nothing stored by a
refused request, the other tenants untouched, and ``GET /v1/usage``."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.domain.errors import Busy
from service.domain.quotas import QUOTAS
from service.inference import ChatRequest, ChatResult
from service.ratelimit import TenantCounters
from service.settings import Settings
from service.store.models import Document
from tests.doubles import ReversingBackend
from tests.factories import auth, count_rows, make_tenant

PAIR = {"input": "ab", "output": "ba"}
OTHER = {"input": "cd", "output": "dc"}


def _set(client: TestClient, admin: dict[str, str], tenant_id: str, **quotas: Any) -> dict:
    response = client.patch(
        f"/v1/admin/tenants/{tenant_id}", json={"quotas": quotas}, headers=admin
    )
    assert response.status_code == 200, response.text
    return response.json()


def _usage(client: TestClient, key: str) -> dict[str, dict[str, int]]:
    response = client.get("/v1/usage", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["quotas"]


def _refused(response: Any, quota: str) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["type"] == "quota_exceeded"
    assert f"over quota {quota}" in error["message"]
    assert int(response.headers["Retry-After"]) >= 1


def _doc(client: TestClient, key: str, n: int, text: str = "Some text.") -> Any:
    return client.post("/v1/documents", json={"title": f"doc {n}", "text": text}, headers=auth(key))


def test_a_tenant_sees_the_defaults_until_the_admin_sets_its_own(
    client: TestClient, session: Session, settings: Settings, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    session.commit()
    usage = _usage(client, key)
    assert list(usage) == list(QUOTAS)
    assert {n: q["limit"] for n, q in usage.items()} == {
        n: getattr(settings, f"quota_{n}") for n in QUOTAS
    }
    public = _set(client, admin_headers, tenant.id, documents=5, concurrent_chats=2)
    assert public["quotas"] == {"documents": 5, "concurrent_chats": 2}
    usage = _usage(client, key)
    assert usage["documents"]["limit"] == 5 and usage["concurrent_chats"]["limit"] == 2
    assert usage["queued_jobs"]["limit"] == settings.quota_queued_jobs
    # null: the defaults again
    response = client.patch(
        f"/v1/admin/tenants/{tenant.id}", json={"quotas": None}, headers=admin_headers
    )
    assert response.status_code == 200 and response.json()["quotas"] is None
    assert _usage(client, key)["documents"]["limit"] == settings.quota_documents


@pytest.mark.parametrize(
    ("quotas", "message"),
    [
        ({"documentz": 3}, "unknown quota"),
        ({"documents": 0}, "greater than or equal to 1"),
        ({"documents": "3"}, "valid integer"),
        ({"documents": 2.5}, "valid integer"),
        ({"documents": True}, "valid integer"),
    ],
)
def test_a_wrong_quota_is_a_422_that_names_it(
    client: TestClient,
    session: Session,
    admin_headers: dict[str, str],
    quotas: dict[str, Any],
    message: str,
) -> None:
    tenant, _key = make_tenant(session)
    session.commit()
    response = client.patch(
        f"/v1/admin/tenants/{tenant.id}", json={"quotas": quotas}, headers=admin_headers
    )
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]
    assert "quotas" in response.json()["error"]["message"]


def test_past_its_documents_quota_a_new_document_is_refused_and_nothing_is_stored(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    _other, other_key = make_tenant(session)
    session.commit()
    _set(client, admin_headers, tenant.id, documents=2)
    assert [_doc(client, key, n).status_code for n in (1, 2)] == [201, 201]
    _refused(_doc(client, key, 3), "documents")
    assert count_rows(session, Document) == 2
    assert _doc(client, key, 1).status_code == 200  # the same document again is not new
    assert _doc(client, other_key, 3).status_code == 201  # another tenant is not touched
    first = client.get("/v1/documents", headers=auth(key)).json()["items"][0]["id"]
    assert client.delete(f"/v1/documents/{first}", headers=auth(key)).status_code == 200
    assert _doc(client, key, 3).status_code == 201  # room again
    assert _usage(client, key)["documents"] == {"limit": 2, "used": 2}


def test_past_its_stored_bytes_quota_a_new_document_is_refused(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    session.commit()
    _set(client, admin_headers, tenant.id, stored_bytes=100)
    # "doc 1" + 40 bytes (two of them UTF-8 pairs): 45 bytes
    assert _doc(client, key, 1, "é" * 2 + "x" * 36).status_code == 201
    assert _usage(client, key)["stored_bytes"] == {"limit": 100, "used": 45}
    assert _doc(client, key, 2, "y" * 50).status_code == 201  # 45 + 55 = 100: at the limit
    _refused(_doc(client, key, 3, "z"), "stored_bytes")


def test_past_its_requests_per_minute_a_tenant_waits_and_the_others_do_not(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    _other, other_key = make_tenant(session)
    session.commit()
    _set(client, admin_headers, tenant.id, requests_per_minute=3)
    responses = [client.get("/v1/documents", headers=auth(key)) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    # each answer says where the tenant stands
    assert [r.headers["RateLimit-Remaining"] for r in responses] == ["2", "1", "0"]
    assert {r.headers["RateLimit-Limit"] for r in responses} == {"3"}
    assert all(0 <= int(r.headers["RateLimit-Reset"]) <= 60 for r in responses)
    response = client.get("/v1/documents", headers=auth(key))
    _refused(response, "requests_per_minute")
    assert int(response.headers["Retry-After"]) <= 60
    _refused(_doc(client, key, 1), "requests_per_minute")  # writes too
    assert count_rows(session, Document) == 0
    assert client.get("/v1/documents", headers=auth(other_key)).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_a_second_update_while_one_is_open_is_that_job_even_at_the_jobs_quota(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    session.commit()
    _set(client, admin_headers, tenant.id, queued_jobs=1)
    assert _doc(client, key, 1).status_code == 201
    first = client.post("/v1/updates", json={}, headers=auth(key))
    again = client.post("/v1/updates", json={}, headers=auth(key))
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    skill = client.post(
        "/v1/skills", json={"name": "swap", "examples": [PAIR, OTHER]}, headers=auth(key)
    )
    _refused(skill, "queued_jobs")
    assert client.get("/v1/skills", headers=auth(key)).json() == []  # nothing was kept
    assert _usage(client, key)["queued_jobs"] == {"limit": 1, "used": 1}
    job = first.json()["job_id"]
    assert client.post(f"/v1/jobs/{job}/cancel", headers=auth(key)).status_code == 200
    skill = client.post(
        "/v1/skills", json={"name": "swap", "examples": [PAIR, OTHER]}, headers=auth(key)
    )
    assert skill.status_code == 201, skill.text


class _Held(ReversingBackend):
    """Answers its n-th chat once ``gates[n]`` is set; ``entered`` counts the chats being
    decoded. (One at a time through the store: the tests share one connection.)"""

    def __init__(self) -> None:
        super().__init__()
        self.gates = [threading.Event() for _ in range(8)]
        self.entered = threading.Semaphore(0)
        self._n = 0
        self._lock = threading.Lock()

    def complete(self, request: ChatRequest) -> ChatResult:
        with self._lock:
            gate, self._n = self.gates[self._n], self._n + 1
        self.entered.release()
        assert gate.wait(30)
        return super().complete(request)


def test_past_its_concurrent_chats_a_chat_is_refused_until_one_ends(
    app: FastAPI, client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    from service.inference import get_chat_backend

    held = _Held()
    app.dependency_overrides[get_chat_backend] = lambda: held
    tenant, key = make_tenant(session)
    _other, other_key = make_tenant(session)
    session.commit()
    _set(client, admin_headers, tenant.id, concurrent_chats=1)

    def chat(key: str, model: str = "student") -> Any:
        body = {"model": model, "messages": [{"role": "user", "content": "hello there"}]}
        return client.post("/v1/chat/completions", json=body, headers=auth(key))

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(chat, key)
        assert held.entered.acquire(timeout=30)  # the first is being decoded
        assert _usage(client, key)["concurrent_chats"] == {"limit": 1, "used": 1}
        _refused(chat(key, "base"), "concurrent_chats")  # every model counts
        other = pool.submit(chat, other_key)  # another tenant's chat is not refused
        assert held.entered.acquire(timeout=30)
        held.gates[0].set()
        assert first.result(30).status_code == 200
        held.gates[1].set()
        assert other.result(30).status_code == 200
    for gate in held.gates:
        gate.set()
    assert chat(key).status_code == 200
    stream = client.post(
        "/v1/chat/completions",
        json={"model": "student", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers=auth(key),
    )
    assert stream.status_code == 200 and "[DONE]" in stream.text
    assert _usage(client, key)["concurrent_chats"]["used"] == 0  # a finished stream let go


def test_a_failing_rate_limit_storage_lets_requests_through() -> None:
    counters = TenantCounters("redis://127.0.0.1:1/0")  # nothing listens there
    for _ in range(3):
        counters.hit("t", 1)
    assert counters.requests("t", 1) == 0


def test_the_request_counts_can_live_in_redis(broker: redis.Redis) -> None:
    counters = TenantCounters("redis://127.0.0.1:6379/15")
    counters.hit("t", 2)
    assert TenantCounters("redis://127.0.0.1:6379/15").requests("t", 2) == 1  # shared
    counters.hit("t", 2)
    with pytest.raises(Exception, match="over quota requests_per_minute"):
        counters.hit("t", 2)


def test_past_the_process_wide_chat_cap_a_chat_is_503_whatever_its_tenant() -> None:
    """Each chat holds a worker thread while it decodes: past ``all_chats`` of every tenant
    together the next waits (503), so the other routes keep threads to answer."""
    counters = TenantCounters(all_chats=2)
    first = counters.open_chat("a", 16)
    counters.open_chat("b", 16)
    with pytest.raises(Busy, match="all it takes at once") as caught:
        counters.open_chat("c", 16)
    assert caught.value.status_code == 503 and caught.value.headers == {"Retry-After": "1"}
    first()
    first()  # a second release changes nothing
    counters.open_chat("c", 16)
    assert (counters.chats("a"), counters.chats("b"), counters.chats("c")) == (0, 1, 1)
