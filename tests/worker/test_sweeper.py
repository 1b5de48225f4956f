"""The sweeper, on the real store: folders under the adapter folder that nothing owns any more
are removed by the beat's check; what is owned stays."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from sqlalchemy.orm import Session

from service.domain import tenants as tenant_domain
from service.domain.skills import skill_folder
from tests.factories import make_skill, make_tenant
from worker.runtime import Runtime
from worker.schedule import run_schedule
from worker.sweeper import ASIDE_AGE_S, sweep


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    return path


def test_what_nothing_owns_is_swept_and_what_is_owned_stays(
    session: Session, runtime: Runtime
) -> None:
    root = runtime.settings.resolved_adapter_dir
    tenant, _ = make_tenant(session)
    skill = make_skill(session, tenant)
    session.commit()
    gone = str(uuid.uuid4())
    kept = [
        _folder(root / tenant.id / "job-1"),
        _folder(root / "teachers" / tenant.id / "job-2"),
        _folder(root / "teachers" / "shared" / "job-3"),
        _folder(skill_folder(runtime.settings, tenant.id, skill.id) / "v1"),
        _folder(root / "not-a-tenant-id"),
        _folder(root / tenant.id / ".job-4.deleting-0123abcd"),  # just moved aside
    ]
    swept = [
        _folder(root / gone / "job-5"),
        _folder(root / "skills" / gone / str(uuid.uuid4()) / "v1"),
        _folder(root / "teachers" / gone / "job-6"),
        _folder(skill_folder(runtime.settings, tenant.id, str(uuid.uuid4())) / "v1"),
    ]

    report = run_schedule(runtime, lambda task, body: None)

    assert set(report.swept) == {
        str(root / gone),
        str(root / "skills" / gone),
        str(root / "teachers" / gone),
        str(swept[3].parent),
    }
    assert all(p.exists() for p in kept)
    assert not any(p.exists() for p in swept)
    # a folder moved aside long ago (its process died before removing it) goes too
    later = time.time() + ASIDE_AGE_S + 1
    assert sweep(runtime, now=later) == [str(kept[-1])]
    assert not kept[-1].exists() and kept[0].exists()


def test_a_tenant_deleted_while_its_skill_job_saves_leaves_nothing_on_disk(
    session: Session, runtime: Runtime
) -> None:
    tenant, _ = make_tenant(session)
    skill = make_skill(session, tenant)
    session.commit()
    folder = skill_folder(runtime.settings, tenant.id, skill.id)
    tenant_domain.delete_tenant(session, runtime.settings, tenant)
    session.commit()
    _folder(folder / "v1")  # the running job saved its version after the deletion

    sweep(runtime)

    root = runtime.settings.resolved_adapter_dir
    assert not any(tenant.id in str(p) for p in root.rglob("*"))
