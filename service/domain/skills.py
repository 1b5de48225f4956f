"""A tenant's skills: creating one from examples (and a job that learns it), adding examples
(a new version to learn), deleting one, rolling one back, and the prompt a chat with a skill
sends to the model."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seal.skills.tasks import Demo, SkillTask
from service.artifacts import artifacts, is_remote
from service.domain import quotas
from service.domain.errors import Conflict, InvalidRequest, NotFound
from service.domain.files import remove_after_commit
from service.enqueue import SKILL_TASK, enqueue_after_commit
from service.settings import Settings
from service.store.base import utcnow
from service.store.models import (
    Job,
    Skill,
    SkillExample,
    SkillVersion,
    Tenant,
)
from service.store.repositories import skills as skill_repo

if TYPE_CHECKING:
    from seal.skills.ttt import SkillScale

log = logging.getLogger(__name__)

#: Examples a skill keeps at most: what its jobs train and grade on, and its chats' context.
MAX_SKILL_EXAMPLES = 200
#: A skill needs two different examples: one to learn from while the other is held out.
MIN_SKILL_EXAMPLES = 2

Example = tuple[str, str]
"""An example's input and output, as text."""


def skill_folder(settings: Settings, tenant_id: str, skill_id: str | None = None) -> Path:
    """Where the skill jobs save a tenant's skill versions (one folder per skill, one per
    version in it); without ``skill_id``, the folder of all the tenant's skills."""
    folder = settings.resolved_adapter_dir / "skills" / tenant_id
    return folder / skill_id if skill_id else folder


def skill_scale(settings: Settings) -> SkillScale:
    """The test-time training scale ``SEAL_SKILL_SCALE`` names (its sequence length bounds a
    chat's context too)."""
    # Imported here: the ML core loads torch, which the API leaves until a chat needs it.
    from seal.skills.ttt import SkillScale

    return SkillScale.paper() if settings.skill_scale == "paper" else SkillScale()


@dataclass
class SkillLearning:
    skill: Skill
    job: Job
    """The job that learns the skill's next version (new, enqueued after the commit)."""


def get_skill(session: Session, tenant: Tenant, skill_id: str) -> Skill:
    """One of the tenant's skills; another tenant's is not found, like one that does not exist."""
    skill = skill_repo.get_skill(session, tenant_id=tenant.id, skill_id=skill_id)
    if skill is None:
        raise NotFound(f"skill {skill_id} not found")
    return skill


def _distinct(examples: Sequence[Example]) -> list[Example]:
    return list(dict.fromkeys(examples))


def create_skill(
    session: Session,
    tenant: Tenant,
    *,
    name: str,
    description: str | None,
    examples: Sequence[Example],
    limits: Mapping[str, int] | None = None,
) -> SkillLearning:
    """A new skill with its examples (each once) and the job that learns its first version. A
    conflict when the tenant has a skill of that name (also when two requests make it at
    once). Its job counts against the tenant's ``queued_jobs`` quota (``limits``)."""
    if skill_repo.get_skill_by_name(session, tenant_id=tenant.id, name=name) is not None:
        raise Conflict(_name_taken(name))
    distinct = _distinct(examples)
    if len(distinct) < MIN_SKILL_EXAMPLES:
        raise InvalidRequest(
            f"body.examples: a skill needs at least {MIN_SKILL_EXAMPLES} different examples, "
            f"these are {len(distinct)}"
        )
    try:
        # SQLite's writer holds the write lock since its BEGIN: no one can take the name
        # between the lookup and the insert, so it needs no SAVEPOINT around it
        sqlite = session.get_bind().dialect.name == "sqlite"
        with nullcontext() if sqlite else session.begin_nested():
            skill = skill_repo.create_skill(
                session, tenant_id=tenant.id, name=name, description=description
            )
    except IntegrityError as exc:  # the name was taken by a concurrent request
        raise Conflict(_name_taken(name)) from exc
    skill_repo.add_examples(session, skill=skill, examples=distinct)
    return SkillLearning(skill, _learn(session, skill, limits))


def _name_taken(name: str) -> str:
    return (
        f"a skill named {name!r} already exists: add examples to it "
        "(POST /v1/skills/{skill_id}/examples), or delete it first"
    )


def add_examples(
    session: Session,
    tenant: Tenant,
    skill_id: str,
    examples: Sequence[Example],
    limits: Mapping[str, int] | None = None,
) -> SkillLearning:
    """Add examples to a skill (those it has already are left out) and a job that learns its
    next version from all of them. A conflict, saving nothing, while the skill has a queued
    or running job (it reads the examples it learns from when it starts) or when none of the
    examples is new; 429 past the tenant's ``queued_jobs`` quota (``limits``)."""
    skill = get_skill(session, tenant, skill_id)
    busy = skill_repo.open_skill_job(session, skill_id=skill.id)
    if busy is not None:
        raise _busy(skill, busy)
    distinct = _distinct(examples)
    digests = [skill_repo.example_hash(input=i, output=o) for i, o in distinct]
    known = skill_repo.known_hashes(session, skill_id=skill.id, hashes=digests)
    new = [e for e, digest in zip(distinct, digests, strict=True) if digest not in known]
    if not new:
        raise Conflict(f"skill {skill.name!r} has all of these examples already: nothing to learn")
    count = skill_repo.count_examples(session, skill_id=skill.id)
    if count + len(new) > MAX_SKILL_EXAMPLES:
        raise InvalidRequest(
            f"body.examples: a skill has at most {MAX_SKILL_EXAMPLES} examples; "
            f"{skill.name!r} has {count} and {len(new)} of these are new"
        )
    job = _learn(session, skill, limits)  # first: a concurrent request waits, then is refused
    skill_repo.add_examples(session, skill=skill, examples=new)
    skill.updated_at = utcnow()
    session.flush()
    return SkillLearning(skill, job)


def _busy(skill: Skill, job: Job) -> Conflict:
    return Conflict(
        f"skill {skill.name!r} is being learned by job {job.id} ({job.status}); add examples "
        f"once it has ended (or cancel it: POST /v1/jobs/{job.id}/cancel)"
    )


def _learn(session: Session, skill: Skill, limits: Mapping[str, int] | None) -> Job:
    """A new job that learns the skill, sent to the worker after the commit; a conflict when
    the skill has an open one (a concurrent request made it), 429 past the tenant's
    ``queued_jobs`` quota (``limits``; the request's writes are rolled back with it)."""
    if limits is not None:
        quotas.check_room_for_job(session, limits, skill.tenant_id)
    job, created = skill_repo.create_skill_job(session, skill=skill)
    if not created:
        raise _busy(skill, job)
    enqueue_after_commit(session, SKILL_TASK, job_id=job.id)
    return job


def delete_skill(session: Session, settings: Settings, tenant: Tenant, skill_id: str) -> None:
    """Delete a skill with its examples, versions, configurations and jobs (a worker running
    one stops at its next check). Its folder and its versions' folders go once this is
    committed, those in the adapter folder (one elsewhere is left, and logged)."""
    skill = get_skill(session, tenant, skill_id)
    own = skill_folder(settings, tenant.id, skill.id)
    uris = skill_repo.skill_artifacts(session, skill_id=skill.id)
    folders = [own, *(Path(f) for f in uris if not is_remote(f))]
    skill_repo.delete_skill(session, skill=skill)
    store = artifacts(settings)
    if store.remote:
        store.delete_prefixes_after_commit(session, [f"skills/{tenant.id}/{skill.id}"])
        store.delete_after_commit(session, uris)  # any kept elsewhere
    root = settings.resolved_adapter_dir
    for path in folders:
        if not path.exists() or (path != own and path.is_relative_to(own)):
            continue  # gone, or goes with the skill's folder
        if not (path.resolve().is_relative_to(root) and remove_after_commit(session, path)):
            log.warning("skill %s deleted; its folder %s is left", skill_id, path)


@dataclass(frozen=True)
class SkillPrompt:
    version: SkillVersion
    """The skill's active version: its adapter alone answers."""
    messages: list[dict[str, str]]


def skill_prompt(
    session: Session, settings: Settings, tenant: Tenant, name: str, query: str
) -> SkillPrompt:
    """What a chat with skill ``name`` sends to the model: ``query`` with the skill's newest
    examples that fit the scale's sequence length as its context, for the skill's active
    version. Not found for a name the tenant has no skill of; a conflict while the skill has no
    active version."""
    from seal.skills.ttt import prompt_messages

    skill = skill_repo.get_skill_by_name(session, tenant_id=tenant.id, name=name)
    if skill is None:
        raise NotFound(f"no skill named {name!r}")
    version = skill_repo.active_skill_version(session, skill_id=skill.id)
    if version is None or not version.artifact_uri:
        job = skill_repo.open_skill_job(session, skill_id=skill.id)
        why = f"its job {job.id} is {job.status}" if job else "add examples to learn one"
        raise Conflict(f"skill {name!r} has no active version yet ({why})")
    examples = skill_repo.list_examples(
        session, skill_id=skill.id, newest_first=True, limit=MAX_SKILL_EXAMPLES
    )
    budget = skill_scale(settings).max_seq_len - len(query) - len(skill.description or "")
    context = [Demo(e.input, e.output) for e in _fitting(examples, budget)]
    task = SkillTask(name=skill.name, demos=tuple(context), description=skill.description or "")
    return SkillPrompt(version, prompt_messages(task, context, query))


def _fitting(newest_first: Sequence[SkillExample], budget: int) -> list[SkillExample]:
    """The newest examples whose text fits ``budget``, oldest first (as they were taught).
    Characters stand in for tokens: a token is at least one character (a grid's digit is
    exactly one), so what fits in characters fits in tokens."""
    chosen = []
    for example in newest_first:
        budget -= len(example.input) + len(example.output)
        if budget < 0:
            break
        chosen.append(example)
    return chosen[::-1]
