"""The tables of the service. The worker is coded against these class and column names."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from service.store.base import Base, CreatedAtMixin, IdMixin, new_id, str_enum, utcnow

# the webhook tables and the jobs' events live in modules of their own; imported here, so the
# metadata has them
from service.store.job_events import JobEvent as JobEvent
from service.store.webhook_models import DeliveryStatus as DeliveryStatus
from service.store.webhook_models import WebhookDelivery as WebhookDelivery
from service.store.webhook_models import WebhookEndpoint as WebhookEndpoint


class DocumentStatus(StrEnum):
    pending = "pending"
    learning = "learning"
    learned = "learned"
    failed = "failed"
    #: No probe question could be found or written for it, so no update of it can be judged;
    #: a question sent with it or as feedback makes it ``pending`` again.
    needs_questions = "needs_questions"
    #: Sent ``volatile``: answered from the tenant's memory only, never trained into an adapter.
    memory = "memory"


class ProbeSource(StrEnum):
    document = "document"
    feedback = "feedback"
    #: Written by the teacher for a document that came without questions.
    teacher = "teacher"
    #: A cloze question made from the document's own sentences (no model), where the teacher
    #: wrote too few.
    cloze = "cloze"


class MemoryMode(StrEnum):
    """What a tenant's chat answers from (its ``memory``; a chat's ``memory`` overrides it)."""

    #: the active adapter alone (closed book)
    weights = "weights"
    #: the active adapter with the best chunks of the tenant's documents in its prompt
    hybrid = "hybrid"


class VersionStatus(StrEnum):
    active = "active"
    candidate = "candidate"
    rejected = "rejected"
    retired = "retired"


class JobKind(StrEnum):
    update = "update"
    teacher_train = "teacher_train"
    #: learns a new version of one skill from its examples (the job's ``skill_id``)
    skill = "skill"
    #: judges an adapter the tenant brought (``POST /v1/adapters``) and records it as a version
    adapter_import = "adapter_import"


class TeacherDomain(StrEnum):
    """What a teacher version writes self-edits for: each domain is a lineage of its own."""

    #: self-edits of documents (implications, self-qa, ...), the updates' teacher
    documents = "documents"
    #: training configurations of skills, the skill jobs' teacher
    skills = "skills"


class UpdateMode(StrEnum):
    """An update job's mode (its ``params["mode"]``; the API's ``POST /v1/updates``)."""

    #: k self-edits per document, each rewarded by its own inner loop, the best kept
    select = "select"
    #: the teacher's self-edits of all pending documents in one training run (the schedule's)
    batch = "batch"
    #: no new documents: the adapter trained again from the base model on the learned ones
    rebuild = "rebuild"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


#: Job statuses after which a job never changes again.
FINISHED_JOB_STATUSES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


def _tenant_fk() -> Mapped[str]:
    return mapped_column(String(36), ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


class VersionMixin(IdMixin, CreatedAtMixin):
    """The columns of every version history (a tenant's adapter, a skill, a teacher): versions
    numbered per owner, at most one active per owner, weights in a folder with their checksum,
    the metrics that judged them, and the version each was trained from. The history's rules
    are written once, in :mod:`service.store.repositories.versions`."""

    #: The columns that name a version's owner: its versions are numbered 1, 2, ... per owner.
    OWNER: ClassVar[tuple[str, ...]]

    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[VersionStatus] = mapped_column(
        str_enum(VersionStatus), default=VersionStatus.candidate
    )
    artifact_uri: Mapped[str | None] = mapped_column(String(1000))
    checksum: Mapped[str | None] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    promoted_at: Mapped[datetime | None]

    @declared_attr
    def parent_id(cls) -> Mapped[str | None]:
        return mapped_column(
            String(36),
            ForeignKey(f"{cls.__tablename__}.id", ondelete="SET NULL"),  # type: ignore[attr-defined]
        )


def _version_constraints(table: str, owner: str) -> tuple[UniqueConstraint, Index]:
    """One number per owner, and at most one active version per owner."""
    return (
        UniqueConstraint(owner, "number"),
        Index(
            f"uq_{table}_{owner}_active",
            owner,
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )


class Tenant(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: None means the settings default (``SEAL_SELF_EDIT_FORMAT``).
    self_edit_format: Mapped[str | None] = mapped_column(String(32))
    #: A cron expression for this tenant's scheduled update; None means the default schedule.
    update_schedule: Mapped[str | None] = mapped_column(String(100))
    #: What its chat answers from, unless a chat asks otherwise.
    memory: Mapped[MemoryMode] = mapped_column(
        str_enum(MemoryMode), default=MemoryMode.hybrid, server_default=MemoryMode.hybrid.value
    )
    #: Its own quotas, by name (``service.domain.quotas.QUOTAS``); a missing one is the
    #: settings default (``SEAL_QUOTA_<NAME>``).
    quotas: Mapped[dict[str, int] | None] = mapped_column(JSON)


class ApiKey(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "api_keys"

    tenant_id: Mapped[str] = _tenant_fk()
    prefix: Mapped[str] = mapped_column(String(12))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    revoked_at: Mapped[datetime | None]


class Document(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("tenant_id", "content_hash"),)

    tenant_id: Mapped[str] = _tenant_fk()
    title: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)
    #: The UTF-8 bytes of its title and text: what it counts against the tenant's quota.
    size_bytes: Mapped[int] = mapped_column(default=0, server_default="0")
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[DocumentStatus] = mapped_column(
        str_enum(DocumentStatus), default=DocumentStatus.pending, index=True
    )
    error: Mapped[str | None] = mapped_column(Text)
    learned_version_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("adapter_versions.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: Answered from memory only, never trained (status ``memory``); a document with the same
    #: title supersedes it.
    volatile: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    probe_questions: Mapped[list[ProbeQuestion]] = relationship(
        lazy="raise", order_by="ProbeQuestion.created_at", viewonly=True
    )


class MemoryChunk(Base):
    """A passage of a document in its tenant's memory, found by the store's full-text search.

    The search index is not modelled: it differs by store and is made by migration 0005
    (:data:`FULL_TEXT_OBJECTS`). PostgreSQL: a generated ``tsv`` column (title weighted A, text
    B) with a GIN index; SQLite: the FTS5 table ``memory_chunks_fts`` over this one, kept
    current by triggers (also when a document's deletion cascades here)."""

    __tablename__ = "memory_chunks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = _tenant_fk()
    document_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    #: Its place in the document, from 0.
    ordinal: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)


#: The memory's full-text search objects, which differ by store and are not modelled:
#: autogenerate and the schema comparison leave them alone (:func:`is_modelled`).
FULL_TEXT_OBJECTS = frozenset({"tsv", "ix_memory_chunks_tsv"})
FULL_TEXT_TABLE_PREFIX = "memory_chunks_fts"


def is_modelled(_object: Any, name: str | None, type_: str, _reflected: bool, _to: Any) -> bool:
    """Alembic's ``include_object``: False for the memory's full-text objects."""
    if name is None:
        return True
    if type_ == "table" and name.startswith(FULL_TEXT_TABLE_PREFIX):
        return False
    return name not in FULL_TEXT_OBJECTS


class ProbeQuestion(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "probe_questions"

    tenant_id: Mapped[str] = _tenant_fk()
    document_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    source: Mapped[ProbeSource] = mapped_column(str_enum(ProbeSource))


def new_completion_id() -> str:
    """An OpenAI-style completion id, ``chatcmpl-`` and 32 hex digits."""
    return "chatcmpl-" + new_id().replace("-", "")


class Completion(CreatedAtMixin, Base):
    __tablename__ = "completions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_completion_id)
    tenant_id: Mapped[str] = _tenant_fk()
    model: Mapped[str] = mapped_column(String(200))
    adapter_version_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("adapter_versions.id", ondelete="SET NULL")
    )
    #: The skill version that answered (a chat with ``"model": "skill:<name>"``).
    skill_version_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("skill_versions.id", ondelete="SET NULL")
    )
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    output: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)


class Feedback(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "feedback"

    tenant_id: Mapped[str] = _tenant_fk()
    question: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    document_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("documents.id", ondelete="SET NULL"), index=True
    )
    #: -1/0/1 (thumbs) or 1..5 (stars).
    rating: Mapped[int | None] = mapped_column(Integer)
    completion_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("completions.id", ondelete="SET NULL")
    )
    probe_question_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("probe_questions.id", ondelete="SET NULL")
    )


#: A teacher version's owner in its constraints: the tenant, or '' for the shared teacher (NULLs
#: never collide in a unique index).
_TEACHER_OWNER = text("coalesce(tenant_id, '')")


class TeacherVersion(VersionMixin, Base):
    __tablename__ = "teacher_versions"
    __table_args__ = (
        Index(
            "uq_teacher_versions_owner_number",
            _TEACHER_OWNER,
            "domain",
            "number",
            unique=True,
        ),
        Index(
            "uq_teacher_versions_owner_active",
            _TEACHER_OWNER,
            "domain",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )
    OWNER = ("tenant_id", "domain")

    #: None: the shared teacher of all tenants.
    tenant_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    domain: Mapped[TeacherDomain] = mapped_column(
        str_enum(TeacherDomain),
        default=TeacherDomain.documents,
        server_default=TeacherDomain.documents.value,
    )


class Job(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # At most one queued/running update per tenant.
        Index(
            "uq_jobs_tenant_id_open_update",
            "tenant_id",
            unique=True,
            postgresql_where=text("kind = 'update' AND status IN ('queued', 'running')"),
            sqlite_where=text("kind = 'update' AND status IN ('queued', 'running')"),
        ),
        # At most one queued/running skill job per skill.
        Index(
            "uq_jobs_skill_id_open_skill",
            "skill_id",
            unique=True,
            postgresql_where=text("kind = 'skill' AND status IN ('queued', 'running')"),
            sqlite_where=text("kind = 'skill' AND status IN ('queued', 'running')"),
        ),
    )

    tenant_id: Mapped[str] = _tenant_fk()
    kind: Mapped[JobKind] = mapped_column(str_enum(JobKind))
    status: Mapped[JobStatus] = mapped_column(str_enum(JobStatus), default=JobStatus.queued)
    #: 0..1
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    #: What the job is doing now.
    message: Mapped[str | None] = mapped_column(String(500))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: What the job was asked to do (an update's ``mode``; a teacher round's options).
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: What a failed job's tenant reads: what to do, never the exception's text.
    error: Mapped[str | None] = mapped_column(Text)
    #: The failure's stable name (``worker.jobs.failures``).
    error_code: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: How many times a worker started the job (a job whose worker died runs again).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The last sign of life: a running job's heartbeat from its worker; a queued job's
    #: last sending to the broker by the beat.
    heartbeat_at: Mapped[datetime | None]
    #: The skill a ``skill`` job learns (deleted with it).
    skill_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("skills.id", ondelete="CASCADE"), index=True
    )


class AdapterVersion(VersionMixin, Base):
    __tablename__ = "adapter_versions"
    __table_args__ = _version_constraints("adapter_versions", "tenant_id")
    OWNER = ("tenant_id",)

    tenant_id: Mapped[str] = _tenant_fk()
    job_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="SET NULL")
    )

    parent: Mapped[AdapterVersion | None] = relationship(
        remote_side="AdapterVersion.id", lazy="raise"
    )


class SelfEdit(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "self_edits"

    tenant_id: Mapped[str] = _tenant_fk()
    document_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="SET NULL")
    )
    format: Mapped[str] = mapped_column(String(32))
    #: None: the untrained base teacher.
    teacher_version_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("teacher_versions.id", ondelete="SET NULL")
    )
    text: Mapped[str] = mapped_column(Text)
    selected: Mapped[bool] = mapped_column(Boolean, default=False)

    teacher_version: Mapped[TeacherVersion | None] = relationship(lazy="raise")


class Reward(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "rewards"

    tenant_id: Mapped[str] = _tenant_fk()
    self_edit_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("self_edits.id", ondelete="CASCADE"), index=True
    )
    adapter_version_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("adapter_versions.id", ondelete="SET NULL")
    )
    document_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    #: e.g. ``probe_accuracy``
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    baseline: Mapped[float | None] = mapped_column(Float)

    self_edit: Mapped[SelfEdit | None] = relationship(lazy="raise")
    adapter_version: Mapped[AdapterVersion | None] = relationship(lazy="raise")


class Skill(IdMixin, CreatedAtMixin, Base):
    """A task a tenant teaches the model from examples, served as ``"model": "skill:<name>"``."""

    __tablename__ = "skills"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[str] = _tenant_fk()
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SkillExample(IdMixin, CreatedAtMixin, Base):
    """One demonstration of a skill, as text (a grid is stored as its rows of digits)."""

    __tablename__ = "skill_examples"
    __table_args__ = (UniqueConstraint("skill_id", "content_hash"),)

    tenant_id: Mapped[str] = _tenant_fk()
    skill_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("skills.id", ondelete="CASCADE"), index=True
    )
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    #: SHA-256 of the input and output: the same example is stored once per skill.
    content_hash: Mapped[str] = mapped_column(String(64))


class SkillVersion(VersionMixin, Base):
    """An adapter a skill job trained, with the configuration it was trained with."""

    __tablename__ = "skill_versions"
    __table_args__ = _version_constraints("skill_versions", "skill_id")
    OWNER = ("skill_id",)

    tenant_id: Mapped[str] = _tenant_fk()
    skill_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("skills.id", ondelete="CASCADE"), index=True
    )
    #: The chosen training configuration (``seal.skills.config.SkillConfig.as_dict()``).
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    job_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="SET NULL")
    )


class SkillSelfEdit(IdMixin, CreatedAtMixin, Base):
    """A configuration the teacher wrote for a skill (the skill's self-edit) and its reward."""

    __tablename__ = "skill_configs"

    tenant_id: Mapped[str] = _tenant_fk()
    skill_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("skills.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="SET NULL")
    )
    #: None: the untrained base teacher.
    teacher_version_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("teacher_versions.id", ondelete="SET NULL")
    )
    #: What the teacher wrote.
    text: Mapped[str] = mapped_column(Text)
    #: The configuration it parsed to (``SkillConfig.as_dict()``); None: it did not parse.
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Why it did not parse.
    error: Mapped[str | None] = mapped_column(Text)
    #: The share of held-out examples its adapter reproduced; None until it is scored.
    reward: Mapped[float | None] = mapped_column(Float)
    #: Its adapter became the job's version.
    selected: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditEvent(IdMixin, CreatedAtMixin, Base):
    """An admin's action: a request that may write, made with an admin key or on the
    dashboard (or refused for want of one), and its outcome. Kept when a tenant is deleted."""

    __tablename__ = "audit_events"

    #: Which key: ``SEAL_ADMIN_KEY``, ``SEAL_ADMIN_EXTRA_KEYS[i]``, ``dashboard`` (a signed-in
    #: session) or ``sign-in`` (an attempt to sign in to the dashboard). Never the key itself.
    actor: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    status_code: Mapped[int] = mapped_column(Integer)
    #: The client's address, as the API saw it.
    client: Mapped[str | None] = mapped_column(String(64))
