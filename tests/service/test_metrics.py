"""GET /metrics: Prometheus's text format, parsed back with the client's own parser; the
store's figures, HTTP and chat counters, and the multiprocess mode of several API processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from service.store.models import JobKind, JobStatus, VersionStatus
from tests.factories import (
    auth,
    make_adapter_version,
    make_document,
    make_job,
    make_skill,
    make_skill_version,
    make_tenant,
)

ROOT = Path(__file__).resolve().parents[2]


def scrape(client: TestClient, headers: dict[str, str]) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, by (name, sorted labels)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_need_the_admin_key(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    session.commit()
    assert client.get("/metrics").status_code == 401
    refused = client.get("/metrics", headers=auth(key))
    assert refused.status_code == 401 and "admin key" in refused.json()["error"]["message"]


def test_metrics_can_be_public(app: FastAPI) -> None:
    app.state.settings = app.state.settings.model_copy(update={"metrics_public": True})
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 200


def test_the_store_is_counted_at_each_scrape(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, _ = make_tenant(session)
    other, _ = make_tenant(session)  # one open update per tenant
    make_job(session, tenant, status=JobStatus.queued)
    make_job(session, other, status=JobStatus.queued)
    make_job(session, tenant, kind=JobKind.teacher_train, status=JobStatus.running)
    make_adapter_version(session, tenant, status=VersionStatus.active)
    make_adapter_version(session, tenant, status=VersionStatus.rejected)
    skill = make_skill(session, tenant)
    first = make_skill_version(session, skill, status=VersionStatus.active)
    make_skill_version(session, skill, parent=first, status=VersionStatus.active)
    make_skill_version(session, skill, parent=first, status=VersionStatus.rejected)
    session.commit()
    samples = scrape(client, admin_headers)
    assert samples[("seal_jobs", (("kind", "update"), ("status", "queued")))] == 2
    assert samples[("seal_jobs", (("kind", "teacher_train"), ("status", "running")))] == 1
    assert samples[("seal_queue_depth", ())] == 2
    assert samples[("seal_adapter_versions", (("status", "active"),))] == 1
    assert samples[("seal_adapter_versions", (("status", "rejected"),))] == 1
    for status in ("active", "retired", "rejected"):
        assert samples[("seal_skill_versions", (("status", status),))] == 1


def test_finished_jobs_have_their_durations(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    from datetime import timedelta

    tenant, _ = make_tenant(session)
    for seconds in (30, 90):
        job = make_job(session, tenant, status=JobStatus.succeeded)
        job.finished_at = job.created_at + timedelta(seconds=seconds + 5)
        job.started_at = job.created_at + timedelta(seconds=5)
    session.commit()
    samples = scrape(client, admin_headers)
    labels = (("kind", "update"), ("status", "succeeded"))
    assert samples[("seal_job_duration_seconds_count", labels)] == 2
    assert abs(samples[("seal_job_duration_seconds_sum", labels)] - 120) < 0.01


def test_requests_are_counted_by_route_template_and_chats_by_tokens(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    document = make_document(session, tenant)
    session.commit()
    route = (("method", "GET"), ("route", "/v1/documents/{document_id}"), ("status", "200"))
    tokens = ("seal_chat_completion_tokens_total", (("model", "base"),))
    before = scrape(client, admin_headers)
    for _ in range(3):
        assert client.get(f"/v1/documents/{document.id}", headers=auth(key)).status_code == 200
    assert client.get("/no/such/path", headers=auth(key)).status_code == 404
    chat = {"model": "base", "messages": [{"role": "user", "content": "hello there"}]}
    reply = client.post("/v1/chat/completions", json=chat, headers=auth(key))
    assert reply.status_code == 200, reply.text
    written = reply.json()["usage"]["completion_tokens"]
    stream = client.post("/v1/chat/completions", json={**chat, "stream": True}, headers=auth(key))
    assert stream.status_code == 200
    after = scrape(client, admin_headers)

    def grew(key: tuple[str, tuple]) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew(("seal_http_requests_total", route)) == 3
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert grew(("seal_http_requests_total", unmatched)) == 1
    histogram = ("seal_http_request_duration_seconds_count", route[:2])
    assert grew(histogram) == 3
    assert grew(tokens) == 2 * written  # the same reply, streamed and not
    first_token = ("seal_chat_time_to_first_token_seconds_count", (("model", "base"),))
    assert grew(first_token) == 1  # streams only
    assert not any(document.id in name + str(labels) for name, labels in after)


def test_several_processes_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    """What ``seal process api`` sets up for SEAL_API_WORKERS > 1: each process writes its
    own files in PROMETHEUS_MULTIPROC_DIR, and a scrape in any of them adds them all."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = (
        "from service import metrics; "
        "metrics.HTTP_REQUESTS.labels('GET', '/health', '200').inc(5); "
        "metrics.observe_adapter(False, 0.2)"
    )
    for _ in range(2):  # two API processes, one after the other
        subprocess.run([sys.executable, "-c", count], env=env, cwd=ROOT, check=True)
    read = (
        "from service.metrics import _process_registry; "
        "from prometheus_client import generate_latest; "
        "print(generate_latest(_process_registry()).decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", read], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    labels = (("method", "GET"), ("route", "/health"), ("status", "200"))
    assert samples[("seal_http_requests_total", labels)] == 10
    assert samples[("seal_adapter_cache_requests_total", (("result", "miss"),))] == 2
    assert samples[("seal_adapter_load_seconds_count", ())] == 2
