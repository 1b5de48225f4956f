"""The audit log of admin actions and the dashboard's sign-in throttle, on both stores."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.orm import Session

from service import dashboard
from service.routes.dashboard import SIGN_IN_FAILURES_PER_MINUTE
from tests.conftest import ADMIN_KEY
from tests.factories import auth, make_tenant

EXTRA = "second-admin-key-0123456789"


def _sign_in(client: TestClient, key: str) -> int:
    assert client.get("/admin").status_code == 200  # sets the sign-in form's cookie
    token = client.cookies.get(dashboard.LOGIN_COOKIE)
    response = client.post("/admin/login", data={"key": key, "csrf": token}, follow_redirects=False)
    return response.status_code


def _audit(client: TestClient, **params: int) -> dict:
    response = client.get("/v1/admin/audit", params=params, headers=auth(ADMIN_KEY))
    assert response.status_code == 200, response.text
    return response.json()


def test_admin_writes_are_recorded_by_key_name_and_reads_are_not(
    app: FastAPI, session: Session
) -> None:
    app.state.settings = app.state.settings.model_copy(
        update={"admin_extra_keys": SecretStr(EXTRA)}
    )
    _tenant, tenant_key = make_tenant(session)
    session.commit()
    with TestClient(app) as client:
        created = client.post("/v1/tenants", json={"name": "acme"}, headers=auth(ADMIN_KEY))
        tenant_id = created.json()["id"]
        patched = client.patch(
            f"/v1/admin/tenants/{tenant_id}", json={"memory": "weights"}, headers=auth(EXTRA)
        )
        assert patched.status_code == 200
        missing = client.post(
            "/v1/admin/tenants/nope/rollback", json={"version": 1}, headers=auth(EXTRA)
        )
        assert missing.status_code == 404
        client.get("/v1/tenants", headers=auth(ADMIN_KEY))  # a read: not recorded
        # a tenant's key on an admin route is refused, and is no admin's action
        assert (
            client.post("/v1/tenants", json={"name": "x"}, headers=auth(tenant_key)).status_code
            == 401
        )
        log = _audit(client)
    assert log["total"] == 3 and log["limit"] == 50 and log["offset"] == 0
    rows = [(e["actor"], e["method"], e["path"], e["status_code"]) for e in log["items"]]
    assert rows == [
        ("SEAL_ADMIN_EXTRA_KEYS[0]", "POST", "/v1/admin/tenants/nope/rollback", 404),
        ("SEAL_ADMIN_EXTRA_KEYS[0]", "PATCH", f"/v1/admin/tenants/{tenant_id}", 200),
        ("SEAL_ADMIN_KEY", "POST", "/v1/tenants", 201),
    ]
    assert all(EXTRA not in str(e) and ADMIN_KEY not in str(e) for e in log["items"])


def test_the_log_pages_and_refuses_a_tenant(client: TestClient, session: Session) -> None:
    _tenant, tenant_key = make_tenant(session)
    session.commit()
    for n in range(3):
        client.post("/v1/tenants", json={"name": f"t{n}"}, headers=auth(ADMIN_KEY))
    page = _audit(client, limit=2, offset=1)
    assert page["total"] == 3 and len(page["items"]) == 2
    assert client.get("/v1/admin/audit", headers=auth(tenant_key)).status_code == 401
    assert (
        client.get("/v1/admin/audit", params={"limit": 501}, headers=auth(ADMIN_KEY)).status_code
        == 422
    )


def test_failed_sign_ins_are_throttled_but_the_admin_key_still_signs_in(
    client: TestClient,
) -> None:
    statuses = [_sign_in(client, "wrong key") for _ in range(SIGN_IN_FAILURES_PER_MINUTE + 2)]
    assert statuses == [401] * SIGN_IN_FAILURES_PER_MINUTE + [429, 429]
    assert _sign_in(client, ADMIN_KEY) == 303  # never locked out
    attempts = _audit(client, limit=500)["items"]
    assert {e["actor"] for e in attempts} == {"sign-in"}
    assert [e["status_code"] for e in attempts][:3] == [303, 429, 429]
    assert len(attempts) == SIGN_IN_FAILURES_PER_MINUTE + 3
