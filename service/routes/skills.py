"""A tenant's skills: tasks taught from examples, each learned by a job into versions of its
own, and answered in chat as ``"model": "skill:<name>"``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy.orm import Session

from service.deps import CurrentTenant, LimitsDep, SessionDep, SettingsDep
from service.domain import skills as skill_domain
from service.errors import COMMON_ERRORS, WRITE_ERRORS, error_responses
from service.presenters import skill_public, skill_version_public
from service.schemas import JobPublic
from service.skill_schemas import (
    SkillCreate,
    SkillDetail,
    SkillExamplePublic,
    SkillExamplesCreate,
    SkillLearning,
    SkillPublic,
)
from service.store.models import Skill
from service.store.repositories import skills as skill_repo

router = APIRouter(prefix="/v1/skills", tags=["skills"], responses=error_responses(*COMMON_ERRORS))


def _public(session: Session, skill: Skill) -> SkillPublic:
    [summary] = skill_repo.summarize(session, skills=[skill])
    return skill_public(summary)


def _learning(session: Session, learning: skill_domain.SkillLearning) -> SkillLearning:
    return SkillLearning(
        skill=_public(session, learning.skill), job=JobPublic.model_validate(learning.job)
    )


@router.post(
    "",
    response_model=SkillLearning,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, *WRITE_ERRORS),
)
def create_skill(
    body: SkillCreate, session: SessionDep, tenant: CurrentTenant, limits: LimitsDep
) -> SkillLearning:
    """Create a skill from input -> output examples (text, or grids as rows of integers 0-9);
    the job that learns its first version is queued. 409 when the tenant has a skill of that
    name."""
    learning = skill_domain.create_skill(
        session,
        tenant,
        name=body.name,
        description=body.description,
        examples=[(e.input, e.output) for e in body.examples],
        limits=limits,
    )
    return _learning(session, learning)


@router.get("", response_model=list[SkillPublic])
def list_skills(session: SessionDep, tenant: CurrentTenant) -> list[SkillPublic]:
    """The tenant's skills by name, each with its example count, active version and open job."""
    skills = skill_repo.list_skills(session, tenant_id=tenant.id)
    return [skill_public(s) for s in skill_repo.summarize(session, skills=skills)]


@router.get("/{skill_id}", response_model=SkillDetail, responses=error_responses(404))
def get_skill(skill_id: str, session: SessionDep, tenant: CurrentTenant) -> SkillDetail:
    """A skill with its versions, newest first: their status, metrics and the training
    configuration each was trained with."""
    skill = skill_domain.get_skill(session, tenant, skill_id)
    versions = skill_repo.list_skill_versions(session, skill_id=skill.id)
    return SkillDetail(
        **_public(session, skill).model_dump(),
        versions=[skill_version_public(session, v, parent) for v, parent in versions],
    )


@router.delete(
    "/{skill_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(404, *WRITE_ERRORS),
)
def delete_skill(
    skill_id: str, session: SessionDep, tenant: CurrentTenant, settings: SettingsDep
) -> Response:
    """Delete a skill with its examples, versions and their weights, configurations and jobs
    (a worker running one stops at its next check). Its past chats stay, unlinked."""
    skill_domain.delete_skill(session, settings, tenant, skill_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{skill_id}/examples",
    response_model=list[SkillExamplePublic],
    responses=error_responses(404),
)
def list_examples(
    skill_id: str, session: SessionDep, tenant: CurrentTenant
) -> list[SkillExamplePublic]:
    """A skill's examples, oldest first (grids as one line of digits per row)."""
    skill = skill_domain.get_skill(session, tenant, skill_id)
    examples = skill_repo.list_examples(session, skill_id=skill.id)
    return [SkillExamplePublic.model_validate(e) for e in examples]


@router.post(
    "/{skill_id}/examples",
    response_model=SkillLearning,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 409, *WRITE_ERRORS),
)
def add_examples(
    skill_id: str,
    body: SkillExamplesCreate,
    session: SessionDep,
    tenant: CurrentTenant,
    limits: LimitsDep,
) -> SkillLearning:
    """Add examples (those the skill has already are left out) and queue the job that learns
    its next version from all of them. 409, saving nothing, while the skill has a queued or
    running job, or when none of the examples is new."""
    learning = skill_domain.add_examples(
        session, tenant, skill_id, [(e.input, e.output) for e in body.examples], limits
    )
    return _learning(session, learning)
