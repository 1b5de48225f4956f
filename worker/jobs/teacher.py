"""Teacher versions: the shared teacher trained by ReST-EM rounds on a public data set (the
operator's `seal teacher train`), and a tenant's own teacher trained on that tenant's reward
history (job kind ``teacher_train``).

A tenant's documents and self-edits only ever train that tenant's own teacher and adapters:
every query here is filtered by the tenant, and the shared teacher learns from public data only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sqlalchemy.orm import Session

from seal.distill import Target, distill
from seal.grading import Evaluation
from seal.journal import Journal
from seal.knowledge import Teacher
from seal.restem import (
    RoundConfig,
    RoundResult,
    Scored,
    evaluation_from_json,
    evaluation_json,
    heldout_evaluation,
    restem_round,
    scored_from_json,
    scored_json,
)
from seal.restem import train_teacher as sft_teacher
from seal.selfedit import FORMATS, Passage
from seal.train import Checkpoint, TrainConfig, TrainResult
from service.settings import Settings
from service.store.db import in_transaction, session_scope
from service.store.models import Document, TeacherDomain, TeacherVersion
from service.store.repositories import learning as learning_repo
from service.store.repositories import teachers as teacher_repo
from worker.bundled import usable
from worker.config import (
    inner_loop_config,
    refuse_external_teacher,
    teacher_spec,
    teacher_train_config,
)
from worker.jobs.common import load_teacher
from worker.jobs.lifecycle import JobRun, run_job
from worker.jobs.skill_teacher import skills_round
from worker.jobs.teacher_versions import save_teacher
from worker.jobs.update import PASSAGE_GAIN_METRIC
from worker.runtime import Runtime

log = logging.getLogger(__name__)


# --- the shared teacher: ReST-EM rounds on a public data set ------------------------------
@dataclass
class RoundReport:
    round: int
    result: RoundResult
    heldout: Evaluation
    version: int | None
    promoted: bool
    seconds: float


@dataclass
class SharedTraining:
    baseline_heldout: Evaluation
    rounds: list[RoundReport] = field(default_factory=list)


def start_teacher(
    session: Session, settings: Settings, *, number: int | None
) -> tuple[TeacherVersion | None, Teacher]:
    """The shared teacher version a run starts from: version ``number``, or the active one
    when None (no version at all: the bare base model)."""
    if number is None:
        version = teacher_repo.active_teacher_version(session, tenant_id=None)
    else:
        version = teacher_repo.get_teacher_version(session, tenant_id=None, number=number)
        if version is None:
            raise LookupError(f"there is no shared teacher version {number}")
    return version, load_teacher(settings, version)


def train_shared_teacher(
    runtime: Runtime,
    train: Sequence[Passage],
    heldout: Sequence[Passage],
    rounds: int,
    *,
    on_passage: Callable[[int, int, Scored], None] | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
    on_baseline: Callable[[Evaluation], None] | None = None,
    start_from: int | None = None,
    journal: Journal | None = None,
) -> SharedTraining:
    """ReST-EM rounds from the active shared teacher (or shared version ``start_from``); each
    round's teacher becomes a shared teacher version, promoted when its held-out accuracy is at
    least that of the teacher the run started from and of every round before it.

    A ``journal`` (``seal.journal``) records the held-out baseline, each round's self-edits,
    each scored passage and each finished round (its version); resumed, the run goes on after
    the last of them, from the teacher version of the last finished round."""
    settings = runtime.settings
    refuse_external_teacher(settings, "ReST-EM")
    host = runtime.teacher
    if host is not runtime.student:
        raise ValueError("ReST-EM needs the teacher and the student on one model")
    inner = inner_loop_config(settings)
    if inner.format not in FORMATS:
        raise ValueError(
            f"ReST-EM trains the teacher to write self-edits: SEAL_SELF_EDIT_FORMAT must be one "
            f"of {', '.join(FORMATS)}, not {inner.format!r}"
        )
    config = RoundConfig(inner=inner, teacher_train=teacher_train_config(settings))
    past = _Past(journal.entries if journal else [])
    with session_scope(runtime.sessions) as session:
        start, teacher = start_teacher(session, settings, number=start_from)
        parent_id = start.id if start else None
    if past.baseline is not None:
        baseline = evaluation_from_json(past.baseline)
    else:
        baseline = heldout_evaluation(host, heldout, inner, teacher)
        if journal:
            journal.append({"baseline": evaluation_json(baseline)})
    if on_baseline:
        on_baseline(baseline)
    run = _SharedRun(
        runtime, train, heldout, config, baseline, teacher, parent_id, past, journal, on_passage
    )
    report = SharedTraining(baseline_heldout=baseline)
    for number in range(1, rounds + 1):
        finished = past.finished.get(number)  # None: the stopped run did not finish it
        round_report = run.play(number) if finished is None else run.replay(number, finished)
        report.rounds.append(round_report)
        if on_round:
            on_round(round_report)
    return report


@dataclass
class _SharedRun:
    """The rounds of one ``train_shared_teacher`` run. Each round starts where the one before
    it ended (its teacher, that teacher's version and held-out evaluation, the best accuracy so
    far), so that state lives here, beside what every round shares."""

    runtime: Runtime
    train: Sequence[Passage]
    heldout: Sequence[Passage]
    config: RoundConfig
    baseline: Evaluation
    """The held-out evaluation of the teacher the run started from."""
    teacher: Teacher
    """The teacher the next round starts from."""
    parent_id: str | None
    """The version of that teacher: the parent of the next version."""
    past: _Past
    journal: Journal | None
    on_passage: Callable[[int, int, Scored], None] | None
    current: Evaluation = field(init=False)
    """The held-out evaluation of the teacher the next round starts from."""
    best: float = field(init=False)
    """The best held-out accuracy so far, the start's included: the bar for promotion."""

    def __post_init__(self) -> None:
        self.current = self.baseline
        self.best = self.baseline.accuracy

    def replay(self, number: int, finished: dict) -> RoundReport:
        """A round the stopped run finished is not run again: its journal entries make its
        report, and the next round starts from its version (if it made one)."""
        kept = [
            scored_from_json(p, self.past.passages[number][i]) for i, p in enumerate(self.train)
        ]
        result = RoundResult(scored=kept, teacher=None)
        if finished["version"] is not None:
            with session_scope(self.runtime.sessions) as session:
                done_version, self.teacher = start_teacher(
                    session, self.runtime.settings, number=finished["version"]
                )
                self.parent_id = done_version.id if done_version else self.parent_id
            result.teacher = self.teacher.state
            self.current = evaluation_from_json(finished["heldout"])
        self.best = max(self.best, finished["best"])
        return RoundReport(
            number,
            result,
            evaluation_from_json(finished["heldout"]),
            finished["version"],
            finished["promoted"],
            finished["seconds"],
        )

    def play(self, number: int) -> RoundReport:
        """Run round ``number`` (or the rest of it, resumed). Its teacher, when a self-edit
        earned a positive reward, becomes a version, promoted when its held-out accuracy is at
        least the best so far; the journal records the round as finished."""
        started = time.perf_counter()
        result = self._restem(number)
        if result.teacher is None:  # nothing earned a positive reward: the teacher stays
            heldout_eval, version_number, promoted = self.current, None, False
        else:
            self.teacher = Teacher(state=result.teacher)
            heldout_eval = self.current = heldout_evaluation(
                self.runtime.teacher, self.heldout, self.config.inner, self.teacher
            )
            promoted = heldout_eval.accuracy >= self.best
            self.best = max(self.best, heldout_eval.accuracy)
            version = self._save(number, result, heldout_eval, promoted)
            self.parent_id, version_number = version.id, version.number
        round_report = RoundReport(
            number,
            result,
            heldout_eval,
            version_number,
            promoted,
            time.perf_counter() - started,
        )
        if self.journal:
            self.journal.append(
                {
                    "round": number,
                    "finished": {
                        "version": version_number,
                        "promoted": promoted,
                        "heldout": evaluation_json(heldout_eval),
                        "best": self.best,
                        "seconds": round_report.seconds,
                    },
                }
            )
        return round_report

    def _restem(self, number: int) -> RoundResult:
        """The round's ReST-EM step from the current teacher. The journal records the written
        self-edits and each scored passage as they come; resumed, the round reuses what the
        stopped run wrote and scored, reporting those passages first."""
        inner, journal = self.config.inner, self.journal
        # Each round samples afresh (the same teacher would otherwise write the same text).
        seed = (inner.sample.seed or 0) + 1000 * number
        round_config = replace(
            self.config, inner=replace(inner, sample=replace(inner.sample, seed=seed))
        )

        def on_scored(index: int, scored: Scored) -> None:
            if journal:
                journal.append({"round": number, "passage": index, "scored": scored_json(scored)})
            _report(self.on_passage, number, index, scored)

        def on_written(written: list[list[str]]) -> None:
            if journal:
                journal.append({"round": number, "written": written})

        done = {
            i: scored_from_json(self.train[i], data)
            for i, data in self.past.passages.get(number, {}).items()
        }
        for index, earlier in sorted(done.items()):
            _report(self.on_passage, number, index, earlier)
        return restem_round(
            self.runtime.teacher,
            self.train,
            round_config,
            self.teacher,
            on_passage=on_scored,
            written=self.past.written.get(number),
            on_written=on_written,
            done=done,
        )

    def _save(
        self, number: int, result: RoundResult, heldout_eval: Evaluation, promoted: bool
    ) -> TeacherVersion:
        """The round's teacher as a shared version, child of the one the round started from,
        with what the round measured."""
        assert result.teacher is not None
        return save_teacher(
            self.runtime,
            result.teacher,
            tenant_id=None,
            parent_id=self.parent_id,
            promote=promoted,
            metrics={
                "round": number,
                "mean_reward": result.mean_reward,
                "mean_gain_over_passage": result.mean_over_passage,
                "passages": len(self.train),
                "kept": len(result.kept),
                "heldout_passages": len(self.heldout),
                "heldout_accuracy": heldout_eval.accuracy,
                "heldout_accuracy_before": self.baseline.accuracy,
                "format": self.config.inner.format,
                "train_loss": result.trained.losses[-1] if result.trained else None,
            },
        )


class _Past:
    """What a resumed run's journal holds, by round."""

    def __init__(self, entries: Sequence[dict]):
        self.baseline: list | None = None
        self.written: dict[int, list[list[str]]] = {}
        self.passages: dict[int, dict[int, dict]] = {}
        self.finished: dict[int, dict] = {}
        for entry in entries:
            if "baseline" in entry:
                self.baseline = entry["baseline"]
            elif "written" in entry:
                self.written[entry["round"]] = entry["written"]
            elif "passage" in entry:
                self.passages.setdefault(entry["round"], {})[entry["passage"]] = entry["scored"]
            elif "finished" in entry:
                self.finished[entry["round"]] = entry["finished"]


def _report(
    on_passage: Callable[[int, int, Scored], None] | None, number: int, index: int, scored: Scored
) -> None:
    if on_passage is not None:
        on_passage(number, index, scored)


# --- the shared teacher distilled from a stronger model's self-edits ----------------------
@dataclass
class Distilled:
    version: TeacherVersion
    trained: TrainResult
    promoted: bool


def distill_shared_teacher(
    runtime: Runtime,
    targets: Sequence[Target],
    *,
    start_from: int | None = None,
    fresh: bool = False,
    train: TrainConfig | None = None,
    promote: bool = True,
    lineage: dict | None = None,
    on_step: Callable[[int, int], None] | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> Distilled:
    """Fine-tune the shared teacher on a stronger model's self-edits (``seal.distill``) and
    record it as a shared teacher version whose parent is the version it started from
    (``start_from``, else the active one; ``fresh``: a new adapter on the base model).
    ``lineage`` (the data, its sources and formats) is kept in the version's metrics. With a
    ``checkpoint`` file the training saves its progress there, and ``resume`` goes on from it
    (the same targets, settings and starting version); it is removed once the version is
    recorded."""
    settings = runtime.settings
    refuse_external_teacher(settings, "Distillation")
    config = train or teacher_train_config(settings)
    with session_scope(runtime.sessions) as session:
        parent, teacher = (
            (None, Teacher()) if fresh else start_teacher(session, settings, number=start_from)
        )
        parent_id = parent.id if parent else None
        parent_number = parent.number if parent else None
    saver = None
    if checkpoint is not None:
        key = hashlib.sha256(
            json.dumps(
                [
                    [(t.passage.title, t.passage.text, t.format, t.text) for t in targets],
                    asdict(config),
                    parent_id,
                    teacher_spec(settings).rank,
                ]
            ).encode()
        ).hexdigest()
        saver = Checkpoint(checkpoint, key, resume=resume)
    trained = distill(
        runtime.teacher, targets, config, init=teacher.state, on_step=on_step, checkpoint=saver
    )
    formats = sorted({t.format for t in targets})
    version = save_teacher(
        runtime,
        trained.state,
        tenant_id=None,
        parent_id=parent_id,
        promote=promote,
        metrics={
            "kind": "distilled",
            **(lineage or {}),
            "formats": formats,
            "sources": sorted({t.source for t in targets}),
            "examples": len(targets),
            "passages": len({t.passage.text for t in targets}),
            "started_from": parent_number,
            "learning_rate": config.learning_rate,
            "epochs": config.epochs,
            "epoch_losses": [round(x, 4) for x in trained.losses],
            "train_loss": trained.losses[-1] if trained.losses else None,
            "train_tokens": trained.tokens,
            "train_seconds": round(trained.seconds, 1),
        },
    )
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return Distilled(version, trained, promote)


# --- a tenant's own teacher: one round from its reward history ----------------------------
def tenant_teacher_pairs(
    session: Session, *, tenant_id: str
) -> list[tuple[Passage, str, str, str]]:
    """(passage, format, self-edit text, self-edit id): the tenant's best self-edit per
    document among those that taught more than the passage alone (a positive gain over the
    passage-alone candidate trained beside them). The tenant's data only."""
    pairs = []
    for self_edit, _value in learning_repo.best_self_edits(
        session, tenant_id=tenant_id, metric=PASSAGE_GAIN_METRIC, min_value=0.0
    ):
        document = session.get(Document, self_edit.document_id)
        if document is None or document.tenant_id != tenant_id:
            continue
        pairs.append(
            (Passage(document.title, document.text), self_edit.format, self_edit.text, self_edit.id)
        )
    return pairs


def run_teacher_round(runtime: Runtime, job_id: str) -> bool:
    """Fine-tune a teacher for one tenant on that tenant's best-rewarded self-edits (job kind
    ``teacher_train``, through the job lifecycle; False: it was not queued)."""
    return run_job(
        runtime,
        job_id,
        functools.partial(_teacher_round, runtime),
        message="reading the reward history",
    )


def _teacher_round(runtime: Runtime, run: JobRun) -> None:
    refuse_external_teacher(runtime.settings, "A teacher round (ReST-EM)")
    if TeacherDomain(run.job.params.get("domain", TeacherDomain.documents)) == TeacherDomain.skills:
        skills_round(runtime, run)
        return
    tenant_id = run.job.tenant_id

    def read(session: Session) -> tuple[list, TeacherVersion | None]:
        pairs = tenant_teacher_pairs(session, tenant_id=tenant_id)
        current = teacher_repo.teacher_in_use(session, tenant_id=tenant_id)
        return pairs, usable(runtime.settings, current)

    pairs, current = in_transaction(runtime.sessions, read)
    if not pairs:
        run.succeed(
            "no self-edit of this tenant has taught more than its document alone yet",
            {"examples": 0, "teacher_version": None},
        )
        return
    teacher = load_teacher(runtime.settings, current)
    run.progress(0.05, f"training the teacher on {len(pairs)} self-edits")
    trained = sft_teacher(
        runtime.teacher,
        [(p, fmt, text) for p, fmt, text, _ in pairs],
        teacher_train_config(runtime.settings),
        init=teacher.state,
    )
    run.check()
    save_teacher(
        runtime,
        trained.state,
        tenant_id=tenant_id,
        parent_id=current.id if current else None,
        promote=True,
        run=run,
        metrics={
            "examples": len(pairs),
            "self_edit_ids": [sid for *_, sid in pairs],
            "train_loss": trained.losses[-1] if trained.losses else None,
            "train_seconds": round(trained.seconds, 3),
        },
    )
