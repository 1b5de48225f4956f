"""Request (``...Create``) and response (``...Public``) models of the API (the chat's:
:mod:`service.chat_schemas`; the skills': :mod:`service.skill_schemas`); the lengths they
allow are set in :mod:`service.limits`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from service import limits
from service.domain.quotas import MAX_QUOTA, QUOTAS, check_quotas
from service.settings import TenantSelfEditFormat
from service.store.models import (
    DocumentStatus,
    JobKind,
    JobStatus,
    MemoryMode,
    ProbeSource,
    TeacherDomain,
    UpdateMode,
    VersionStatus,
)

T = TypeVar("T")

#: The largest number a path, query or body field may carry to the store: the end of a 32-bit
#: integer column (a larger one would be a server error there, not a 404 or an empty page).
MAX_NUMBER = 2**31 - 1


class _Create(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


# --- tenants --------------------------------------------------------------------------------
def _valid_cron(value: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(value):
        raise ValueError(f"not a valid cron expression: {value!r}")
    return value


CronText = Annotated[str, Field(max_length=limits.MAX_CRON_CHARS), AfterValidator(_valid_cron)]


_MEMORY = (
    "What its chat answers from: `hybrid` (the adapter with the best chunks of its documents "
    "in the prompt) or `weights` (the adapter alone); a chat's `memory` overrides it."
)


class TenantCreate(_Create):
    name: str = Field(min_length=1, max_length=limits.MAX_TENANT_NAME_CHARS)
    self_edit_format: TenantSelfEditFormat | None = Field(
        None,
        description="Default: the service's SEAL_SELF_EDIT_FORMAT. `auto` picks, per update, "
        "the format whose self-edits gained most over the passage alone (`passage` itself when "
        "none did), trying the others now and then.",
    )
    update_schedule: CronText | None = Field(
        None, description="Cron expression of the scheduled update."
    )
    memory: MemoryMode = Field(MemoryMode.hybrid, description=_MEMORY)


class TenantUpdate(_Create):
    """Only the fields present in the body change; null resets a field to the default."""

    self_edit_format: TenantSelfEditFormat | None = Field(
        None, description="null: the service's SEAL_SELF_EDIT_FORMAT."
    )
    update_schedule: CronText | None = Field(
        None, description="Cron expression; null: the default schedule."
    )
    memory: MemoryMode | None = Field(None, description=f"{_MEMORY} null: `hybrid`.")
    quotas: dict[str, Annotated[int, Field(strict=True, ge=1, le=MAX_QUOTA)]] | None = Field(
        None,
        max_length=len(QUOTAS),
        description="The tenant's own quotas, by name (`concurrent_chats`, "
        "`requests_per_minute`, `queued_jobs`, `documents`, `stored_bytes`); those it does not "
        "name are the service's defaults (SEAL_QUOTA_<NAME>). null: the defaults for all.",
    )

    @field_validator("quotas")
    @classmethod
    def _known_quotas(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        return None if value is None else check_quotas(value)

    @field_validator("memory")
    @classmethod
    def _memory_default(cls, value: MemoryMode | None) -> MemoryMode:
        return value or MemoryMode.hybrid


class TenantCreated(BaseModel):
    id: str
    name: str
    api_key: str = Field(description="Shown once; only its hash is stored.")


class TenantPublic(_Public):
    id: str
    name: str
    self_edit_format: str | None
    update_schedule: str | None
    memory: MemoryMode
    quotas: dict[str, int] | None = Field(
        description="Its own quotas; null or a missing one: the service's default."
    )
    created_at: datetime


class ApiKeyCreated(BaseModel):
    id: str
    tenant_id: str
    prefix: str
    api_key: str = Field(description="Shown once; only its hash is stored.")


class TenantDeleted(BaseModel):
    id: str
    name: str
    deleted: dict[str, int] = Field(description="Rows deleted, by kind.")
    stopped_jobs: list[str] = Field(
        description="Its queued or running jobs, deleted with it: a worker running one stops "
        "at its next check and records nothing."
    )
    folders_removed: list[str] = Field(description="Adapter and teacher folders removed.")
    folders_left: list[str] = Field(
        description="Folders that could not be removed (see the api's log); delete them by hand."
    )


class ApiKeyPublic(_Public):
    id: str
    tenant_id: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_at: datetime
    revoked_at: datetime | None = Field(description="null while the key is valid.")


# --- documents ------------------------------------------------------------------------------
class QuestionAnswer(_Create):
    question: str = Field(min_length=1, max_length=limits.MAX_PROBE_CHARS)
    answer: str = Field(min_length=1, max_length=limits.MAX_PROBE_CHARS)


class DocumentCreate(_Create):
    title: str = Field(min_length=1, max_length=limits.MAX_TITLE_CHARS)
    text: str = Field(min_length=1, max_length=limits.MAX_TEXT_CHARS)
    questions: list[QuestionAnswer] = Field(
        default_factory=list,
        max_length=limits.MAX_QUESTIONS,
        description="Probe questions with gold answers, used to measure what was learned.",
    )
    volatile: bool = Field(
        False,
        description="Answered from memory only, never trained into an adapter (prices, "
        "schedules); a new document of the same title supersedes it.",
    )


class ProbeQuestionPublic(_Public):
    id: str
    question: str
    answer: str
    source: ProbeSource
    created_at: datetime


class DocumentPublic(_Public):
    id: str
    title: str
    status: DocumentStatus
    error: str | None
    volatile: bool
    content_hash: str
    created_at: datetime
    updated_at: datetime


class DocumentListed(DocumentPublic):
    questions: list[ProbeQuestionPublic] = Field(
        description="The probe questions its updates are graded on, each with its `source`: "
        "`document` (sent with it), `feedback`, `teacher` (written by the teacher for a "
        "document sent without questions) or `cloze` (made from its own sentences when the "
        "teacher wrote too few)."
    )


class DocumentDetail(DocumentListed):
    text: str


class DocumentDeleted(DocumentPublic):
    learned_version: int | None = Field(
        description="The adapter version that learned the document, if one did: that version "
        "and the versions trained from it still hold what they learned (delete with "
        "`forget=true`, or request a `rebuild` update, to serve a model without it)."
    )
    rebuild_job_id: str | None = Field(
        None,
        description="With `forget=true`, for a learned document: the update job (mode "
        "`rebuild`) that trains the tenant's adapter again without it.",
    )
    teacher_versions: list[int] = Field(
        default_factory=list,
        description="The tenant's own teacher versions fine-tuned on the document's self-edits, "
        "and those trained from them: they still hold what they learned (an admin rolls the "
        "tenant's teacher back to an earlier version, or to 0).",
    )


# --- feedback -------------------------------------------------------------------------------
class FeedbackCreate(_Create):
    question: str | None = Field(None, min_length=1, max_length=limits.MAX_QA_CHARS)
    answer: str | None = Field(None, min_length=1, max_length=limits.MAX_QA_CHARS)
    document_id: str | None = Field(None, max_length=limits.MAX_ID_CHARS)
    rating: int | None = Field(None, ge=-1, le=5, description="-1/0/1 (thumbs) or 1..5.")
    completion_id: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _something_to_learn(self) -> FeedbackCreate:
        if (self.question is None) != (self.answer is None):
            raise ValueError("question and answer must be given together")
        if self.question is None and self.rating is None:
            raise ValueError("give a question and answer, a rating, or both")
        return self


class FeedbackPublic(_Public):
    id: str
    question: str | None
    answer: str | None
    document_id: str | None
    rating: int | None
    completion_id: str | None
    probe_question_id: str | None
    created_at: datetime


# --- jobs -----------------------------------------------------------------------------------
class UpdateCreate(_Create):
    mode: UpdateMode = Field(
        UpdateMode.select,
        description="`select`: k self-edits per document, each rewarded by its own inner loop, "
        "the best kept (earns rewards for the teacher). `batch`: the teacher's self-edits of all "
        "pending documents in one training run (what the nightly schedule does). `rebuild`: no "
        "new documents; the adapter trained again from the base model on every learned "
        "document and its kept self-edits, so that deleted documents leave the weights.",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,
        description="Seeds the job's sampling (self-edits, format exploration, replay sample), "
        "so that the same request on the same data and model repeats the same update. Without "
        "it each job draws its own; the seed used is in the job's result metrics.",
    )


class UpdateAccepted(BaseModel):
    job_id: str
    status: JobStatus


class JobEventPublic(_Public):
    message: str = Field(description="The stage, as the job's progress message said it.")
    progress: float
    data: dict[str, Any] | None = Field(
        description="The stage's figures: a candidate's train_losses (per epoch), reward and "
        "probe_accuracy; the new version's train_losses; the gate's promoted and reason."
    )
    created_at: datetime


class JobPublic(_Public):
    id: str
    kind: JobKind
    status: JobStatus
    progress: float
    message: str | None
    params: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None = Field(
        description="A failed job: what happened and what to do, written for the tenant (the "
        "details are in the worker's log under the job's id)."
    )
    error_code: str | None = Field(
        None,
        description="A failed job's stable reason: `teacher_unavailable`, `external_teacher`, "
        "`model_unavailable`, `out_of_memory`, `time_limit`, `artifact_corrupt` or "
        "`internal_error`.",
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int = Field(
        description="How many times a worker started the job: a job whose worker died runs "
        "again, up to SEAL_JOB_MAX_ATTEMPTS."
    )
    heartbeat_at: datetime | None = Field(
        description="The running job's last heartbeat from its worker (a queued job: when it "
        "was last sent to the broker)."
    )
    skill_id: str | None = Field(None, description="The skill a `skill` job learns.")


# --- adapters, self-edits, rewards ------------------------------------------------------------
class AdapterPublic(BaseModel):
    version: int
    status: VersionStatus
    parent: int | None
    metrics: dict[str, Any]
    created_at: datetime
    promoted_at: datetime | None
    checksum: str | None = Field(
        description="SHA-256 of the version's weights; null: it has none (deleted by an admin)."
    )


class AdapterPurged(AdapterPublic):
    folder_removed: str | None = Field(description="The weights' folder, removed.")
    folder_left: str | None = Field(
        description="The weights' folder, if it could not be removed (see the api's log, or it "
        "lies outside the adapter directory): delete it by hand."
    )


class RollbackRequest(_Create):
    version: int = Field(
        ge=0, le=MAX_NUMBER, description="The version to make active; 0: the base model."
    )


class RollbackResult(BaseModel):
    active: AdapterPublic | None = Field(description="The active version now; null: base model.")
    previous: AdapterPublic | None = Field(description="The version that was active before.")


class SelfEditPublic(BaseModel):
    id: str
    document_id: str
    format: str
    teacher_version: int | None = Field(description="null: the untrained base teacher.")
    text: str
    selected: bool
    created_at: datetime


class RewardPublic(BaseModel):
    id: str
    self_edit_id: str | None
    document_id: str | None
    adapter_version: int | None
    format: str | None
    metric: str
    value: float
    baseline: float | None
    created_at: datetime


class RewardGroup(BaseModel):
    count: int
    mean: float | None


class RewardSummary(RewardGroup):
    """``count`` and ``mean`` are over all the listed rewards."""

    by_metric: dict[str, RewardGroup]
    by_format: dict[str, RewardGroup] = Field(
        description="Over the listed rewards of self-edits, by the self-edit's format."
    )
    by_teacher_version: dict[str, RewardGroup] = Field(
        description="Over the listed rewards of self-edits, by the number of the teacher "
        'version that wrote the self-edit ("base": the untrained base teacher).'
    )


# --- teachers -------------------------------------------------------------------------------
class TeacherRoundRequest(_Create):
    domain: TeacherDomain = Field(
        TeacherDomain.documents,
        description="`documents`: train the teacher of the updates' self-edits on the tenant's "
        "best self-edits; `skills`: the teacher of the skills' training configurations on the "
        "configurations that solved held-out examples.",
    )


class TeacherRoundAccepted(BaseModel):
    job_id: str
    status: JobStatus


class TeacherPublic(BaseModel):
    version: int
    scope: Literal["tenant", "shared"] = Field(
        description="`tenant`: the tenant's own teacher; `shared`: the teacher of all tenants."
    )
    status: VersionStatus
    parent: int | None = Field(description="The number of the version it was trained from.")
    metrics: dict[str, Any]
    created_at: datetime


class TeacherListItem(TeacherPublic):
    in_use: bool = Field(
        description="The teacher the tenant's updates use now; none in use: the base teacher."
    )


class TenantTeacherRollbackRequest(_Create):
    version: int = Field(
        ge=0,
        le=MAX_NUMBER,
        description="The teacher version to make active; 0: retire the active one.",
    )
    domain: TeacherDomain = Field(
        TeacherDomain.documents,
        description="`documents`: the teacher of the updates' self-edits; `skills`: the teacher "
        "of the skills' training configurations (a lineage of its own).",
    )


class TeacherRollbackRequest(TenantTeacherRollbackRequest):
    tenant_id: str | None = Field(
        None,
        max_length=limits.MAX_ID_CHARS,
        description="The tenant's own teacher; null: the shared teacher.",
    )


class TeacherRollbackResult(BaseModel):
    active: TeacherPublic | None = Field(
        description="The owner's active version now; null: the base teacher (for a tenant: "
        "the shared teacher)."
    )
    previous: TeacherPublic | None = Field(description="The version that was active before.")


class RewardList(BaseModel):
    items: list[RewardPublic]
    summary: RewardSummary


class Health(BaseModel):
    status: str
    database: str


class QuotaUse(BaseModel):
    limit: int = Field(description="The tenant's quota.")
    used: int = Field(description="What it uses of it now.")


class TenantUsage(BaseModel):
    """A tenant's use of each of its quotas (``requests_per_minute``: in the last 60 s;
    ``concurrent_chats``: in the API process that answered)."""

    quotas: dict[str, QuotaUse]


class AuditEventPublic(_Public):
    id: str
    created_at: datetime
    actor: str = Field(
        description="Which admin key: `SEAL_ADMIN_KEY`, `SEAL_ADMIN_EXTRA_KEYS[i]`, `dashboard` "
        "(a signed-in session) or `sign-in` (a dashboard sign-in attempt); never the key."
    )
    method: str
    path: str
    status_code: int
    client: str | None = Field(description="The client's address as the API saw it.")
