import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.settings import Settings
from service.store.models import (
    AdapterVersion,
    ApiKey,
    Document,
    Feedback,
    Job,
    JobStatus,
    ProbeQuestion,
    Reward,
    SelfEdit,
    Skill,
    SkillExample,
    SkillSelfEdit,
    SkillVersion,
    TeacherVersion,
    Tenant,
    VersionStatus,
)
from service.store.repositories import skills as skill_repo
from service.store.repositories import tenants as tenant_repo
from tests.factories import (
    auth,
    count_rows,
    make_adapter_version,
    make_document,
    make_job,
    make_reward,
    make_self_edit,
    make_skill,
    make_skill_version,
    make_teacher_version,
    make_tenant,
)


@pytest.mark.parametrize("path", ["/v1/admin/tenants", "/v1/tenants"])  # the admin's, as documented
def test_create_tenant_returns_a_key_shown_once(
    client: TestClient, session: Session, admin_headers: dict[str, str], path: str
) -> None:
    response = client.post(
        path,
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
    listed = client.get(path, headers=admin_headers).json()
    assert [t["name"] for t in listed] == ["acme"]


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

    # the document alone, a tenant's baseline for its own A/B
    response = client.patch(url, json={"self_edit_format": "passage"}, headers=admin_headers)
    assert response.status_code == 200 and response.json()["self_edit_format"] == "passage"

    response = client.patch(url, json={"self_edit_format": "auto"}, headers=admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "id",
        "name",
        "self_edit_format",
        "update_schedule",
        "memory",
        "quotas",
        "created_at",
    }
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


def _folder(path: Path) -> str:
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    return str(path)


# the kinds of row a tenant owns that the test below checks one by one
OWNED = (
    ApiKey,
    Document,
    Job,
    AdapterVersion,
    TeacherVersion,
    SelfEdit,
    Reward,
    Feedback,
    Skill,
    SkillExample,
    SkillVersion,
    SkillSelfEdit,
)


def _tenant_with_everything(
    client: TestClient, session: Session, root: Path, name: str
) -> tuple[Tenant, str, list[str]]:
    """A tenant with a document (questions, a self-edit and its reward, feedback), a chat,
    two adapter versions, an own teacher version and a skill's version with folders, and a
    running job."""
    tenant, key = make_tenant(session, name=name)
    document = make_document(session, tenant, questions=[("Capital?", "Poseidonia")])
    first = make_adapter_version(
        session, tenant, status=VersionStatus.retired, artifact_uri=_folder(root / tenant.id / "1")
    )
    second = make_adapter_version(
        session,
        tenant,
        parent=first,
        status=VersionStatus.active,
        artifact_uri=_folder(root / tenant.id / "2"),
    )
    make_reward(session, make_self_edit(session, document), value=0.5, adapter_version=second)
    make_teacher_version(
        session,
        tenant=tenant,
        status=VersionStatus.active,
        artifact_uri=_folder(root / "teachers" / tenant.id / "1"),
    )
    make_job(session, tenant, status=JobStatus.running)
    skill = make_skill(session, tenant)
    skill_folder = _folder(root / "skills" / tenant.id / skill.id / "1")
    make_skill_version(session, skill, status=VersionStatus.active, artifact_uri=skill_folder)
    skill_repo.add_skill_self_edit(session, skill=skill, text="{}", config={}, reward=0.5)
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "x", "messages": [{"role": "user", "content": "hello"}]},
        headers=auth(key),
    )
    assert chat.status_code == 200, chat.text
    feedback = client.post(
        "/v1/feedback",
        json={"document_id": document.id, "completion_id": chat.json()["id"], "rating": 1},
        headers=auth(key),
    )
    assert feedback.status_code == 201, feedback.text
    hook = client.post(
        "/v1/webhooks", json={"url": "https://hooks.example.com/"}, headers=auth(key)
    )
    assert (
        client.post(f"/v1/webhooks/{hook.json()['id']}/test", headers=auth(key)).status_code == 202
    )
    return tenant, key, [str(root / tenant.id / "1"), str(root / tenant.id / "2"), skill_folder]


def test_delete_a_tenant_with_everything_of_it(
    client: TestClient, session: Session, admin_headers: dict[str, str], settings: Settings
) -> None:
    root = settings.resolved_adapter_dir
    tenant, key, versions = _tenant_with_everything(client, session, root, "leaving")
    other, other_key, other_versions = _tenant_with_everything(client, session, root, "staying")
    shared = make_teacher_version(session, artifact_uri=_folder(root / "teachers" / "shared" / "1"))
    running = session.scalars(select(Job.id).where(Job.tenant_id == tenant.id)).one()
    session.commit()
    tenant_id, other_id = tenant.id, other.id

    response = client.delete(f"/v1/admin/tenants/{tenant_id}", headers=admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["name"]) == (tenant_id, "leaving")
    assert body["deleted"] == {
        "api_keys": 1,
        "documents": 1,
        "memory_chunks": 1,
        "jobs": 1,
        "job_events": 0,
        "adapter_versions": 2,
        "teacher_versions": 1,
        "self_edits": 1,
        "rewards": 2,  # the self-edit's and the rating's
        "completions": 1,
        "feedback": 1,
        "skills": 1,
        "skill_examples": 2,
        "skill_versions": 1,
        "skill_configs": 1,
        "webhook_endpoints": 1,
        "webhook_deliveries": 1,
    }
    assert body["stopped_jobs"] == [running]
    assert body["folders_left"] == []
    teacher_folder = str(root / "teachers" / tenant_id)
    skills_folder = str(root / "skills" / tenant_id)
    assert set(body["folders_removed"]) == {*versions, str(root / tenant_id), f"{teacher_folder}/1",
                                            teacher_folder, skills_folder}  # fmt: skip
    assert not (root / tenant_id).exists() and not (root / "teachers" / tenant_id).exists()
    assert not Path(skills_folder).exists()

    session.expire_all()
    for model in OWNED:
        assert count_rows(session, model, tenant_id=tenant_id) == 0, model
    assert count_rows(session, ProbeQuestion, tenant_id=tenant_id) == 0
    assert session.get(Tenant, tenant_id) is None
    # its key is refused, its name is free again, and a second delete is a 404
    assert client.get("/v1/documents", headers=auth(key)).status_code == 401
    names = [t["name"] for t in client.get("/v1/tenants", headers=admin_headers).json()]
    assert "leaving" not in names and "staying" in names
    assert client.delete(f"/v1/admin/tenants/{tenant_id}", headers=admin_headers).status_code == 404
    assert (
        client.post("/v1/tenants", json={"name": "leaving"}, headers=admin_headers).status_code
        == 201
    )

    # the other tenant and the shared teacher are untouched, rows and folders
    for model in OWNED:
        assert count_rows(session, model, tenant_id=other_id) >= 1, model
    assert all(Path(folder).is_dir() for folder in other_versions)
    assert (root / "teachers" / other_id / "1").is_dir()
    assert shared.artifact_uri and Path(shared.artifact_uri).is_dir()
    assert session.get(TeacherVersion, shared.id) is not None
    assert client.get("/v1/adapters", headers=auth(other_key)).status_code == 200


def test_delete_tenant_needs_the_admin_key_and_an_existing_tenant(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    assert client.delete(f"/v1/admin/tenants/{tenant.id}", headers=auth(key)).status_code == 401
    assert client.delete(f"/v1/admin/tenants/{tenant.id}").status_code == 401
    missing = client.delete("/v1/admin/tenants/no-such-tenant", headers=admin_headers)
    assert missing.status_code == 404
    assert "no-such-tenant" in missing.json()["error"]["message"]
    assert client.get("/v1/documents", headers=auth(key)).status_code == 200
