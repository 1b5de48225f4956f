"""The shipped teacher: registered as the first shared teacher of a new store, checked against
its checksum, and one setting away from the untrained base model."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from seal.lora import WEIGHTS_FILE, checksum, load_adapter
from service.settings import Settings
from service.store.models import VersionStatus
from service.store.repositories import teachers as teacher_repo
from tests.factories import make_teacher_version, make_tenant
from worker.bundled import (
    BUNDLED,
    BUNDLED_TEACHER_DIR,
    bundled_meta,
    fits,
    register_bundled_teacher,
    usable,
    write_bundle,
)
from worker.runtime import Runtime


@pytest.fixture
def bundle(runtime: Runtime, tmp_path: Path) -> Path:
    """A shipped teacher for the tiny model: a trained-looking adapter in bf16."""
    state = {k: v + 0.01 for k, v in runtime.teacher.fresh_state("teacher").items()}
    folder = tmp_path / "default"
    write_bundle(state, runtime.settings, folder, metrics={"heldout": 0.5}, source="a test")
    return folder


def test_a_new_store_gets_the_shipped_teacher_as_shared_version_1(
    session: Session, runtime: Runtime, bundle: Path
) -> None:
    meta = bundled_meta(bundle)
    assert meta is not None and meta["dtype"] == "bfloat16" and fits(runtime.settings, meta) is None
    version = register_bundled_teacher(runtime.settings, runtime.sessions, bundle)
    assert version is not None and version.number == 1 and version.status == VersionStatus.active
    assert version.tenant_id is None and version.checksum == meta["checksum"]
    assert version.metrics == {
        "kind": BUNDLED,
        "heldout": 0.5,
        "trained_as": None,
        "exported_from": "a test",
    }
    # its own copy beside the other teachers, the same weights
    copy = Path(version.artifact_uri or "")
    assert copy.parent == runtime.settings.resolved_adapter_dir / "teachers" / "shared"
    assert checksum(load_adapter(copy, expected_checksum=version.checksum)) == meta["checksum"]
    # every later start finds it registered
    again = register_bundled_teacher(runtime.settings, runtime.sessions, bundle)
    assert again is not None and again.id == version.id
    assert len(teacher_repo.shared_teacher_versions(session)) == 1


def test_an_update_writes_with_it_and_the_setting_brings_back_the_base_teacher(
    session: Session, runtime: Runtime, bundle: Path
) -> None:
    version = register_bundled_teacher(runtime.settings, runtime.sessions, bundle)
    assert version is not None
    tenant, _ = make_tenant(session)
    assert teacher_repo.teacher_in_use(session, tenant_id=tenant.id).id == version.id  # type: ignore[union-attr]
    assert usable(runtime.settings, version) is version
    off = runtime.settings.model_copy(update={"bundled_teacher": False})
    assert usable(off, version) is None  # the untrained base model instead
    assert register_bundled_teacher(off, runtime.sessions, bundle) is None
    trained = make_teacher_version(session)
    assert usable(off, trained) is trained  # a trained version is used either way


def test_a_store_with_shared_teachers_of_its_own_is_left_alone(
    session: Session, runtime: Runtime, bundle: Path
) -> None:
    make_teacher_version(session)
    session.commit()
    assert register_bundled_teacher(runtime.settings, runtime.sessions, bundle) is None
    assert len(teacher_repo.shared_teacher_versions(session)) == 1


def test_a_damaged_shipped_teacher_is_refused(runtime: Runtime, bundle: Path) -> None:
    weights = bundle / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its checksum"):
        register_bundled_teacher(runtime.settings, runtime.sessions, bundle)


def test_a_teacher_of_another_shape_is_not_registered(runtime: Runtime, bundle: Path) -> None:
    other = runtime.settings.model_copy(update={"teacher_lora_rank": 8})
    meta = bundled_meta(bundle)
    assert meta is not None and "its LoRA is r32" in (fits(other, meta) or "")
    assert register_bundled_teacher(other, runtime.sessions, bundle) is None
    elsewhere = runtime.settings.model_copy(update={"teacher_model": "another-model"})
    assert "it was trained on" in (fits(elsewhere, meta) or "")
    assert bundled_meta(bundle.parent / "nothing-here") is None


def test_the_shipped_teacher_matches_its_checksum_and_fits_the_defaults() -> None:
    meta = bundled_meta(BUNDLED_TEACHER_DIR)
    assert meta is not None, f"{BUNDLED_TEACHER_DIR} holds no shipped teacher"
    state = load_adapter(BUNDLED_TEACHER_DIR, expected_checksum=meta["checksum"])
    assert {str(v.dtype) for v in state.values()} == {"torch.bfloat16"}
    assert sum(f.stat().st_size for f in BUNDLED_TEACHER_DIR.iterdir()) <= 25 * 10**6
    assert fits(Settings(_env_file=None), meta) is None  # type: ignore[call-arg]
    assert meta["metrics"]["kind"] == "distilled" and meta["metrics"]["sources"]
    card = (BUNDLED_TEACHER_DIR / "CARD.md").read_text()
    assert meta["checksum"] in card and "seal teacher distill" in card
