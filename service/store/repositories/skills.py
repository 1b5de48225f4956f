"""Skills: their examples (deduplicated per skill), versions with promotion, the configurations
the teacher wrote for them, and their jobs (at most one open per skill)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.store.models import (
    Job,
    JobKind,
    Skill,
    SkillExample,
    SkillSelfEdit,
    SkillVersion,
    VersionStatus,
)
from service.store.repositories.jobs import OPEN_STATUSES, create_job
from service.store.repositories.versions import VersionHistory


def example_hash(*, input: str, output: str) -> str:
    """SHA-256 of an example's input and output, exactly as given (whitespace can be the rule
    a skill is about, so nothing is normalized)."""
    payload = json.dumps([input, output], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# --- skills -------------------------------------------------------------------------------
def create_skill(
    session: Session, *, tenant_id: str, name: str, description: str | None = None
) -> Skill:
    skill = Skill(tenant_id=tenant_id, name=name, description=description)
    session.add(skill)
    session.flush()
    return skill


def get_skill(session: Session, *, tenant_id: str, skill_id: str) -> Skill | None:
    """One of the tenant's skills by id (None for another tenant's)."""
    return session.scalar(select(Skill).where(Skill.id == skill_id, Skill.tenant_id == tenant_id))


def get_skill_by_name(session: Session, *, tenant_id: str, name: str) -> Skill | None:
    return session.scalar(select(Skill).where(Skill.tenant_id == tenant_id, Skill.name == name))


@dataclass(frozen=True)
class SkillSummary:
    """A skill with what its listing shows."""

    skill: Skill
    examples: int
    active_version: int | None
    open_job: Job | None


def summarize(session: Session, *, skills: Sequence[Skill]) -> list[SkillSummary]:
    """Each skill with its example count, active version number and open job (three queries
    for the lot)."""
    ids = [s.id for s in skills]
    if not ids:
        return []
    per_skill = (
        select(SkillExample.skill_id, func.count())
        .where(SkillExample.skill_id.in_(ids))
        .group_by(SkillExample.skill_id)
    )
    counts: dict[str, int] = {skill_id: n for skill_id, n in session.execute(per_skill)}
    active_numbers = select(SkillVersion.skill_id, SkillVersion.number).where(
        SkillVersion.skill_id.in_(ids), SkillVersion.status == VersionStatus.active
    )
    active: dict[str, int] = {skill_id: n for skill_id, n in session.execute(active_numbers)}
    jobs: dict[str, Job] = {}
    open_jobs = select(Job).where(Job.skill_id.in_(ids), Job.status.in_(OPEN_STATUSES))
    for job in session.scalars(open_jobs.order_by(Job.created_at, Job.id)):
        assert job.skill_id is not None
        jobs.setdefault(job.skill_id, job)
    return [SkillSummary(s, counts.get(s.id, 0), active.get(s.id), jobs.get(s.id)) for s in skills]


def list_skills(session: Session, *, tenant_id: str) -> list[Skill]:
    """The tenant's skills, by name."""
    stmt = select(Skill).where(Skill.tenant_id == tenant_id).order_by(Skill.name)
    return list(session.scalars(stmt))


def skill_artifacts(session: Session, *, skill_id: str) -> list[str]:
    """The folders of a skill's versions that have weights."""
    stmt = select(SkillVersion.artifact_uri).where(
        SkillVersion.skill_id == skill_id, SkillVersion.artifact_uri.is_not(None)
    )
    return [uri for uri in session.scalars(stmt) if uri]


def delete_skill(session: Session, *, skill: Skill) -> None:
    """Delete a skill with its examples, versions, configurations and jobs (the store's
    cascades; a completion it answered stays, unlinked)."""
    session.execute(
        delete(Skill).where(Skill.id == skill.id).execution_options(synchronize_session="fetch")
    )


# --- examples -----------------------------------------------------------------------------
def count_examples(session: Session, *, skill_id: str) -> int:
    stmt = select(func.count()).select_from(SkillExample).where(SkillExample.skill_id == skill_id)
    return session.scalar(stmt) or 0


def known_hashes(session: Session, *, skill_id: str, hashes: Sequence[str]) -> set[str]:
    """Which of ``hashes`` the skill's examples already have."""
    if not hashes:
        return set()
    stmt = select(SkillExample.content_hash).where(
        SkillExample.skill_id == skill_id, SkillExample.content_hash.in_(list(hashes))
    )
    return set(session.scalars(stmt))


def add_examples(
    session: Session, *, skill: Skill, examples: Sequence[tuple[str, str]]
) -> list[SkillExample]:
    """Add ``(input, output)`` examples to a skill, each once: those it has, or that repeat
    one before them, are left out. The examples added, in order."""
    hashes = [example_hash(input=i, output=o) for i, o in examples]
    seen = known_hashes(session, skill_id=skill.id, hashes=hashes)
    added = []
    for (input, output), digest in zip(examples, hashes, strict=True):
        if digest in seen:
            continue
        seen.add(digest)
        example = SkillExample(
            tenant_id=skill.tenant_id,
            skill_id=skill.id,
            input=input,
            output=output,
            content_hash=digest,
        )
        session.add(example)
        added.append(example)
    session.flush()
    return added


def list_examples(
    session: Session, *, skill_id: str, newest_first: bool = False, limit: int | None = None
) -> list[SkillExample]:
    """A skill's examples, oldest first (``newest_first``: the other way), at most ``limit``."""
    order = (
        (SkillExample.created_at.desc(), SkillExample.id.desc())
        if newest_first
        else (SkillExample.created_at, SkillExample.id)
    )
    stmt = select(SkillExample).where(SkillExample.skill_id == skill_id).order_by(*order)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


# --- versions (the history's rules: .versions) ---------------------------------------------
SKILL_VERSIONS: VersionHistory[SkillVersion] = VersionHistory(
    SkillVersion, noun="version", owner_noun="skill", events={"promoted": "skill.learned"}
)

next_skill_version_number = SKILL_VERSIONS.next_number
get_skill_version = SKILL_VERSIONS.get
active_skill_version = SKILL_VERSIONS.active
list_skill_versions = SKILL_VERSIONS.listed
set_skill_version_status = SKILL_VERSIONS.set_status
promote_skill_version = SKILL_VERSIONS.promote


def create_skill_version(session: Session, *, skill: Skill, **fields: Any) -> SkillVersion:
    """A new version of the skill (a candidate unless told), numbered after its last."""
    return SKILL_VERSIONS.create(session, tenant_id=skill.tenant_id, skill_id=skill.id, **fields)


def versions_of_skills(
    session: Session, *, skill_ids: Sequence[str]
) -> dict[str, list[tuple[SkillVersion, int | None]]]:
    """Each skill's versions, newest first, each with its parent's number (one query)."""
    stmt = (
        select(SkillVersion)
        .where(SkillVersion.skill_id.in_(skill_ids))
        .order_by(SkillVersion.skill_id, SkillVersion.number.desc())
    )
    out: dict[str, list[tuple[SkillVersion, int | None]]] = {}
    for version, number in SKILL_VERSIONS.with_parents(session, stmt):
        out.setdefault(version.skill_id, []).append((version, number))
    return out


# --- configurations (the skills' self-edits) ----------------------------------------------
def add_skill_self_edit(
    session: Session,
    *,
    skill: Skill,
    text: str,
    config: dict[str, Any] | None,
    error: str | None = None,
    job_id: str | None = None,
    teacher_version_id: str | None = None,
    reward: float | None = None,
    selected: bool = False,
) -> SkillSelfEdit:
    """A configuration the teacher wrote for the skill (``config`` None: it did not parse, and
    ``error`` says why)."""
    self_edit = SkillSelfEdit(
        tenant_id=skill.tenant_id,
        skill_id=skill.id,
        job_id=job_id,
        teacher_version_id=teacher_version_id,
        text=text,
        config=config,
        error=error,
        reward=reward,
        selected=selected,
    )
    session.add(self_edit)
    session.flush()
    return self_edit


def list_skill_self_edits(
    session: Session,
    *,
    tenant_id: str | None,
    skill_id: str | None = None,
    job_id: str | None = None,
    min_reward: float | None = None,
) -> list[SkillSelfEdit]:
    """Configurations, oldest first: a tenant's (None: of every tenant), of one skill or job,
    with a reward above ``min_reward`` (what ReST-EM keeps)."""
    stmt = select(SkillSelfEdit).order_by(SkillSelfEdit.created_at, SkillSelfEdit.id)
    if tenant_id is not None:
        stmt = stmt.where(SkillSelfEdit.tenant_id == tenant_id)
    if skill_id is not None:
        stmt = stmt.where(SkillSelfEdit.skill_id == skill_id)
    if job_id is not None:
        stmt = stmt.where(SkillSelfEdit.job_id == job_id)
    if min_reward is not None:
        stmt = stmt.where(SkillSelfEdit.reward > min_reward)
    return list(session.scalars(stmt))


# --- jobs ---------------------------------------------------------------------------------
def open_skill_job(session: Session, *, skill_id: str) -> Job | None:
    """The skill's queued or running job, if any (there is at most one)."""
    stmt = select(Job).where(
        Job.skill_id == skill_id, Job.kind == JobKind.skill, Job.status.in_(OPEN_STATUSES)
    )
    return session.scalars(stmt.order_by(Job.created_at, Job.id)).first()


def create_skill_job(
    session: Session, *, skill: Skill, params: dict[str, Any] | None = None
) -> tuple[Job, bool]:
    """A queued job that learns the skill, and whether it is new: the skill's open job is
    returned instead of a second one, also when a concurrent insert won the race (the partial
    unique index, caught in a savepoint)."""
    existing = open_skill_job(session, skill_id=skill.id)
    if existing is not None:
        return existing, False
    try:
        with session.begin_nested():
            job = create_job(
                session,
                tenant_id=skill.tenant_id,
                kind=JobKind.skill,
                params=params or {},
                skill_id=skill.id,
            )
    except IntegrityError:
        existing = open_skill_job(session, skill_id=skill.id)
        if existing is None:
            raise
        return existing, False
    return job, True
