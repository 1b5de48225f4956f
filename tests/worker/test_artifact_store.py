"""Versions' weights in S3-compatible object storage, against a real server (SeaweedFS,
started by these tests): written whole by the worker, read by another machine through its
cache keyed by checksum, refused when damaged, and deleted with what owns them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from seal.lora import checksum, load_adapter, save_adapter
from seal.serving import AdapterCache
from sealctl.stack import seaweedfs
from service.app import create_app
from service.artifacts import MANIFEST, ArtifactError, ArtifactStore, artifacts
from service.domain import adapters as adapter_domain
from service.domain import tenants as tenant_domain
from service.settings import Settings
from service.store.db import session_scope
from service.store.models import AdapterVersion, Job, JobStatus, VersionStatus
from service.store.repositories import adapters as adapter_repo
from tests.doubles import grade_probes
from tests.factories import auth, make_adapter_version, make_document, make_job, make_tenant
from worker.config import student_spec
from worker.jobs.common import weights
from worker.jobs.lifecycle import artifact_folder, remove_unrecorded_artifacts
from worker.jobs.update import run_update
from worker.runtime import Runtime
from worker.sweeper import sweep

FACT = "Zorblat Industries was founded by Marisol Quenby in 1987."


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as url:
        yield url


def on_s3(settings: Settings, endpoint: str, **update: Any) -> Settings:
    """``settings`` with their weights in a bucket of the test server, under a prefix of
    their own (the bucket is made as ``seal prepare`` makes it)."""
    moved = settings.model_copy(
        update={
            "artifact_url": f"s3://seal-test/{uuid.uuid4().hex[:8]}/versions",
            "s3_endpoint_url": endpoint,
            "s3_region": "us-east-1",
            "s3_access_key_id": "test",
            "s3_secret_access_key": SecretStr("test"),
            **update,
        }
    )
    artifacts(moved).ensure_bucket()
    return moved


def another_machine(settings: Settings, tmp_path: Path) -> Settings:
    """The same store and bucket seen from a machine that shares no folder."""
    return settings.model_copy(update={"data_dir": tmp_path / "elsewhere", "adapter_dir": None})


def objects(store: ArtifactStore, uri_or_key: str) -> list[str]:
    key = uri_or_key.removeprefix(f"s3://{store.bucket}/")
    client = boto3.client(
        "s3",
        endpoint_url=store._client_options["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    found = client.list_objects_v2(Bucket=store.bucket, Prefix=key + "/")
    return sorted(o["Key"].rsplit("/", 1)[-1] for o in found.get("Contents", []))


@pytest.fixture
def s3_runtime(runtime: Runtime, s3_endpoint: str) -> Runtime:
    return Runtime(settings=on_s3(runtime.settings, s3_endpoint), sessions=runtime.sessions)


def saved(runtime: Runtime, name: str) -> tuple[Path, str]:
    """A fresh adapter saved in the runtime's adapter folder, and its checksum."""
    folder = artifact_folder(runtime.settings.resolved_adapter_dir / "t", name)
    state = runtime.student.fresh_state("student")
    return folder, save_adapter(state, student_spec(runtime.settings), folder)


def test_an_update_writes_objects_that_a_machine_sharing_no_folder_reads(
    session: Session,
    s3_runtime: Runtime,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grade_probes(monkeypatch, before=False, self_edits=True, passage=False)
    tenant, _ = make_tenant(session)
    make_document(
        session,
        tenant,
        title="Zorblat Industries",
        text=FACT,
        questions=[("Who founded Zorblat Industries?", "Marisol Quenby")],
    )
    job = make_job(session, tenant)
    session.commit()

    run_update(s3_runtime, job.id)

    session.expire_all()
    assert session.get(Job, job.id).status == JobStatus.succeeded  # type: ignore[union-attr]
    version = session.scalars(select(AdapterVersion).where(AdapterVersion.job_id == job.id)).one()
    store = artifacts(s3_runtime.settings)
    assert version.artifact_uri is not None and version.checksum is not None
    assert version.artifact_uri.startswith(f"s3://seal-test/{store.prefix}/{tenant.id}/")
    assert objects(store, version.artifact_uri) == sorted(
        ["adapter_config.json", "adapter_model.safetensors", "seal.json", MANIFEST]
    )
    # the worker's folder became its cached copy: nothing is left in its adapter folder
    tenant_folder = s3_runtime.settings.resolved_adapter_dir / tenant.id
    assert not tenant_folder.exists() or not any(tenant_folder.iterdir())
    assert (store.cache / version.checksum / "adapter_model.safetensors").is_file()

    elsewhere = another_machine(s3_runtime.settings, tmp_path)
    state = weights(elsewhere, version)  # the next job, on another machine
    assert state is not None and checksum(state) == version.checksum
    cached = artifacts(elsewhere).cache / version.checksum
    assert cached.is_dir()
    # the API's adapter cache reads it the same way (a chat on a third machine)
    third = another_machine(s3_runtime.settings, tmp_path / "third")
    cache = AdapterCache(2, locate=artifacts(third).local)
    assert checksum(cache.get(version.artifact_uri, version.checksum)) == version.checksum


def test_objects_that_are_incomplete_or_do_not_match_their_manifest_are_refused(
    s3_runtime: Runtime, tmp_path: Path
) -> None:
    store = artifacts(s3_runtime.settings)
    folder, digest = saved(s3_runtime, "damaged")
    uri = store.publish(folder, digest)
    reader = artifacts(another_machine(s3_runtime.settings, tmp_path))
    key = uri.removeprefix(f"s3://{store.bucket}/")

    store.client.put_object(
        Bucket=store.bucket, Key=f"{key}/adapter_model.safetensors", Body=b"not the weights"
    )
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        reader.local(uri, digest)
    with pytest.raises(ArtifactError, match="holds other weights"):
        reader.local(uri, "0" * 64)
    store.client.delete_object(Bucket=store.bucket, Key=f"{key}/{MANIFEST}")
    with pytest.raises(ArtifactError, match="no complete version"):
        reader.local(uri, digest)
    # nothing half-downloaded is left to be read later
    assert not reader.cache.exists() or not any(reader.cache.iterdir())


def test_a_version_that_fails_to_be_recorded_leaves_no_objects(s3_runtime: Runtime) -> None:
    store = artifacts(s3_runtime.settings)
    folder, digest = saved(s3_runtime, "unrecorded")
    published: list[str] = []
    with (
        pytest.raises(RuntimeError, match="the commit failed"),
        store.publishing(folder, digest) as uri,
    ):
        published.append(uri)
        assert objects(store, uri)
        raise RuntimeError("the commit failed")
    assert objects(store, published[0]) == []
    assert not folder.exists() and not (store.cache / digest).exists()


def test_deleted_weights_and_tenants_take_their_objects_with_them(
    session: Session, s3_runtime: Runtime, test_sessionmaker: sessionmaker[Session]
) -> None:
    settings = s3_runtime.settings
    store = artifacts(settings)
    tenant, _ = make_tenant(session)
    uris = []
    for number in (1, 2):
        folder = artifact_folder(settings.resolved_adapter_dir / tenant.id, f"v{number}")
        state = s3_runtime.student.fresh_state("student")
        digest = save_adapter(state, student_spec(settings), folder)
        uris.append(store.publish(folder, digest))
        version = make_adapter_version(session, tenant, artifact_uri=uris[-1])
        version.checksum = digest
        adapter_repo.set_version_status(session, version=version, status=VersionStatus.retired)
    session.commit()

    with session_scope(test_sessionmaker) as unit:  # as the API's request commits
        deletion = adapter_domain.delete_weights(unit, settings, unit.merge(tenant), 1)
        assert objects(store, uris[0])  # not before the commit
    assert deletion.folder_removed == uris[0]
    assert objects(store, uris[0]) == [] and objects(store, uris[1])

    with session_scope(test_sessionmaker) as unit:
        tenant_domain.delete_tenant(unit, settings, unit.merge(tenant))
    assert objects(store, uris[1]) == []


def test_the_archive_of_a_version_in_object_storage(
    session: Session, s3_runtime: Runtime, tmp_path: Path, test_sessionmaker: sessionmaker[Session]
) -> None:
    """Exported from an API that shares no folder with the worker; a 503 that says why when
    the objects are gone behind the service's back."""
    settings = s3_runtime.settings
    store = artifacts(settings)
    tenant, key = make_tenant(session)
    folder, digest = saved(s3_runtime, "exported")
    uri = store.publish(folder, digest)
    version = make_adapter_version(session, tenant, artifact_uri=uri)
    version.checksum = digest
    session.commit()
    for machine, status in (("api", 200), ("deleted", 503)):
        if status == 503:
            store.delete(uri)  # behind the service's back; a machine that never cached it
        api = create_app(another_machine(settings, tmp_path / machine))
        api.state.sessionmaker = api.state.read_sessionmaker = test_sessionmaker
        with TestClient(api) as client:
            r = client.get(f"/v1/adapters/{version.number}/archive", headers=auth(key))
        api.state.engine.dispose()
        assert r.status_code == status, r.text
        if status == 200:
            assert r.headers["content-type"] == "application/zip"
        else:
            assert "artifact store" in r.json()["error"]["message"]
            assert r.headers["retry-after"]


def test_a_dead_attempts_objects_and_stale_cached_copies_are_swept(
    session: Session, s3_runtime: Runtime
) -> None:
    settings = s3_runtime.settings
    store = artifacts(settings)
    tenant, _ = make_tenant(session)
    job = make_job(session, tenant)
    session.commit()
    folder = artifact_folder(settings.resolved_adapter_dir / tenant.id, job.id)
    digest = save_adapter(s3_runtime.student.fresh_state("student"), student_spec(settings), folder)
    uri = store.publish(folder, digest)  # then the worker died before recording it

    removed = remove_unrecorded_artifacts(session, settings, job)
    assert Path(uri) in removed
    assert objects(store, uri) == []

    # its cached copy outlives it on this machine until the sweeper's pass
    assert (store.cache / digest).is_dir()
    sweep(s3_runtime, now=10**12)
    assert not (store.cache / digest).exists()


def test_loading_recorded_weights_checks_their_checksum(s3_runtime: Runtime) -> None:
    store = artifacts(s3_runtime.settings)
    folder, digest = saved(s3_runtime, "loaded")
    uri = store.publish(folder, digest)
    assert checksum(load_adapter(store.local(uri, digest), expected_checksum=digest)) == digest


def test_versions_kept_locally_before_object_storage_are_pushed_to_it(
    session: Session,
    runtime: Runtime,
    s3_endpoint: str,
    tmp_path: Path,
    test_sessionmaker: sessionmaker[Session],
) -> None:
    from sealctl.artifacts import push_local_versions

    tenant, _ = make_tenant(session)
    folder, digest = saved(runtime, "local")  # saved while the adapter folder was the store
    version = make_adapter_version(session, tenant, artifact_uri=str(folder))
    version.checksum = digest
    damaged = make_adapter_version(session, tenant, artifact_uri=str(tmp_path / "gone"))
    session.commit()

    s3 = on_s3(runtime.settings, s3_endpoint)
    done = push_local_versions(s3, test_sessionmaker, say=lambda _: None)
    assert len(done.pushed) == 1 and done.left == [f"adapter_versions {damaged.number}: "
                                                   f"{tmp_path / 'gone'} is missing"]  # fmt: skip
    session.expire_all()
    moved = session.get(AdapterVersion, version.id)
    assert moved is not None and moved.artifact_uri is not None
    assert moved.artifact_uri.startswith("s3://seal-test/")
    assert folder.is_dir()  # left where it was
    state = weights(another_machine(s3, tmp_path), moved)
    assert state is not None and checksum(state) == digest
    again = push_local_versions(s3, test_sessionmaker, say=lambda _: None)
    assert again.pushed == []  # nothing local is left to push
