"""Rows as the API shows them, where that takes more than ``model_validate`` (a version's
parent is shown by its number, a skill with its counts). Used by every route that returns such
a row."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.schemas import AdapterPublic, JobPublic, TeacherPublic
from service.skill_schemas import SkillPublic, SkillVersionPublic
from service.store.models import AdapterVersion, SkillVersion, TeacherVersion
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import learning as learning_repo
from service.store.repositories import skills as skill_repo


def adapter_public(
    session: Session, version: AdapterVersion, parent_number: int | None = None
) -> AdapterPublic:
    if parent_number is None and version.parent_id is not None:
        parent = adapter_repo.get_adapter_version_by_id(session, version_id=version.parent_id)
        parent_number = parent.number if parent else None
    return AdapterPublic(
        version=version.number,
        status=version.status,
        parent=parent_number,
        metrics=version.metrics or {},
        created_at=version.created_at,
        promoted_at=version.promoted_at,
        checksum=version.checksum,
    )


def teacher_public(
    session: Session, version: TeacherVersion, parent_number: int | None = None
) -> TeacherPublic:
    if parent_number is None and version.parent_id is not None:
        parent = learning_repo.get_teacher_version_by_id(session, version_id=version.parent_id)
        parent_number = parent.number if parent else None
    return TeacherPublic(
        version=version.number,
        scope="shared" if version.tenant_id is None else "tenant",
        status=version.status,
        parent=parent_number,
        metrics=version.metrics or {},
        created_at=version.created_at,
    )


def skill_version_public(
    session: Session, version: SkillVersion, parent_number: int | None = None
) -> SkillVersionPublic:
    if parent_number is None and version.parent_id is not None:
        parent = skill_repo.get_skill_version_by_id(session, version_id=version.parent_id)
        parent_number = parent.number if parent else None
    return SkillVersionPublic(
        version=version.number,
        status=version.status,
        parent=parent_number,
        metrics=version.metrics or {},
        config=version.config,
        created_at=version.created_at,
        promoted_at=version.promoted_at,
        checksum=version.checksum,
    )


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
