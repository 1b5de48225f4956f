import hashlib

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.models import ApiKey
from tests.factories import auth, make_tenant


def test_create_tenant_returns_a_key_shown_once(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/v1/tenants",
        json={"name": "acme", "self_edit_format": "self-qa", "update_schedule": "0 2 * * *"},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "acme"
    assert body["api_key"].startswith("seal-")
    stored = session.scalars(select(ApiKey).where(ApiKey.tenant_id == body["id"])).one()
    assert stored.key_hash == hashlib.sha256(body["api_key"].encode()).hexdigest()
    assert stored.prefix == body["api_key"][:12]
    # the key works
    assert client.get("/v1/documents", headers=auth(body["api_key"])).status_code == 200


def test_duplicate_tenant_name_is_a_conflict(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert (
        client.post("/v1/tenants", json={"name": "dup"}, headers=admin_headers).status_code == 201
    )
    response = client.post("/v1/tenants", json={"name": "dup"}, headers=admin_headers)
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "conflict"
    assert "dup" in response.json()["error"]["message"]


def test_tenant_validation_names_the_field(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/v1/tenants", json={"name": "x", "self_edit_format": "poetry"}, headers=admin_headers
    )
    assert response.status_code == 422
    assert "body.self_edit_format" in response.json()["error"]["message"]
    response = client.post(
        "/v1/tenants", json={"name": "x", "update_schedule": "every night"}, headers=admin_headers
    )
    assert response.status_code == 422
    assert "cron" in response.json()["error"]["message"]
    response = client.post("/v1/tenants", json={}, headers=admin_headers)
    assert response.status_code == 422
    assert "body.name" in response.json()["error"]["message"]


def test_admin_endpoints_need_the_admin_key(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    for headers in ({}, auth("wrong"), auth(key)):
        response = client.post("/v1/tenants", json={"name": "nope"}, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in client.get("/v1/tenants").json()["error"]["message"]


def test_list_tenants_and_make_a_new_key(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, _key = make_tenant(session, name="listed")
    names = [t["name"] for t in client.get("/v1/tenants", headers=admin_headers).json()]
    assert "listed" in names

    response = client.post(f"/v1/admin/tenants/{tenant.id}/keys", headers=admin_headers)
    assert response.status_code == 201
    new_key = response.json()["api_key"]
    assert response.json()["tenant_id"] == tenant.id
    assert client.get("/v1/jobs", headers=auth(new_key)).status_code == 200

    missing = client.post("/v1/admin/tenants/no-such-tenant/keys", headers=admin_headers)
    assert missing.status_code == 404


def test_tenant_key_must_be_valid(client: TestClient) -> None:
    response = client.get("/v1/documents", headers=auth("seal-not-a-key"))
    assert response.status_code == 401
    assert "invalid" in response.json()["error"]["message"]
    response = client.get("/v1/documents", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401
