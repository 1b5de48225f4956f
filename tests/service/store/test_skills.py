"""The skill repository the API and the worker use, against the real database: examples once
per skill, versions and their promotion, one open job per skill, the deletion's cascades, the
skills' configurations, and the teacher of skills as a lineage of its own."""

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.store.models import (
    Completion,
    Job,
    JobKind,
    JobStatus,
    SkillExample,
    SkillSelfEdit,
    SkillVersion,
    TeacherDomain,
    VersionStatus,
)
from service.store.repositories import feedback as feedback_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import skills as skill_repo
from service.store.repositories import teachers as teacher_repo
from tests.factories import (
    count_rows,
    make_job,
    make_skill,
    make_skill_version,
    make_teacher_version,
    make_tenant,
)


def test_an_example_is_stored_once_per_skill(session: Session) -> None:
    tenant, _ = make_tenant(session)
    skill = make_skill(session, tenant, examples=[("a", "b")])
    other = make_skill(session, tenant, examples=[("a", "b")])  # another skill may have it
    added = skill_repo.add_examples(
        session, skill=skill, examples=[("a", "b"), ("a ", "b"), ("a ", "b"), ("b", "a")]
    )
    assert [(e.input, e.output) for e in added] == [("a ", "b"), ("b", "a")]  # exact text
    assert skill_repo.count_examples(session, skill_id=skill.id) == 3
    assert skill_repo.count_examples(session, skill_id=other.id) == 1
    newest = skill_repo.list_examples(session, skill_id=skill.id, newest_first=True, limit=2)
    assert [e.input for e in newest] == ["b", "a "]
    with pytest.raises(IntegrityError), session.begin_nested():
        digest = skill_repo.example_hash(input="a", output="b")
        session.add(
            SkillExample(
                tenant_id=tenant.id, skill_id=skill.id, input="a", output="b", content_hash=digest
            )
        )
        session.flush()


def test_skill_versions_numbers_and_promotion(session: Session) -> None:
    tenant, _ = make_tenant(session)
    skill, other = make_skill(session, tenant), make_skill(session, tenant)
    assert skill_repo.active_skill_version(session, skill_id=skill.id) is None
    v1 = skill_repo.create_skill_version(session, skill=skill, parent_id=None, artifact_uri="/s/1")
    v2 = skill_repo.create_skill_version(
        session, skill=skill, parent_id=v1.id, config={"x": 1}, artifact_uri="/s/2"
    )
    assert (v1.number, v2.number, v2.status, v2.config) == (1, 2, VersionStatus.candidate, {"x": 1})
    assert skill_repo.create_skill_version(session, skill=other, parent_id=None).number == 1
    assert skill_repo.promote_skill_version(session, skill_id=skill.id, version=v1) is None
    assert skill_repo.promote_skill_version(session, skill_id=skill.id, version=v2) is v1
    assert (v1.status, v2.status) == (VersionStatus.retired, VersionStatus.active)
    assert v2.promoted_at is not None
    assert [
        (v.number, p) for v, p in skill_repo.list_skill_versions(session, skill_id=skill.id)
    ] == [
        (2, 1),
        (1, None),
    ]
    assert skill_repo.promote_skill_version(session, skill_id=skill.id, version=None) is v2
    assert skill_repo.active_skill_version(session, skill_id=skill.id) is None
    with pytest.raises(ValueError, match="another skill"):
        skill_repo.promote_skill_version(session, skill_id=other.id, version=v1)
    with pytest.raises(ValueError, match="candidate"):
        skill_repo.create_skill_version(
            session, skill=skill, parent_id=None, status=VersionStatus.active
        )


def test_one_active_version_per_skill_is_enforced_by_the_database(session: Session) -> None:
    tenant, _ = make_tenant(session)
    skill = make_skill(session, tenant)
    make_skill_version(session, skill, status=VersionStatus.active)
    make_skill_version(session, make_skill(session, tenant), status=VersionStatus.active)
    v2 = make_skill_version(session, skill)
    with pytest.raises(IntegrityError), session.begin_nested():
        v2.status = VersionStatus.active
        session.flush()


def test_one_open_job_per_skill(session: Session) -> None:
    tenant, _ = make_tenant(session)
    skill, other = make_skill(session, tenant), make_skill(session, tenant)
    job, created = skill_repo.create_skill_job(session, skill=skill)
    assert created and (job.kind, job.status, job.skill_id) == (
        JobKind.skill, JobStatus.queued, skill.id,
    )  # fmt: skip
    assert skill_repo.create_skill_job(session, skill=skill) == (job, False)
    assert skill_repo.create_skill_job(session, skill=other)[1]  # another skill: its own job
    make_job(session, tenant, status=JobStatus.queued)  # an update beside them
    with pytest.raises(IntegrityError), session.begin_nested():
        job_repo.create_job(session, tenant_id=tenant.id, kind=JobKind.skill, skill_id=skill.id)
    job_repo.finish_job(session, job_id=job.id, status=JobStatus.succeeded)
    assert skill_repo.open_skill_job(session, skill_id=skill.id) is None
    again, created = skill_repo.create_skill_job(session, skill=skill)
    assert created and again.id != job.id


def test_summaries_of_skills(session: Session) -> None:
    tenant, _ = make_tenant(session)
    learned = make_skill(session, tenant, name="b-learned", examples=[("1", "2"), ("3", "4")])
    make_skill_version(session, learned, status=VersionStatus.active)
    learning = make_skill(session, tenant, name="a-learning", examples=[("x", "y")])
    job, _ = skill_repo.create_skill_job(session, skill=learning)
    make_skill(session, make_tenant(session)[0], name="elsewhere")
    skills = skill_repo.list_skills(session, tenant_id=tenant.id)
    summaries = skill_repo.summarize(session, skills=skills)
    assert [(s.skill.name, s.examples, s.active_version, s.open_job) for s in summaries] == [
        ("a-learning", 1, None, job),
        ("b-learned", 2, 1, None),
    ]
    assert skill_repo.summarize(session, skills=[]) == []


def test_deleting_a_skill_takes_its_rows_and_unlinks_its_chats(session: Session) -> None:
    tenant, _ = make_tenant(session)
    skill, kept = make_skill(session, tenant), make_skill(session, tenant)
    version = make_skill_version(session, skill, status=VersionStatus.active)
    make_skill_version(session, skill, artifact_uri=None)
    make_skill_version(session, kept)
    skill_repo.add_skill_self_edit(session, skill=skill, text="{}", config=None, error="bad")
    job, _ = skill_repo.create_skill_job(session, skill=skill)
    completion = feedback_repo.create_completion(
        session,
        tenant_id=tenant.id,
        model=f"skill:{skill.name}",
        adapter_version_id=None,
        skill_version_id=version.id,
        messages=[],
        output="x",
        prompt_tokens=1,
        completion_tokens=1,
    )
    skill_id, job_id, completion_id = skill.id, job.id, completion.id
    assert skill_repo.skill_artifacts(session, skill_id=skill_id) == ["/adapters/skill"]
    skill_repo.delete_skill(session, skill=skill)
    session.expire_all()
    for model in (SkillExample, SkillVersion, SkillSelfEdit, Job):
        assert count_rows(session, model, skill_id=skill_id) == 0, model
    assert session.get(Job, job_id) is None
    unlinked = session.get(Completion, completion_id)
    assert unlinked is not None and unlinked.skill_version_id is None
    assert count_rows(session, SkillVersion, skill_id=kept.id) == 1


def test_the_configurations_of_skills(session: Session) -> None:
    tenant, _ = make_tenant(session)
    other, _ = make_tenant(session)
    skill, theirs = make_skill(session, tenant), make_skill(session, other)
    teacher = make_teacher_version(session)
    job, _ = skill_repo.create_skill_job(session, skill=skill)
    config = {"training": {"learning_rate": 1e-4}}
    good = skill_repo.add_skill_self_edit(
        session, skill=skill, text="{...}", config=config, job_id=job.id, reward=0.5
    )
    skill_repo.add_skill_self_edit(
        session, skill=skill, text="nonsense", config=None, error="not JSON", reward=0.0
    )
    unscored = skill_repo.add_skill_self_edit(
        session, skill=skill, text="{...}", config=config, teacher_version_id=teacher.id
    )
    elsewhere = skill_repo.add_skill_self_edit(
        session, skill=theirs, text="{...}", config=config, reward=1.0, selected=True
    )
    assert unscored.reward is None and not unscored.selected
    mine = skill_repo.list_skill_self_edits(session, tenant_id=tenant.id)
    assert len(mine) == 3
    assert skill_repo.list_skill_self_edits(session, tenant_id=tenant.id, job_id=job.id) == [good]
    solved = skill_repo.list_skill_self_edits(session, tenant_id=None, min_reward=0.0)
    assert solved == [good, elsewhere]  # every tenant's, for the shared round to filter


def test_the_teacher_of_skills_is_a_lineage_of_its_own(session: Session) -> None:
    tenant, _ = make_tenant(session)
    documents = make_teacher_version(session, status=VersionStatus.active)
    assert documents.domain == TeacherDomain.documents
    skills = teacher_repo.create_teacher_version(
        session, tenant_id=None, parent_id=None, domain=TeacherDomain.skills, artifact_uri="/t/s"
    )
    assert skills.number == 1  # numbered apart from the teachers of documents
    assert teacher_repo.promote_teacher_version(session, version=skills) is None
    assert documents.status == VersionStatus.active  # the other lineage's stays active
    assert teacher_repo.teacher_in_use(session, tenant_id=tenant.id) is documents
    in_use = teacher_repo.teacher_in_use(session, tenant_id=tenant.id, domain=TeacherDomain.skills)
    assert in_use is skills
    assert teacher_repo.shared_teacher_versions(session) == [documents]
    assert [v for v, _ in teacher_repo.list_teacher_versions(session, tenant_id=tenant.id)] == [
        documents
    ]
    found = teacher_repo.get_teacher_version(
        session, tenant_id=None, number=1, domain=TeacherDomain.skills
    )
    assert found is skills
    assert teacher_repo.next_teacher_number(session, tenant_id=None) == documents.number + 1
    with pytest.raises(ValueError, match="another owner"):  # not the shared teacher of documents
        teacher_repo.promote_teacher_version(session, tenant_id=None, version=skills)
