import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.enqueue import TEACHER_ROUND_TASK
from service.store.models import JobKind, JobStatus, Tenant, VersionStatus
from service.store.repositories import jobs as job_repo
from service.store.repositories import teachers as teacher_repo
from tests.factories import auth, make_job, make_teacher_version, make_tenant
from tests.service.test_updates_and_jobs import queued_tasks

ROLLBACK = "/v1/admin/teachers/rollback"


# --- teacher rounds -------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/teachers/rounds", "/v1/teacher/rounds"])
def test_teacher_round_creates_a_job_and_enqueues_it_after_commit(
    client: TestClient, session: Session, broker: redis.Redis, path: str
) -> None:
    tenant, key = make_tenant(session)
    response = client.post(path, headers=auth(key))
    assert response.status_code == 202, response.text
    assert set(response.json()) == {"job_id", "status"}
    job_id = response.json()["job_id"]
    assert response.json()["status"] == "queued"
    assert queued_tasks(broker) == [(TEACHER_ROUND_TASK, {"job_id": job_id})]
    assert TEACHER_ROUND_TASK == "seal.teacher_round"
    job = job_repo.get_job(session, job_id=job_id)
    assert job is not None
    assert (job.kind, job.status, job.tenant_id, job.params) == (
        JobKind.teacher_train,
        JobStatus.queued,
        tenant.id,
        {},
    )


def test_a_teacher_round_is_refused_when_the_teacher_is_external(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    _tenant, key = make_tenant(session)
    client.app.state.settings.teacher_url = "http://teacher.example/v1"  # type: ignore[attr-defined]
    response = client.post("/v1/teacher/rounds", headers=auth(key))
    assert response.status_code == 409, response.text
    assert "external endpoint (SEAL_TEACHER_URL)" in response.json()["error"]["message"]
    assert queued_tasks(broker) == []


def test_open_teacher_round_is_returned_instead_of_a_second(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    _tenant, key = make_tenant(session)
    first = client.post("/v1/teacher/rounds", headers=auth(key)).json()
    second = client.post("/v1/teacher/rounds", headers=auth(key))
    assert second.status_code == 202
    assert second.json()["job_id"] == first["job_id"]
    assert len(queued_tasks(broker)) == 1  # sent once

    job = job_repo.get_job(session, job_id=first["job_id"])
    assert job is not None
    job_repo.start_job(session, job_id=job.id)  # running still counts
    assert client.post("/v1/teacher/rounds", headers=auth(key)).json() == {
        "job_id": job.id,
        "status": "running",
    }
    job_repo.finish_job(session, job_id=job.id, status=JobStatus.succeeded)
    third = client.post("/v1/teacher/rounds", headers=auth(key)).json()
    assert third["job_id"] != job.id
    sent = {(name, kwargs["job_id"]) for name, kwargs in queued_tasks(broker)}
    assert sent == {(TEACHER_ROUND_TASK, job.id), (TEACHER_ROUND_TASK, third["job_id"])}


def test_teacher_round_ignores_updates_and_other_tenants(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    tenant, key = make_tenant(session)
    other, _other_key = make_tenant(session)
    make_job(session, tenant)  # an open update
    foreign = make_job(session, other, kind=JobKind.teacher_train)
    response = client.post("/v1/teacher/rounds", headers=auth(key))
    assert response.status_code == 202
    assert response.json()["job_id"] != foreign.id
    assert queued_tasks(broker) == [(TEACHER_ROUND_TASK, {"job_id": response.json()["job_id"]})]


def test_teacher_endpoints_need_a_tenant_key(
    client: TestClient, broker: redis.Redis, admin_headers: dict[str, str]
) -> None:
    for headers in ({}, auth("seal-not-a-key"), admin_headers):
        assert client.post("/v1/teacher/rounds", headers=headers).status_code == 401
        assert client.get("/v1/teachers", headers=headers).status_code == 401
    assert queued_tasks(broker) == []


# --- listing --------------------------------------------------------------------------------
def _teachers(client: TestClient, key: str) -> list[tuple[str, int, str, int | None, bool]]:
    body = client.get("/v1/teachers", headers=auth(key)).json()
    return [(t["scope"], t["version"], t["status"], t["parent"], t["in_use"]) for t in body]


def test_list_teachers_marks_the_one_in_use(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    other, other_key = make_tenant(session)
    assert client.get("/v1/teachers", headers=auth(key)).json() == []

    shared1 = make_teacher_version(session, status=VersionStatus.active, artifact_uri="/t/s1")
    make_teacher_version(
        session, parent=shared1, artifact_uri="/t/s2", metrics={"examples": 12}
    )  # a candidate
    # no own teacher yet: the shared active one is in use
    assert _teachers(client, key) == [
        ("shared", 2, "candidate", 1, False),
        ("shared", 1, "active", None, True),
    ]
    body = client.get("/v1/teachers", headers=auth(key)).json()
    assert set(body[0]) == {
        "version", "scope", "status", "parent", "metrics", "created_at", "in_use"
    }  # fmt: skip
    assert body[0]["metrics"] == {"examples": 12}

    # the tenant's own active teacher wins; another tenant's never shows
    own = make_teacher_version(
        session, tenant=tenant, parent=shared1, status=VersionStatus.active, artifact_uri="/t/a1"
    )
    make_teacher_version(session, tenant=other, status=VersionStatus.active, artifact_uri="/t/b1")
    assert own.number == 1
    assert _teachers(client, key) == [
        ("tenant", 1, "active", 1, True),
        ("shared", 2, "candidate", 1, False),
        ("shared", 1, "active", None, False),
    ]
    assert _teachers(client, other_key) == [
        ("tenant", 1, "active", None, True),
        ("shared", 2, "candidate", 1, False),
        ("shared", 1, "active", None, False),
    ]


def test_no_active_teacher_means_the_base_teacher(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    make_teacher_version(session, artifact_uri="/t/s1")
    make_teacher_version(session, status=VersionStatus.retired, artifact_uri="/t/s2")
    assert [t["in_use"] for t in client.get("/v1/teachers", headers=auth(key)).json()] == [
        False,
        False,
    ]


# --- rollback -------------------------------------------------------------------------------
def _own_teachers(session: Session, tenant: Tenant) -> None:
    """The tenant's v1 retired, v2 active (child of v1), v3 without an artifact."""
    v1 = make_teacher_version(
        session, tenant=tenant, status=VersionStatus.active, artifact_uri="/t/1"
    )
    make_teacher_version(
        session, tenant=tenant, parent=v1, status=VersionStatus.active, artifact_uri="/t/2"
    )
    make_teacher_version(session, tenant=tenant, artifact_uri=None)


def test_rollback_a_tenants_teacher(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    other, _ = make_tenant(session)
    _own_teachers(session, tenant)
    _own_teachers(session, other)
    shared = make_teacher_version(session, status=VersionStatus.active, artifact_uri="/t/s")

    response = client.post(
        ROLLBACK, json={"version": 1, "tenant_id": tenant.id}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    active, previous = response.json()["active"], response.json()["previous"]
    assert (active["version"], active["scope"], active["status"]) == (1, "tenant", "active")
    assert (previous["version"], previous["status"], previous["parent"]) == (2, "retired", 1)
    assert "in_use" not in active
    session.expire_all()
    assert [(s, v, st, u) for s, v, st, _p, u in _teachers(client, key) if s == "tenant"] == [
        ("tenant", 3, "candidate", False),
        ("tenant", 2, "retired", False),
        ("tenant", 1, "active", True),
    ]
    # another tenant's and the shared teacher are untouched
    other_active = teacher_repo.active_teacher_version(session, tenant_id=other.id)
    assert other_active is not None and other_active.number == 2
    assert teacher_repo.active_teacher_version(session, tenant_id=None) is shared

    # version 0: back to the shared teacher
    response = client.post(
        ROLLBACK, json={"version": 0, "tenant_id": tenant.id}, headers=admin_headers
    )
    assert response.status_code == 200
    assert response.json()["active"] is None
    assert response.json()["previous"]["version"] == 1
    session.expire_all()
    assert teacher_repo.active_teacher_version(session, tenant_id=tenant.id) is None
    in_use = [(s, v) for s, v, _st, _p, u in _teachers(client, key) if u]
    assert in_use == [("shared", shared.number)]


def test_rollback_the_shared_teacher(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, _key = make_tenant(session)
    make_teacher_version(session, tenant=tenant, status=VersionStatus.active, artifact_uri="/t")
    s1 = make_teacher_version(session, status=VersionStatus.active, artifact_uri="/t/s1")
    make_teacher_version(session, parent=s1, status=VersionStatus.active, artifact_uri="/t/s2")

    response = client.post(ROLLBACK, json={"version": 1, "tenant_id": None}, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["active"]["scope"] == "shared"
    assert response.json()["active"]["version"] == 1
    assert response.json()["previous"]["version"] == 2
    session.expire_all()
    assert teacher_repo.active_teacher_version(session, tenant_id=None) is s1
    own = teacher_repo.active_teacher_version(session, tenant_id=tenant.id)
    assert own is not None and own.status == VersionStatus.active  # untouched

    # version 0 without a tenant: the base teacher for everyone without an own one
    response = client.post(ROLLBACK, json={"version": 0}, headers=admin_headers)
    assert response.status_code == 200
    assert response.json() == {"active": None, "previous": response.json()["previous"]}
    assert response.json()["previous"]["version"] == 1
    session.expire_all()
    assert teacher_repo.active_teacher_version(session, tenant_id=None) is None

    # nothing active: version 0 is a no-op
    again = client.post(ROLLBACK, json={"version": 0}, headers=admin_headers)
    assert again.json() == {"active": None, "previous": None}


def test_rollback_teacher_errors(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    other, _ = make_tenant(session)
    _own_teachers(session, tenant)
    make_teacher_version(session, tenant=other, artifact_uri="/t/b")  # other's v1..
    make_teacher_version(session, tenant=other, artifact_uri="/t/b")
    make_teacher_version(session, tenant=other, artifact_uri="/t/b")
    make_teacher_version(session, tenant=other, artifact_uri="/t/b")  # ..v4
    make_teacher_version(session, status=VersionStatus.rejected, artifact_uri="/t/s1")

    def post(payload: object, headers: dict[str, str] = admin_headers) -> tuple[int, str]:
        response = client.post(ROLLBACK, json=payload, headers=headers)
        return response.status_code, response.json()["error"]["message"]

    status, message = post({"version": 3, "tenant_id": tenant.id})
    assert status == 410 and "no artifact" in message
    status, message = post({"version": 4, "tenant_id": tenant.id})  # only the other has v4
    assert status == 404 and "no teacher version 4" in message
    assert post({"version": 2})[0] == 404  # the shared teacher has only v1
    status, message = post({"version": 1})
    assert status == 409 and "rejected" in message
    status, message = post({"version": 1, "tenant_id": "no-such-tenant"})
    assert status == 404 and "no-such-tenant" in message
    for payload in ({"version": -1}, {}, {"version": 1, "colour": "red"}, {"version": "x"}):
        assert post(payload)[0] == 422, payload
    for headers in ({}, auth(key)):
        assert post({"version": 1, "tenant_id": tenant.id}, headers)[0] == 401
    session.expire_all()
    active = teacher_repo.active_teacher_version(session, tenant_id=tenant.id)
    assert active is not None and active.number == 2  # unchanged


def test_a_tenants_teacher_rolls_back_at_the_path_of_its_history(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    """``/v1/admin/tenants/{id}/teachers/rollback`` does what ``/v1/admin/teachers/rollback``
    with the tenant in the body does, under the URL shape of every history."""
    tenant, key = make_tenant(session)
    _own_teachers(session, tenant)
    url = f"/v1/admin/tenants/{tenant.id}/teachers/rollback"
    response = client.post(url, json={"version": 1}, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert (response.json()["active"]["version"], response.json()["previous"]["version"]) == (1, 2)
    session.expire_all()
    active = teacher_repo.active_teacher_version(session, tenant_id=tenant.id)
    assert active is not None and active.number == 1
    wrong = client.post(url, json={"version": 1, "tenant_id": tenant.id}, headers=admin_headers)
    assert wrong.status_code == 422  # the path names the tenant
    missing = client.post(url, json={"version": 9}, headers=admin_headers)
    assert (
        missing.status_code == 404 and "no teacher version 9" in missing.json()["error"]["message"]
    )
    unknown = "/v1/admin/tenants/nope/teachers/rollback"
    assert client.post(unknown, json={"version": 1}, headers=admin_headers).status_code == 404
    assert client.post(url, json={"version": 1}, headers=auth(key)).status_code == 401
