import hashlib

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.models import ApiKey
from service.store.repositories import tenants as tenant_repo
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


def test_update_tenant_changes_only_the_fields_given(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    created = client.post(
        "/v1/tenants",
        json={"name": "patchy", "self_edit_format": "self-qa", "update_schedule": "0 2 * * *"},
        headers=admin_headers,
    ).json()
    url = f"/v1/admin/tenants/{created['id']}"

    response = client.patch(url, json={"self_edit_format": "auto"}, headers=admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "name", "self_edit_format", "update_schedule", "created_at"}
    assert (body["name"], body["self_edit_format"], body["update_schedule"]) == (
        "patchy",
        "auto",
        "0 2 * * *",
    )

    response = client.patch(url, json={"update_schedule": "*/15 * * * *"}, headers=admin_headers)
    assert (response.json()["self_edit_format"], response.json()["update_schedule"]) == (
        "auto",
        "*/15 * * * *",
    )

    # null resets a field to the default; an empty body changes nothing
    response = client.patch(url, json={"self_edit_format": None}, headers=admin_headers)
    assert (response.json()["self_edit_format"], response.json()["update_schedule"]) == (
        None,
        "*/15 * * * *",
    )
    assert client.patch(url, json={}, headers=admin_headers).json() == response.json()
    response = client.patch(url, json={"update_schedule": None}, headers=admin_headers)
    assert response.json()["update_schedule"] is None

    session.expire_all()
    tenant = tenant_repo.get_tenant(session, tenant_id=created["id"])
    assert tenant is not None
    assert (tenant.self_edit_format, tenant.update_schedule) == (None, None)


def test_update_tenant_errors(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    url = f"/v1/admin/tenants/{tenant.id}"
    cases = [
        ({"self_edit_format": "poetry"}, "body.self_edit_format"),
        ({"update_schedule": "every night"}, "not a valid cron expression"),
        ({"update_schedule": "0 2 * *"}, "cron"),
        ({"name": "renamed"}, "body.name"),
    ]
    for payload, message in cases:
        response = client.patch(url, json=payload, headers=admin_headers)
        assert response.status_code == 422, payload
        assert message in response.json()["error"]["message"], response.json()
    missing = client.patch(
        "/v1/admin/tenants/no-such-tenant", json={"update_schedule": None}, headers=admin_headers
    )
    assert missing.status_code == 404
    assert "no-such-tenant" in missing.json()["error"]["message"]
    for headers in ({}, auth(key)):
        response = client.patch(url, json={"self_edit_format": "rewrite"}, headers=headers)
        assert response.status_code == 401
    session.expire_all()
    assert (tenant.self_edit_format, tenant.update_schedule) == (None, None)


def test_list_and_revoke_keys(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, first = make_tenant(session, name="rotating")
    _other, other_key = make_tenant(session, name="bystander")
    second = client.post(f"/v1/admin/tenants/{tenant.id}/keys", headers=admin_headers).json()

    listed = client.get(f"/v1/admin/tenants/{tenant.id}/keys", headers=admin_headers)
    assert listed.status_code == 200, listed.text
    keys = listed.json()
    assert [k["prefix"] for k in keys] == [first[:12], second["api_key"][:12]]
    assert all(k["revoked_at"] is None and k["tenant_id"] == tenant.id for k in keys)
    assert all("api_key" not in k and "key_hash" not in k for k in keys)
    first_id = keys[0]["id"]

    revoked = client.delete(f"/v1/admin/tenants/{tenant.id}/keys/{first_id}", headers=admin_headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["id"] == first_id
    assert revoked.json()["revoked_at"] is not None
    # the revoked key is refused at once; the tenant's other key and other tenants' keys work
    response = client.get("/v1/documents", headers=auth(first))
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]
    assert client.get("/v1/documents", headers=auth(second["api_key"])).status_code == 200
    assert client.get("/v1/documents", headers=auth(other_key)).status_code == 200

    # revoking again changes nothing, and the list shows which key is revoked
    again = client.delete(f"/v1/admin/tenants/{tenant.id}/keys/{first_id}", headers=admin_headers)
    assert again.status_code == 200
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    states = {
        k["id"]: k["revoked_at"]
        for k in client.get(f"/v1/admin/tenants/{tenant.id}/keys", headers=admin_headers).json()
    }
    assert states == {first_id: revoked.json()["revoked_at"], second["id"]: None}


def test_revoke_key_errors(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    other, _other_key = make_tenant(session)
    other_key_id = client.get(f"/v1/admin/tenants/{other.id}/keys", headers=admin_headers).json()[
        0
    ]["id"]
    # another tenant's key is not found under this tenant, and stays valid
    response = client.delete(
        f"/v1/admin/tenants/{tenant.id}/keys/{other_key_id}", headers=admin_headers
    )
    assert response.status_code == 404
    assert other_key_id in response.json()["error"]["message"]
    assert (
        client.get(f"/v1/admin/tenants/{other.id}/keys", headers=admin_headers).json()[0][
            "revoked_at"
        ]
        is None
    )
    assert (
        client.delete("/v1/admin/tenants/no-such-tenant/keys/x", headers=admin_headers).status_code
        == 404
    )
    assert (
        client.get("/v1/admin/tenants/no-such-tenant/keys", headers=admin_headers).status_code
        == 404
    )
    # a tenant cannot list or revoke keys, not even its own
    key_id = client.get(f"/v1/admin/tenants/{tenant.id}/keys", headers=admin_headers).json()[0][
        "id"
    ]
    assert client.get(f"/v1/admin/tenants/{tenant.id}/keys", headers=auth(key)).status_code == 401
    assert (
        client.delete(f"/v1/admin/tenants/{tenant.id}/keys/{key_id}", headers=auth(key)).status_code
        == 401
    )
    assert client.get("/v1/documents", headers=auth(key)).status_code == 200
