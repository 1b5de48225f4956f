"""Rows as the API shows them, where that takes more than ``model_validate`` (a version's
parent is shown by its number). Used by every route that returns such a row."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.schemas import AdapterPublic, TeacherPublic
from service.store.models import AdapterVersion, TeacherVersion
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import learning as learning_repo


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
