"""Rows as the API shows them, where that takes more than ``model_validate`` (a version's
parent is shown by its number, a skill with its counts). Used by every route that returns such
a row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from service.schemas import AdapterPublic, JobPublic, TeacherPublic
from service.skill_schemas import SkillPublic, SkillVersionPublic
from service.store.models import AdapterVersion, SkillVersion, TeacherVersion, VersionMixin
from service.store.repositories import skills as skill_repo

V = TypeVar("V", bound=VersionMixin)
P = TypeVar("P")


def _version_fields(
    session: Session, version: VersionMixin, parent_number: int | None
) -> dict[str, Any]:
    """What every version shows (adapter, skill, teacher): its number, status, parent's
    number, metrics and creation time."""
    if parent_number is None and version.parent_id is not None:
        parent = session.get(type(version), version.parent_id)
        parent_number = parent.number if parent else None
    return {
        "version": version.number,
        "status": version.status,
        "parent": parent_number,
        "metrics": version.metrics or {},
        "created_at": version.created_at,
    }


def adapter_public(
    session: Session, version: AdapterVersion, parent_number: int | None = None
) -> AdapterPublic:
    return AdapterPublic(
        **_version_fields(session, version, parent_number),
        promoted_at=version.promoted_at,
        checksum=version.checksum,
    )


def teacher_public(
    session: Session, version: TeacherVersion, parent_number: int | None = None
) -> TeacherPublic:
    return TeacherPublic(
        **_version_fields(session, version, parent_number),
        scope="shared" if version.tenant_id is None else "tenant",
    )


def skill_version_public(
    session: Session, version: SkillVersion, parent_number: int | None = None
) -> SkillVersionPublic:
    return SkillVersionPublic(
        **_version_fields(session, version, parent_number),
        config=version.config,
        promoted_at=version.promoted_at,
        checksum=version.checksum,
    )


def rolled_back(
    session: Session, versions: tuple[V | None, V | None], present: Callable[[Session, V], P]
) -> dict[str, P | None]:
    """A rollback's answer: the active version now and the one before, each as ``present``
    shows it (None: none)."""
    active, previous = versions
    return {
        "active": present(session, active) if active is not None else None,
        "previous": present(session, previous) if previous is not None else None,
    }


def skill_public(summary: skill_repo.SkillSummary) -> SkillPublic:
    skill, job = summary.skill, summary.open_job
    return SkillPublic(
        id=skill.id,
        name=skill.name,
        description=skill.description,
        examples=summary.examples,
        active_version=summary.active_version,
        job=JobPublic.model_validate(job) if job else None,
        created_at=skill.created_at,
        updated_at=skill.updated_at,
    )
