from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.settings import Settings
from service.store.models import Tenant, VersionStatus
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import learning as learning_repo
from tests.factories import (
    auth,
    make_adapter_version,
    make_document,
    make_reward,
    make_self_edit,
    make_teacher_version,
    make_tenant,
)


def _three_versions(session: Session, tenant: Tenant) -> None:
    """v1 retired, v2 active (child of v1), v3 rejected (child of v2)."""
    v1 = make_adapter_version(session, tenant, status=VersionStatus.active)
    v2 = make_adapter_version(session, tenant, parent=v1, status=VersionStatus.active)
    make_adapter_version(session, tenant, parent=v2, status=VersionStatus.rejected)


def test_list_adapters(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    _three_versions(session, tenant)
    body = client.get("/v1/adapters", headers=auth(key)).json()
    assert [(a["version"], a["status"], a["parent"]) for a in body] == [
        (3, "rejected", 2),
        (2, "active", 1),
        (1, "retired", None),
    ]
    assert body[1]["promoted_at"] is not None
    assert body[1]["metrics"] == {"probe_accuracy": 0.5}
    assert body[1]["checksum"] == "sha256:abc"
    _other, other_key = make_tenant(session)
    assert client.get("/v1/adapters", headers=auth(other_key)).json() == []


#: The adapter's rollback: the path of its history (one shape for every history) and the path
#: documented first, which keeps answering.
ROLLBACK_PATHS = ("/v1/admin/tenants/{}/adapters/rollback", "/v1/admin/tenants/{}/rollback")


@pytest.mark.parametrize("path", ROLLBACK_PATHS)
def test_rollback_to_an_earlier_version(
    client: TestClient, session: Session, admin_headers: dict[str, str], path: str
) -> None:
    tenant, _key = make_tenant(session)
    _three_versions(session, tenant)
    url = path.format(tenant.id)
    response = client.post(url, json={"version": 1}, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["active"]["version"] == 1
    assert response.json()["active"]["status"] == "active"
    assert response.json()["previous"]["version"] == 2
    session.expire_all()
    statuses = {v.number: v.status for v, _ in adapter_repo.list_adapter_versions(
        session, tenant_id=tenant.id)}  # fmt: skip
    assert statuses == {
        1: VersionStatus.active,
        2: VersionStatus.retired,
        3: VersionStatus.rejected,
    }


def test_rollback_to_base_model(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, _key = make_tenant(session)
    _three_versions(session, tenant)
    response = client.post(
        f"/v1/admin/tenants/{tenant.id}/rollback", json={"version": 0}, headers=admin_headers
    )
    assert response.status_code == 200
    assert response.json() == {"active": None, "previous": response.json()["previous"]}
    assert response.json()["previous"]["version"] == 2
    session.expire_all()
    assert adapter_repo.active_adapter(session, tenant_id=tenant.id) is None


@pytest.mark.parametrize("path", ROLLBACK_PATHS)
def test_rollback_errors(
    client: TestClient, session: Session, admin_headers: dict[str, str], path: str
) -> None:
    tenant, key = make_tenant(session)
    _three_versions(session, tenant)
    make_adapter_version(session, tenant, artifact_uri=None)  # v4, no artifact
    url = path.format(tenant.id)
    rejected = client.post(url, json={"version": 3}, headers=admin_headers)
    assert rejected.status_code == 409
    assert "rejected" in rejected.json()["error"]["message"]
    assert client.post(url, json={"version": 4}, headers=admin_headers).status_code == 410
    assert client.post(url, json={"version": 9}, headers=admin_headers).status_code == 404
    assert client.post(url, json={"version": -1}, headers=admin_headers).status_code == 422
    assert client.post(url, json={"version": 1}, headers=auth(key)).status_code == 401
    unknown = client.post(path.format("nope"), json={"version": 1}, headers=admin_headers)
    assert unknown.status_code == 404
    session.expire_all()
    active = adapter_repo.active_adapter(session, tenant_id=tenant.id)
    assert active is not None and active.number == 2  # unchanged


def test_delete_an_old_versions_weights(
    client: TestClient, session: Session, admin_headers: dict[str, str], settings: Settings
) -> None:
    tenant, key = make_tenant(session)
    folders = [settings.resolved_adapter_dir / tenant.id / f"v{n}" for n in (1, 2)]
    for folder in folders:
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
    v1 = make_adapter_version(session, tenant, artifact_uri=str(folders[0]))
    adapter_repo.promote_version(session, tenant_id=tenant.id, version=v1)
    make_adapter_version(
        session, tenant, parent=v1, artifact_uri=str(folders[1]), status=VersionStatus.active
    )
    session.commit()

    url = f"/v1/admin/tenants/{tenant.id}/adapters"
    response = client.delete(f"{url}/1", headers=admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["status"], body["checksum"]) == (1, "retired", None)
    assert body["folder_removed"] == str(folders[0]) and body["folder_left"] is None
    assert body["metrics"] == {"probe_accuracy": 0.5}  # the record stays
    assert not folders[0].exists() and folders[1].exists()
    listed = {a["version"]: a for a in client.get("/v1/adapters", headers=auth(key)).json()}
    assert listed[1]["checksum"] is None and listed[2]["parent"] == 1
    # weights that are gone cannot be made active again; deleting again changes nothing
    rollback = client.post(
        f"/v1/admin/tenants/{tenant.id}/rollback", json={"version": 1}, headers=admin_headers
    )
    assert rollback.status_code == 410 and "no artifact" in rollback.json()["error"]["message"]
    again = client.delete(f"{url}/1", headers=admin_headers)
    assert again.status_code == 200 and again.json()["folder_removed"] is None

    active = client.delete(f"{url}/2", headers=admin_headers)
    assert active.status_code == 409 and "active" in active.json()["error"]["message"]
    assert folders[1].exists()
    assert client.delete(f"{url}/9", headers=admin_headers).status_code == 404
    assert (
        client.delete("/v1/admin/tenants/nope/adapters/1", headers=admin_headers).status_code == 404
    )
    assert client.delete(f"{url}/2", headers=auth(key)).status_code == 401


def test_weights_outside_the_adapter_directory_are_left_alone(
    client: TestClient, session: Session, admin_headers: dict[str, str], tmp_path: Path
) -> None:
    tenant, _key = make_tenant(session)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    make_adapter_version(session, tenant, artifact_uri=str(outside), status=VersionStatus.retired)
    session.commit()
    response = client.delete(f"/v1/admin/tenants/{tenant.id}/adapters/1", headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["folder_left"] == str(outside) and outside.exists()
    assert response.json()["checksum"] is None


def test_self_edits_and_rewards(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    document = make_document(session, tenant)
    other_document = make_document(session, tenant)
    teacher = make_teacher_version(session)
    version = make_adapter_version(session, tenant, status=VersionStatus.active)
    base_edit = make_self_edit(session, document, format="implications")
    tuned_edit = make_self_edit(session, document, format="self-qa", teacher=teacher, selected=True)
    other_edit = make_self_edit(session, other_document)
    make_reward(session, base_edit, value=0.1, adapter_version=version)
    make_reward(session, tuned_edit, value=0.3)
    make_reward(session, other_edit, value=-0.2)

    edits = client.get(f"/v1/self-edits?document_id={document.id}", headers=auth(key)).json()
    assert [(e["format"], e["teacher_version"], e["selected"]) for e in edits] == [
        ("implications", None, False),
        ("self-qa", 1, True),
    ]
    assert set(edits[0]) == {
        "id", "document_id", "format", "teacher_version", "text", "selected", "created_at"
    }  # fmt: skip
    assert len(client.get("/v1/self-edits", headers=auth(key)).json()) == 3

    everything = client.get("/v1/rewards", headers=auth(key)).json()
    assert everything["summary"]["count"] == 3
    assert abs(everything["summary"]["mean"] - 0.2 / 3) < 1e-9
    first = everything["items"][0]
    assert (first["adapter_version"], first["format"], first["value"]) == (1, "implications", 0.1)

    by_doc = client.get(f"/v1/rewards?document_id={document.id}", headers=auth(key)).json()
    assert (by_doc["summary"]["count"], by_doc["summary"]["mean"]) == (2, 0.2)
    by_format = client.get("/v1/rewards?format=self-qa", headers=auth(key)).json()
    assert [i["self_edit_id"] for i in by_format["items"]] == [tuned_edit.id]
    by_teacher = client.get("/v1/rewards?teacher_version=1", headers=auth(key)).json()
    assert [i["self_edit_id"] for i in by_teacher["items"]] == [tuned_edit.id]
    base_teacher = client.get("/v1/rewards?teacher_version=0", headers=auth(key)).json()
    assert base_teacher["summary"]["count"] == 2
    none = client.get("/v1/rewards?format=rewrite", headers=auth(key)).json()
    assert none == {
        "items": [],
        "summary": {
            "count": 0,
            "mean": None,
            "by_metric": {},
            "by_format": {},
            "by_teacher_version": {},
        },
    }


def test_learning_is_isolated_between_tenants(client: TestClient, session: Session) -> None:
    owner, _ = make_tenant(session)
    _other, other_key = make_tenant(session)
    document = make_document(session, owner)
    make_reward(session, make_self_edit(session, document), value=0.5)
    for url in (
        f"/v1/self-edits?document_id={document.id}",
        f"/v1/rewards?document_id={document.id}",
    ):
        assert client.get(url, headers=auth(other_key)).status_code == 404
    assert client.get("/v1/self-edits", headers=auth(other_key)).json() == []
    assert client.get("/v1/rewards", headers=auth(other_key)).json()["summary"]["count"] == 0


def test_reward_summary_by_metric_format_and_teacher(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    document = make_document(session, tenant)
    teacher = make_teacher_version(session)  # shared v1
    own = make_teacher_version(session, tenant=tenant)  # the tenant's v1
    own2 = make_teacher_version(session, tenant=tenant)  # the tenant's v2
    base_edit = make_self_edit(session, document, format="implications")
    shared_edit = make_self_edit(session, document, format="self-qa", teacher=teacher)
    own_edit = make_self_edit(session, document, format="self-qa", teacher=own2)
    make_reward(session, base_edit, value=0.1)
    make_reward(session, base_edit, value=0.3)
    make_reward(session, shared_edit, value=0.5)
    make_reward(session, own_edit, value=0.7)
    make_reward(session, own_edit, value=1.0, metric="retention_accuracy")
    learning_repo.add_reward(
        session, tenant_id=tenant.id, metric="rating", value=5.0, document_id=document.id
    )
    assert own.number == 1 and own2.number == 2

    def close(groups: dict[str, dict[str, float]]) -> dict[str, tuple[int, float]]:
        return {k: (g["count"], round(g["mean"], 6)) for k, g in groups.items()}

    summary = client.get("/v1/rewards", headers=auth(key)).json()["summary"]
    assert summary["count"] == 6
    assert abs(summary["mean"] - 7.6 / 6) < 1e-9
    assert close(summary["by_metric"]) == {
        "probe_accuracy": (4, 0.4),
        "retention_accuracy": (1, 1.0),
        "rating": (1, 5.0),
    }
    # over the rewards of self-edits only: the rating does not count
    assert close(summary["by_format"]) == {"implications": (2, 0.2), "self-qa": (3, 0.733333)}
    assert close(summary["by_teacher_version"]) == {
        "base": (2, 0.2),
        "1": (1, 0.5),
        "2": (2, 0.85),
    }

    probe = client.get("/v1/rewards?metric=probe_accuracy", headers=auth(key)).json()
    assert {i["metric"] for i in probe["items"]} == {"probe_accuracy"}
    assert close(probe["summary"]["by_teacher_version"]) == {
        "base": (2, 0.2),
        "1": (1, 0.5),
        "2": (1, 0.7),
    }
    assert client.get("/v1/rewards?metric=nope", headers=auth(key)).json()["items"] == []
    too_long = client.get(f"/v1/rewards?metric={'m' * 65}", headers=auth(key))
    assert too_long.status_code == 422

    # another tenant's summary is its own
    _other, other_key = make_tenant(session)
    other = client.get("/v1/rewards", headers=auth(other_key)).json()["summary"]
    assert (other["count"], other["by_metric"], other["by_format"]) == (0, {}, {})
