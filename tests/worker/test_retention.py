"""The retention of weights no version uses, on the real store with the tiny model: after an
update, the tenant's rejected versions but the newest ``keep_rejected_weights``, and its
retired ones but the newest ``keep_retired_weights``, lose their weights (the rows stay), and
a rollback to one of them answers 410."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.models import AdapterVersion, Job, JobStatus, VersionStatus
from tests.factories import make_adapter_version, make_document, make_job, make_tenant
from worker.jobs.update import run_update
from worker.runtime import Runtime


def _folder(runtime: Runtime, tenant_id: str, name: str) -> str:
    folder = runtime.settings.resolved_adapter_dir / tenant_id / name
    folder.mkdir(parents=True)
    (folder / "adapter.safetensors").write_bytes(b"weights")
    return str(folder)


def test_an_update_purges_the_weights_past_retention_and_a_rollback_to_them_is_410(
    session: Session, runtime: Runtime, client: TestClient, admin_headers: dict[str, str]
) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={
            "keep_rejected_weights": 2,
            "keep_retired_weights": 1,
            "promotion_min_probe_gain": 100,  # the update's version is rejected too
        }
    )
    tenant, _ = make_tenant(session)
    retired = [
        make_adapter_version(
            session,
            tenant,
            status=VersionStatus.retired,
            artifact_uri=_folder(runtime, tenant.id, f"r{i}"),
        )
        for i in range(2)
    ]
    rejected = [
        make_adapter_version(
            session,
            tenant,
            status=VersionStatus.rejected,
            artifact_uri=_folder(runtime, tenant.id, f"x{i}"),
        )
        for i in range(4)
    ]
    outside = make_adapter_version(
        session, tenant, status=VersionStatus.rejected, artifact_uri="/elsewhere/weights"
    )
    make_document(session, tenant, questions=[("What is the capital of Atlantis?", "Poseidonia")])
    job = make_job(session, tenant, params={"seed": 3})
    session.commit()
    folders = {v.number: v.artifact_uri for v in [*retired, *rejected, outside]}

    run_update(runtime, job.id)

    session.expire_all()
    job = session.get(Job, job.id)
    assert job is not None and job.status == JobStatus.succeeded, job.error
    versions = {
        v.number: v
        for v in session.scalars(
            select(AdapterVersion).where(AdapterVersion.tenant_id == tenant.id)
        )
    }
    newest = max(versions)
    assert versions[newest].status == VersionStatus.rejected and versions[newest].artifact_uri
    # rejected, newest first: the update's own, the outside one, then x3, x2, x1, x0
    kept = {n for n, v in versions.items() if v.artifact_uri}
    assert kept == {newest, outside.number, retired[1].number}
    assert len(versions) == 8  # the rows stay
    for number, folder in folders.items():
        assert folder is not None
        if number in kept or folder == "/elsewhere/weights":
            continue
        assert not Path(folder).exists(), number  # purged folders are gone from disk
        assert versions[number].checksum is None
    assert Path(folders[retired[1].number] or "").exists()

    rollback = client.post(
        f"/v1/admin/tenants/{tenant.id}/rollback",
        json={"version": retired[0].number},
        headers=admin_headers,
    )
    assert rollback.status_code == 410, rollback.text
    assert rollback.json()["error"]["type"] == "gone"
    assert "weights were deleted" in rollback.json()["error"]["message"]
    back = client.post(
        f"/v1/admin/tenants/{tenant.id}/rollback",
        json={"version": retired[1].number},
        headers=admin_headers,
    )
    assert back.status_code == 200, back.text
