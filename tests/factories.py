"""Factories: plain functions that add rows through the repositories (flush, no commit), and
helpers to check what is stored (``count_rows``), what was sent to the broker
(``queued_tasks``) and how two transactions meet (``second_waits``)."""

from __future__ import annotations

import base64
import itertools
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.domain import memory
from service.store.db import session_scope
from service.store.models import (
    AdapterVersion,
    Document,
    DocumentStatus,
    Job,
    JobKind,
    JobStatus,
    ProbeSource,
    Reward,
    SelfEdit,
    Skill,
    SkillVersion,
    TeacherVersion,
    Tenant,
    VersionStatus,
)
from service.store.repositories import adapters, documents, learning, skills, teachers, tenants

_counter = itertools.count(1)


def count_rows(session: Session, model: type, **where: object) -> int:
    """How many rows of ``model`` have the given column values."""
    clauses = [getattr(model, name) == value for name, value in where.items()]
    return session.scalar(select(func.count()).select_from(model).where(*clauses)) or 0


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_tenant(session: Session, *, name: str | None = None) -> tuple[Tenant, str]:
    """A tenant and its plain API key."""
    tenant = tenants.create_tenant(session, name=name or f"tenant-{next(_counter)}")
    _row, key = tenants.create_api_key(session, tenant_id=tenant.id)
    return tenant, key


def make_document(
    session: Session,
    tenant: Tenant,
    *,
    title: str | None = None,
    text: str = "The capital of Atlantis is Poseidonia.",
    status: DocumentStatus = DocumentStatus.pending,
    questions: list[tuple[str, str]] = (),  # type: ignore[assignment]
    volatile: bool = False,
) -> Document:
    """A document, in its tenant's memory as an accepted one is."""
    document = documents.create_document(
        session,
        tenant_id=tenant.id,
        title=title or f"Document {next(_counter)}",
        text=text,
        volatile=volatile,
    )
    memory.index_document(session, document)
    if not volatile:
        document.status = status
    for question, answer in questions:
        documents.add_probe_question(
            session,
            tenant_id=tenant.id,
            document_id=document.id,
            question=question,
            answer=answer,
            source=ProbeSource.document,
        )
    session.flush()
    return document


def make_job(
    session: Session,
    tenant: Tenant,
    *,
    kind: JobKind = JobKind.update,
    status: JobStatus = JobStatus.queued,
    params: dict | None = None,
) -> Job:
    job = Job(tenant_id=tenant.id, kind=kind, status=status, progress=0.0, params=params)
    session.add(job)
    session.flush()
    return job


def make_adapter_version(
    session: Session,
    tenant: Tenant,
    *,
    parent: AdapterVersion | None = None,
    status: VersionStatus = VersionStatus.candidate,
    artifact_uri: str | None = "/adapters/x",
    metrics: dict[str, Any] | None = None,
) -> AdapterVersion:
    version = adapters.create_adapter_version(
        session,
        tenant_id=tenant.id,
        parent_id=parent.id if parent else None,
        artifact_uri=artifact_uri,
        checksum="sha256:abc" if artifact_uri else None,
        metrics=metrics or {"probe_accuracy": 0.5},
    )
    if status == VersionStatus.active:
        adapters.promote_version(session, tenant_id=tenant.id, version=version)
    elif status != VersionStatus.candidate:
        adapters.set_version_status(session, version=version, status=status)
    return version


def make_teacher_version(
    session: Session,
    *,
    tenant: Tenant | None = None,
    parent: TeacherVersion | None = None,
    status: VersionStatus = VersionStatus.candidate,
    artifact_uri: str | None = "/adapters/teacher",
    metrics: dict[str, Any] | None = None,
) -> TeacherVersion:
    """A teacher version of ``tenant`` (None: the shared teacher); ``status=active``
    promotes it (a version is made active only with weights: give the folder of real ones
    where a job loads them)."""
    version = teachers.create_teacher_version(
        session,
        tenant_id=tenant.id if tenant else None,
        parent_id=parent.id if parent else None,
        artifact_uri=artifact_uri,
        checksum="sha256:teacher" if artifact_uri else None,
        metrics=metrics,
    )
    if status == VersionStatus.active:
        teachers.promote_teacher_version(session, version=version)
    elif status != VersionStatus.candidate:
        version.status = status
        session.flush()
    return version


def make_self_edit(
    session: Session,
    document: Document,
    *,
    format: str = "implications",
    teacher: TeacherVersion | None = None,
    text: str = "Poseidonia is the capital.",
    selected: bool = False,
) -> SelfEdit:
    return learning.add_self_edit(
        session,
        tenant_id=document.tenant_id,
        document_id=document.id,
        format=format,
        text=text,
        teacher_version_id=teacher.id if teacher else None,
        selected=selected,
    )


def make_reward(
    session: Session,
    self_edit: SelfEdit,
    *,
    value: float,
    adapter_version: AdapterVersion | None = None,
    metric: str = "probe_accuracy",
) -> Reward:
    return learning.add_reward(
        session,
        tenant_id=self_edit.tenant_id,
        self_edit_id=self_edit.id,
        document_id=self_edit.document_id,
        adapter_version_id=adapter_version.id if adapter_version else None,
        metric=metric,
        value=value,
        baseline=0.0,
    )


def make_skill(
    session: Session,
    tenant: Tenant,
    *,
    name: str | None = None,
    description: str | None = None,
    examples: list[tuple[str, str]] | None = None,
) -> Skill:
    """A skill with its examples (by default two word reversals), and no job."""
    skill = skills.create_skill(
        session,
        tenant_id=tenant.id,
        name=name or f"skill-{next(_counter)}",
        description=description,
    )
    pairs = examples if examples is not None else [("one two", "two one"), ("a b c", "c b a")]
    skills.add_examples(session, skill=skill, examples=pairs)
    return skill


def make_skill_version(
    session: Session,
    skill: Skill,
    *,
    parent: SkillVersion | None = None,
    status: VersionStatus = VersionStatus.candidate,
    artifact_uri: str | None = "/adapters/skill",
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> SkillVersion:
    """A version of ``skill`` as a skill job would record it; ``status=active`` promotes it."""
    version = skills.create_skill_version(
        session,
        skill=skill,
        parent_id=parent.id if parent else None,
        artifact_uri=artifact_uri,
        checksum="sha256:skill" if artifact_uri else None,
        metrics=metrics or {"loo_accuracy": 0.5},
        config=config or {"training": {"learning_rate": 1e-4}},
    )
    if status == VersionStatus.active:
        skills.promote_skill_version(session, skill_id=skill.id, version=version)
    elif status != VersionStatus.candidate:
        skills.set_skill_version_status(session, version=version, status=status)
    return version


def queued_tasks(broker: redis.Redis) -> list[tuple[str, dict[str, Any]]]:
    """The (task name, kwargs) of the messages waiting on Celery's default queue."""
    tasks = []
    for raw in broker.lrange("celery", 0, -1):
        message = json.loads(raw)
        assert message["content-type"] == "application/json"
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        tasks.append((message["headers"]["task"], kwargs))
    return tasks


T = TypeVar("T")


def second_waits(
    factory: sessionmaker[Session],
    first: Callable[[Session], object],
    second: Callable[[], T],
    *,
    then: Callable[[Session], object] | None = None,
) -> T:
    """Two real transactions meeting: ``first`` runs in one, left open, while ``second``
    (which opens its own) starts in another thread and must still be waiting a second later;
    then ``then`` runs, the first commits, and what ``second`` returned once it could go on
    comes back."""
    out: dict[str, T] = {}
    thread = threading.Thread(target=lambda: out.update(result=second()), daemon=True)
    with session_scope(factory) as session:
        first(session)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive(), "the second transaction did not wait for the first"
        if then is not None:
            then(session)
    thread.join(timeout=30)
    assert "result" in out, "the second transaction failed or did not end"
    return out["result"]
