"""Teacher versions: the tenants' own and the shared teacher's, one lineage per domain
(documents, skills); their history's rules are those of every version (:mod:`.versions`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.models import TeacherDomain, TeacherVersion
from service.store.repositories.versions import VersionHistory

#: Teacher versions (the history's rules: .versions), owned by a tenant or, with
#: ``tenant_id=None``, the shared teacher, one lineage per domain (documents by default).
TEACHERS: VersionHistory[TeacherVersion] = VersionHistory(
    TeacherVersion,
    noun="teacher version",
    owner_noun="owner",
    defaults={"domain": TeacherDomain.documents},
)

next_teacher_number = TEACHERS.next_number
create_teacher_version = TEACHERS.create
active_teacher_version = TEACHERS.active
get_teacher_version = TEACHERS.get
promote_teacher_version = TEACHERS.promote


def shared_teacher_versions(
    session: Session, *, domain: TeacherDomain = TeacherDomain.documents
) -> list[TeacherVersion]:
    """Every version of the shared teacher of ``domain``, oldest first."""
    stmt = select(TeacherVersion).where(TEACHERS.where_owner(tenant_id=None, domain=domain))
    return list(session.scalars(stmt.order_by(TeacherVersion.number)))


def list_teacher_versions(
    session: Session, *, tenant_id: str
) -> list[tuple[TeacherVersion, int | None]]:
    """The tenant's own teacher versions of documents and the shared ones, newest first, each
    with its parent's number. Never another tenant's."""
    stmt = (
        select(TeacherVersion)
        .where(TeacherVersion.tenant_id.is_(None) | (TeacherVersion.tenant_id == tenant_id))
        .where(TeacherVersion.domain == TeacherDomain.documents)
        .order_by(TeacherVersion.created_at.desc(), TeacherVersion.number.desc())
    )
    return TEACHERS.with_parents(session, stmt)


def teacher_versions_trained_on(
    session: Session, *, tenant_id: str, self_edit_ids: Sequence[str]
) -> list[TeacherVersion]:
    """The tenant's own teacher versions that were fine-tuned on any of ``self_edit_ids`` (a
    round records the ids it trained on), and every version trained from one of them; oldest
    first."""
    versions = session.scalars(
        select(TeacherVersion)
        .where(TEACHERS.where_owner(tenant_id=tenant_id))
        .order_by(TeacherVersion.number)
    ).all()
    wanted = set(self_edit_ids)
    holding: set[str] = set()
    for version in versions:  # a parent's number is lower than its child's
        trained = wanted & set((version.metrics or {}).get("self_edit_ids") or [])
        if trained or version.parent_id in holding:
            holding.add(version.id)
    return [v for v in versions if v.id in holding]


def teacher_in_use(
    session: Session, *, tenant_id: str, domain: TeacherDomain = TeacherDomain.documents
) -> TeacherVersion | None:
    """The teacher a tenant's jobs of ``domain`` use (its updates: documents; its skill jobs:
    skills): its own active version, else the shared active one; None: the untrained base
    teacher."""
    return TEACHERS.active(session, tenant_id=tenant_id, domain=domain) or TEACHERS.active(
        session, tenant_id=None, domain=domain
    )
