from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.domain.errors import JobFinished
from service.enqueue import UPDATE_TASK, enqueue_after_commit
from service.store.db import make_sessionmaker, session_scope
from service.store.models import DocumentStatus, Job, JobKind, JobStatus, Tenant, VersionStatus
from service.store.repositories import jobs as job_repo
from tests.factories import (
    auth,
    make_adapter_version,
    make_document,
    make_job,
    make_tenant,
    queued_tasks,
    second_waits,
)


def test_update_creates_a_job_and_enqueues_it_after_commit(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    tenant, key = make_tenant(session)
    make_document(session, tenant)
    response = client.post("/v1/updates", headers=auth(key))
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert response.json()["status"] == "queued"
    assert queued_tasks(broker) == [(UPDATE_TASK, {"job_id": job_id})]
    job = job_repo.get_job(session, job_id=job_id)
    assert job is not None
    assert (job.kind, job.status, job.tenant_id) == (JobKind.update, JobStatus.queued, tenant.id)


def test_open_update_is_returned_instead_of_a_second(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    tenant, key = make_tenant(session)
    make_document(session, tenant)
    first = client.post("/v1/updates", headers=auth(key)).json()
    second = client.post("/v1/updates", headers=auth(key))
    assert second.status_code == 202
    assert second.json()["job_id"] == first["job_id"]
    assert len(queued_tasks(broker)) == 1  # sent once


def test_update_without_pending_documents_is_a_conflict(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    _tenant, key = make_tenant(session)
    response = client.post("/v1/updates", headers=auth(key))
    assert response.status_code == 409
    assert "no pending documents" in response.json()["error"]["message"]
    assert queued_tasks(broker) == []


def test_tasks_are_sent_after_commit_and_dropped_on_rollback(
    app: Any, test_sessionmaker: Any, task_sender: Any, broker: redis.Redis
) -> None:
    from service.deps import get_session

    class FakeRequest:  # what get_session reads of a request
        method = "POST"

        def __init__(self) -> None:
            self.app = app

    order: list[str] = []

    class OrderedSender:
        def send(self, name: str, kwargs: dict[str, Any]) -> None:
            order.append("send")
            task_sender.send(name, kwargs)

    # success: commit first, then send
    gen = get_session(FakeRequest(), OrderedSender())  # type: ignore[arg-type]
    session = next(gen)
    event.listen(session, "after_commit", lambda _s: order.append("commit"))
    enqueue_after_commit(session, UPDATE_TASK, job_id="job-1")
    assert queued_tasks(broker) == []  # nothing before the commit
    with pytest.raises(StopIteration):
        next(gen)
    assert order == ["commit", "send"]
    assert queued_tasks(broker) == [(UPDATE_TASK, {"job_id": "job-1"})]

    # failure: rolled back, nothing sent
    gen = get_session(FakeRequest(), OrderedSender())  # type: ignore[arg-type]
    session = next(gen)
    enqueue_after_commit(session, UPDATE_TASK, job_id="job-2")
    with pytest.raises(RuntimeError):
        gen.throw(RuntimeError("the route failed"))
    assert queued_tasks(broker) == [(UPDATE_TASK, {"job_id": "job-1"})]


def test_one_open_update_per_tenant_is_enforced_by_the_database(session: Session) -> None:
    tenant, _key = make_tenant(session)
    make_job(session, tenant)
    with pytest.raises(IntegrityError), session.begin_nested():
        make_job(session, tenant, status=JobStatus.running)
    # finished ones and other kinds do not count
    make_job(session, tenant, status=JobStatus.succeeded)
    make_job(session, tenant, kind=JobKind.teacher_train)


def test_create_update_job_survives_losing_the_race(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _key = make_tenant(session)
    winner = make_job(session, tenant)
    real = job_repo.get_open_update_job
    calls = iter([None])  # the first look misses the concurrent insert

    def racing_lookup(session: Session, *, tenant_id: str) -> Job | None:
        return next(calls, None) or real(session, tenant_id=tenant_id)

    monkeypatch.setattr(job_repo, "get_open_update_job", racing_lookup)
    job, created = job_repo.create_update_job(session, tenant_id=tenant.id)
    assert (job.id, created) == (winner.id, False)


def test_list_get_and_cancel_jobs(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    old = make_job(session, tenant, status=JobStatus.succeeded)
    new = make_job(session, tenant)
    page = client.get("/v1/jobs", headers=auth(key)).json()
    assert page["total"] == 2
    assert [j["id"] for j in page["items"]] == [new.id, old.id]  # newest first

    body = client.get(f"/v1/jobs/{new.id}", headers=auth(key)).json()
    assert set(body) == {
        "id", "kind", "status", "progress", "message", "params", "result", "error",
        "error_code", "created_at", "started_at", "finished_at", "attempts", "heartbeat_at",
        "skill_id",
    }  # fmt: skip
    assert body["status"] == "queued"

    cancelled = client.post(f"/v1/jobs/{new.id}/cancel", headers=auth(key))
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert job_repo.is_cancelled(session, job_id=new.id)

    again = client.post(f"/v1/jobs/{new.id}/cancel", headers=auth(key))
    assert again.status_code == 409
    assert "already cancelled" in again.json()["error"]["message"]
    assert client.post(f"/v1/jobs/{old.id}/cancel", headers=auth(key)).status_code == 409


def test_jobs_are_isolated_between_tenants(client: TestClient, session: Session) -> None:
    owner, _ = make_tenant(session)
    _other, other_key = make_tenant(session)
    job = make_job(session, owner)
    assert client.get(f"/v1/jobs/{job.id}", headers=auth(other_key)).status_code == 404
    assert client.post(f"/v1/jobs/{job.id}/cancel", headers=auth(other_key)).status_code == 404
    assert client.get("/v1/jobs", headers=auth(other_key)).json()["total"] == 0


def test_an_update_records_its_mode(client, session, broker) -> None:  # type: ignore[no-untyped-def]
    tenant, key = make_tenant(session)
    make_document(session, tenant)
    session.commit()

    bad = client.post("/v1/updates", json={"mode": "nightly"}, headers=auth(key))
    assert bad.status_code == 422 and "mode" in bad.json()["error"]["message"]

    accepted = client.post("/v1/updates", json={"mode": "batch"}, headers=auth(key))
    assert accepted.status_code == 202
    job = client.get(f"/v1/jobs/{accepted.json()['job_id']}", headers=auth(key)).json()
    assert job["params"] == {"mode": "batch"}


def test_an_update_records_its_seed(client, session, broker) -> None:  # type: ignore[no-untyped-def]
    tenant, key = make_tenant(session)
    make_document(session, tenant)
    session.commit()

    bad = client.post("/v1/updates", json={"seed": -1}, headers=auth(key))
    assert bad.status_code == 422 and "seed" in bad.json()["error"]["message"]

    accepted = client.post("/v1/updates", json={"seed": 1234}, headers=auth(key))
    assert accepted.status_code == 202
    job = client.get(f"/v1/jobs/{accepted.json()['job_id']}", headers=auth(key)).json()
    assert job["params"] == {"mode": "select", "seed": 1234}


def test_a_rebuild_needs_no_pending_documents_and_is_one_job(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    tenant, key = make_tenant(session)
    make_document(session, tenant, status=DocumentStatus.learned)
    session.commit()
    first = client.post("/v1/updates", json={"mode": "rebuild", "seed": 7}, headers=auth(key))
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]
    assert queued_tasks(broker) == [(UPDATE_TASK, {"job_id": job_id})]
    job = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert job["kind"] == "update" and job["params"] == {"mode": "rebuild", "seed": 7}
    # asked again while it is open: the same job, sent once
    again = client.post("/v1/updates", json={"mode": "rebuild"}, headers=auth(key))
    assert again.status_code == 202 and again.json()["job_id"] == job_id
    assert len(queued_tasks(broker)) == 1


def test_a_rebuild_waits_for_an_open_update_of_another_mode(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    tenant, key = make_tenant(session)
    make_document(session, tenant, status=DocumentStatus.learned)
    running = make_job(session, tenant, status=JobStatus.running, params={"mode": "select"})
    session.commit()
    response = client.post("/v1/updates", json={"mode": "rebuild"}, headers=auth(key))
    assert response.status_code == 409
    message = response.json()["error"]["message"]
    assert running.id in message and "(select) is running" in message
    assert f"/v1/jobs/{running.id}/cancel" in message
    assert queued_tasks(broker) == []


def test_a_rebuild_with_nothing_learned_and_no_adapter_is_a_conflict(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    tenant, key = make_tenant(session)
    make_document(session, tenant)  # pending only
    session.commit()
    response = client.post("/v1/updates", json={"mode": "rebuild"}, headers=auth(key))
    assert response.status_code == 409
    assert "nothing to rebuild" in response.json()["error"]["message"]
    assert queued_tasks(broker) == []
    # with an adapter (its documents all deleted since), the rebuild retires it
    make_adapter_version(session, tenant, status=VersionStatus.active)
    session.commit()
    response = client.post("/v1/updates", json={"mode": "rebuild"}, headers=auth(key))
    assert response.status_code == 202, response.text


def test_a_job_being_finished_is_finished_or_cancelled_never_both(engine: Engine) -> None:
    """Two real transactions, committed, on each backend: a worker recording its job's end
    (the row held first, as ``worker.update`` does) and a cancel."""
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        tenant, _key = make_tenant(session)
        tenant_id = tenant.id
        loaded = make_job(session, tenant, status=JobStatus.running)
        job_id = loaded.id

    def cancel() -> str:
        with session_scope(factory) as session:
            # the job as the API loaded it; the cancel's UPDATE is the transaction's first
            # statement (on SQLite a read first could not wait for the worker's write lock)
            job = session.merge(loaded, load=False)
            try:
                job_repo.cancel_job(session, job=job)
                return "cancelled"
            except JobFinished as exc:
                return str(exc)

    def hold(worker: Session) -> None:
        assert job_repo.hold_running_job(worker, job_id=job_id, message="recording")

    def finish(worker: Session) -> None:
        job_repo.finish_job(worker, job_id=job_id, status=JobStatus.succeeded)

    try:
        outcome = second_waits(factory, hold, cancel, then=finish)
        assert outcome == f"job {job_id} is already succeeded"
        with session_scope(factory) as session:
            assert session.get(Job, job_id).status == JobStatus.succeeded  # type: ignore[union-attr]
            # a cancelled job is not held: its worker stops instead of recording
            job = make_job(session, session.get(Tenant, tenant_id), status=JobStatus.running)  # type: ignore[arg-type]
            job_repo.cancel_job(session, job=job)
            assert not job_repo.hold_running_job(session, job_id=job.id, message="recording")
    finally:
        with session_scope(factory) as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))
