"""What an update job reads when it starts: its documents, the active version, the teacher,
the format, the retention set and the sequences to rehearse, as plain data (no ORM objects);
and the names of the rewards it writes."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from seal.grading import Evaluation, Probe
from seal.knowledge import Candidate, Teacher
from seal.lora import AdapterState
from seal.selfedit import QA, ChatTurn, Passage, choose_format
from service.settings import Settings
from service.store.models import UpdateMode
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import documents as document_repo
from service.store.repositories import learning as learning_repo
from service.store.repositories import teachers as teacher_repo
from service.store.repositories import tenants as tenant_repo
from worker.bundled import usable
from worker.config import remote_teacher
from worker.jobs.common import (
    job_seed,
    learned_sequences,
    load_teacher,
    retention_probes,
    weights,
)
from worker.jobs.lifecycle import JobInfo
from worker.runtime import Runtime

#: The reward of a candidate self-edit: the probe accuracy its own inner loop gained.
CANDIDATE_METRIC = "probe_accuracy_gain"
#: A candidate self-edit's probe accuracy above the passage-alone candidate trained beside it
#: (what ReST-EM keeps self-edits by: only those that teach more than the document itself).
PASSAGE_GAIN_METRIC = "gain_over_passage"
#: The reward of a batch self-edit: its document's accuracy gain in the batch's version.
BATCH_METRIC = "batch_probe_accuracy_gain"
#: The gain of a whole version on its batch's probe questions.
VERSION_METRIC = "version_probe_accuracy_gain"


@dataclass
class DocumentWork:
    id: str
    passage: Passage
    baseline: Evaluation | None = None
    after: Evaluation | None = None
    kept: list[Candidate] = field(default_factory=list)
    """The self-edits this document is learned from (select: the best, or none when the
    passage alone won; batch: all written)."""
    winner: Candidate | None = None
    """select: the candidate chosen (a self-edit or the passage alone), its adapter trained."""
    judged_on: list[int] | None = None
    """The indices of the probes the gate judges this document on (those that did not choose
    its candidate); None: all of them."""

    def probes(self) -> list[Probe]:
        return [Probe(self.passage.title, qa) for qa in self.passage.questions]


@dataclass
class Snapshot:
    """What the job read from the store when it started (plain data, no ORM objects)."""

    tenant_id: str
    mode: UpdateMode
    seed: int
    fmt: str
    parent_id: str | None
    parent_state: AdapterState | None
    teacher: Teacher
    teacher_version_id: str | None
    documents: list[DocumentWork]
    retention: list[Probe]
    replay_pool: list[str | ChatTurn]
    """Training sequences of earlier kept self-edits (and their documents) to rehearse."""
    needs_questions: list[str] = field(default_factory=list)
    """Documents set aside during the job: no probe question could be found or written."""
    left_to_memory: int = 0
    """The tenant's volatile documents: answered from memory, never claimed or trained."""


def take_snapshot(session: Session, runtime: Runtime, job: JobInfo) -> Snapshot:
    """Claim the tenant's pending documents and read everything the job needs."""
    settings = runtime.settings
    tenant_id, job_id, params = job.tenant_id, job.id, job.params
    # first, so that a document is either claimed here or deleted by the API, never both
    pending = document_repo.claim_pending_documents(session, tenant_id=tenant_id)
    tenant = tenant_repo.get_tenant(session, tenant_id=tenant_id)
    assert tenant is not None
    active = adapter_repo.active_adapter(session, tenant_id=tenant_id)
    probes = document_repo.probe_questions_for_documents(
        session, document_ids=[d.id for d in pending]
    )
    works = [
        DocumentWork(
            id=d.id,
            passage=Passage(d.title, d.text, tuple(QA(p.question, p.answer) for p in probes[d.id])),
        )
        for d in pending
    ]
    state = weights(settings, active)

    seed = job_seed(settings, job_id, params)
    fmt = tenant.self_edit_format or settings.self_edit_format
    if fmt == "auto":  # by the self-edits' gains over the passage alone (which gains 0)
        rewards = learning_repo.rewards_by_format(
            session, tenant_id=tenant_id, metric=PASSAGE_GAIN_METRIC
        )
        rng = random.Random(seed)
        fmt = choose_format(rewards, rng, explore=settings.auto_explore, passage=0.0)

    remote = remote_teacher(settings)
    if remote is not None:  # an external endpoint writes every tenant's self-edits
        teacher_version, teacher = None, Teacher(remote=remote)
    else:
        teacher_version = usable(
            settings, teacher_repo.teacher_in_use(session, tenant_id=tenant_id)
        )
        teacher = load_teacher(settings, teacher_version)

    retention = retention_probes(session, settings, tenant_id)
    learned = learned_sequences(session, tenant_id, qa_form=settings.qa_form)
    replay_pool = [seq for seqs in learned.values() for seq in seqs]
    return Snapshot(
        tenant_id=tenant_id,
        mode=UpdateMode(params.get("mode", UpdateMode.select)),
        seed=seed,
        fmt=fmt,
        parent_id=active.id if active else None,
        parent_state=state,
        teacher=teacher,
        teacher_version_id=teacher_version.id if teacher_version else None,
        documents=works,
        retention=retention,
        replay_pool=replay_pool,
        left_to_memory=document_repo.count_volatile(session, tenant_id=tenant_id),
    )


def replay_sample(
    pool: list[str | ChatTurn], settings: Settings, rng: random.Random
) -> list[str | ChatTurn]:
    """The job's sample of earlier sequences: every candidate and the version rehearse it, so
    a candidate's measured reward is that of the run that becomes the version."""
    want = math.ceil(len(pool) * settings.replay_fraction)
    return rng.sample(pool, min(want, settings.replay_max_sequences, len(pool)))
