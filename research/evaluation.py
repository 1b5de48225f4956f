"""The SEAL paper's knowledge-incorporation experiment: after a LoRA update on a passage, how
many of its questions does the student answer without the passage in the prompt?

Conditions, one row each of the result table:

- ``base``: the base model, no update;
- ``passage``: trained on the passage only;
- ``base-teacher``: the passage + self-edits written by the untrained teacher (the base model);
- ``teacher``: the passage + self-edits written by a chosen teacher adapter;
- ``supplied``: the passage + self-edits that came with the data (e.g. from a larger model).

Modes: ``single`` trains one adapter per passage and condition from a fresh adapter and grades
it on that passage's questions (the paper's main table); ``batch`` trains one adapter per
condition on all passages together and grades it on all their questions (the paper's
continued-pretraining table); ``sequential`` updates one adapter passage after passage and
grades every passage after each update (forgetting, the paper's Fig. 6).

With k self-edits per passage, a condition trains on the items of all k pooled with the
passage, as the paper did for continued pretraining. Accuracies come with a 95% Wilson score
interval; the rows, reports and their statistics are in ``research.results``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from research.results import (
    Answer,
    ConditionResult,
    ForgettingReport,
    KnowledgeReport,
    PassageRow,
    SelfEdits,
)
from seal.grading import Evaluation, Probe
from seal.journal import Journal as JsonlJournal
from seal.knowledge import (
    InnerLoopConfig,
    Teacher,
    probes_of,
    write_self_edits_many,
)
from seal.lora import AdapterHost, AdapterState
from seal.multi import evaluate_many, train_many
from seal.selfedit import ChatTurn, Passage, training_sequences

CONDITIONS = {
    "base": "the base model, no update",
    "passage": "trained on the passage only",
    "base-teacher": "passage + self-edits of the untrained teacher (the base model)",
    "teacher": "passage + self-edits of the chosen teacher adapter",
    "supplied": "passage + the self-edits supplied with the data",
}

MODES = ("single", "batch", "sequential")

Progress = Callable[[int, int, str], None]
"""``(done, total, status)``: steps done out of total, and what is running now."""


@dataclass(frozen=True)
class EvalPassage:
    """A passage of the data set, with the self-edits that came with it (may be none)."""

    passage: Passage
    self_edits: tuple[str, ...] = ()


def _answers(evaluation: Evaluation, owners: Sequence[int]) -> list[Answer]:
    return [
        Answer(o, g.probe.title, g.probe.qa.question, g.probe.qa.answer, g.answer, g.correct)
        for g, o in zip(evaluation.graded, owners, strict=True)
    ]


@contextmanager
def _timed(seconds: dict[str, float], key: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - started


def _quiet(done: int, total: int, status: str) -> None:
    pass


def sequences_of(
    passage: Passage, texts: Sequence[str], fmt: str, qa_form: str = "text"
) -> list[str | ChatTurn]:
    """The training sequences of a passage and its self-edits of format ``fmt``, as the service
    builds them (:func:`seal.selfedit.training_sequences`)."""
    return training_sequences(passage, [(fmt, text) for text in texts], qa_form=qa_form)


def _all_probes(passages: Sequence[EvalPassage]) -> tuple[list[Probe], list[int]]:
    """Every question of ``passages`` and the index of the passage each one belongs to."""
    probes: list[Probe] = []
    owners: list[int] = []
    for index, item in enumerate(passages):
        mine = probes_of(item.passage)
        probes.extend(mine)
        owners.extend([index] * len(mine))
    return probes, owners


_T = TypeVar("_T")


def teacher_rows(teachers: Sequence[tuple[str, _T]]) -> dict[str, _T]:
    """The table rows of chosen teachers (or of what stands for them, e.g. their folders
    before they are loaded): ``teacher`` for one without a name, ``teacher:NAME`` for each
    named one. Two that make the same row are refused."""
    rows: dict[str, _T] = {}
    for name, teacher in teachers:
        row = f"teacher:{name}" if name else "teacher"
        if row in rows:
            raise ValueError(
                f"two teachers make the same row {row!r}; give each a different name (NAME=FOLDER)"
            )
        rows[row] = teacher
    return rows


class _Writer:
    """The self-edits each trained condition uses for a passage."""

    def __init__(
        self,
        host: AdapterHost,
        config: InnerLoopConfig,
        teachers: Sequence[tuple[str, Teacher]],
        qa_forms: Sequence[str] = (),
    ):
        self.host = host
        self.config = config
        self.teachers = {"base-teacher": Teacher(), **teacher_rows(teachers)}
        self.written: dict[str, list[list[str]]] = {}
        """Each teacher condition's self-edits per passage, sampled by ``prefetch``."""
        self.qa_forms = list(dict.fromkeys(qa_forms)) or [config.qa_form]
        self.rows: dict[str, tuple[str, str]] = {}
        """Each trained row: the self-edits it trains on (a teacher, ``supplied`` or none)
        and how their question-answer items are trained; with several ``qa_forms`` a row
        per form, named ``SOURCE/FORM``."""
        for source in ["passage", *self.teachers, "supplied"]:
            forms = [config.qa_form] if source == "passage" else self.qa_forms
            for form in forms:
                named = source if len(forms) == 1 else f"{source}/{form}"
                self.rows[named] = (source, form)

    def conditions(self, item: EvalPassage | None = None) -> list[str]:
        """The trained rows, in table order (those that apply to ``item`` if given)."""
        supplied = item is None or bool(item.self_edits)
        return [n for n, (source, _) in self.rows.items() if supplied or source != "supplied"]

    def qa_form(self, name: str) -> str:
        return self.rows[name][1]

    def prefetch(
        self, passages: Sequence[EvalPassage], report: Callable[[str], None], only: str = ""
    ) -> None:
        """Sample the self-edits of every teacher condition (or of ``only``) for all
        ``passages`` first: the teachers do not change during a run, and passages decoded in
        shared batches cost far less each than one at a time."""
        c = self.config
        for name, teacher in self.teachers.items():
            if only and name != only:
                continue

            def on_batch(done: int, total: int, name: str = name) -> None:
                report(f"self-edits of the {name}: {done}/{total} passages")

            report(f"self-edits of the {name}")
            written = write_self_edits_many(
                self.host,
                [item.passage for item in passages],
                c.format,
                c.num_candidates,
                c.sample,
                teacher,
                on_batch=on_batch,
            )
            self.written[name] = written

    def texts(self, name: str, index: int, item: EvalPassage) -> list[str]:
        """The self-edits row ``name`` trains on for passage ``index`` (after
        ``prefetch``)."""
        c = self.config
        name = self.rows[name][0] if name in self.rows else name
        if name == "passage":
            return []
        if name == "supplied":
            return list(item.self_edits[: c.num_candidates])
        return self.written[name][index]


class Journal(JsonlJournal):
    """A single-mode run's journal (``seal.journal``): the self-edits it sampled, then one
    line per finished passage; a resumed run keeps them and goes on after the last finished
    passage, so a stopped run loses at most the passage it was on."""

    def __init__(self, path: Path, settings: dict[str, Any], *, resume: bool = False):
        super().__init__(path, settings, resume=resume)
        self.written: dict[str, list[list[str]]] | None = None
        self.done: dict[int, dict[str, PassageRow]] = {}
        for entry in self.entries:
            if "written" in entry:
                self.written = entry["written"]
            elif "passage" in entry:
                rows = {name: PassageRow.from_json(r) for name, r in entry["rows"].items()}
                self.done[int(entry["passage"])] = rows

    def record_written(self, written: dict[str, list[list[str]]]) -> None:
        self.written = written
        self.append({"written": written})

    def record_passage(self, index: int, rows: dict[str, PassageRow]) -> None:
        self.done[index] = rows
        self.append({"passage": index, "rows": {n: r.to_json() for n, r in rows.items()}})


def run_knowledge(
    host: AdapterHost,
    passages: Sequence[EvalPassage],
    config: InnerLoopConfig,
    *,
    mode: str = "single",
    teachers: Sequence[tuple[str, Teacher]] = (),
    teacher_host: AdapterHost | None = None,
    on_progress: Progress | None = None,
    journal: Journal | None = None,
    qa_forms: Sequence[str] = (),
) -> KnowledgeReport:
    """Every condition on ``passages``, in mode ``single`` or ``batch``. Each of ``teachers``
    ((name, teacher) pairs) adds a row (``teacher_rows``); passages with self-edits of their
    own make the ``supplied`` row. ``teacher_host`` writes the self-edits (default: ``host``,
    the student's own). A ``journal`` (single mode) records each finished passage and skips
    those it already holds. Several ``qa_forms`` make a row per form of each row with
    self-edits (``SOURCE/FORM``), trained on the same self-edits (default: the config's)."""
    if mode not in ("single", "batch"):
        raise ValueError(f"unknown mode {mode!r}; expected single or batch")
    if journal is not None and mode != "single":
        raise ValueError("only a single-mode run keeps a journal")
    writer = _Writer(teacher_host or host, config, teachers, qa_forms)
    names = ["base", *writer.conditions()]
    if not any(item.self_edits for item in passages):
        names = [n for n in names if not n.startswith("supplied")]
    results = {name: ConditionResult(name) for name in names}
    seconds: dict[str, float] = {}
    with _timed(seconds, "total"):
        if mode == "single":
            _single(
                host, passages, config, writer, results, seconds, on_progress or _quiet, journal
            )
        else:
            _batch(host, passages, config, writer, results, seconds, on_progress or _quiet)
    return KnowledgeReport(mode, list(results.values()), seconds)


def _single(
    host: AdapterHost,
    passages: Sequence[EvalPassage],
    config: InnerLoopConfig,
    writer: _Writer,
    results: dict[str, ConditionResult],
    seconds: dict[str, float],
    progress: Progress,
    journal: Journal | None = None,
) -> None:
    """Per passage: a fresh adapter per condition, all trained in one call, then graded with
    the base model in one call on the passage's questions."""
    total = len(passages)
    if journal is not None and journal.written is not None:
        writer.written = journal.written
    else:
        with _timed(seconds, "generate"):
            writer.prefetch(passages, lambda status: progress(0, total, status))
        if journal is not None:
            journal.record_written(writer.written)
    for index, item in enumerate(passages):
        if journal is not None and index in journal.done:
            for name, passage_row in journal.done[index].items():
                passage_row.add_to(results[name])
            progress(index + 1, total, "")
            continue
        names = writer.conditions(item)
        texts = {name: writer.texts(name, index, item) for name in names}
        progress(index, total, f"passage {index + 1}: training")
        with _timed(seconds, "train"):
            sets = [
                sequences_of(item.passage, texts[name], config.format, writer.qa_form(name))
                for name in names
            ]
            trained = train_many(host, sets, config.train, init=None)
        progress(index, total, f"passage {index + 1}: grading")
        probes = probes_of(item.passage)
        with _timed(seconds, "grade"):
            states: list[AdapterState | None] = [None, *(t.state for t in trained)]
            evaluations = evaluate_many(host, states, probes, config.answer_max_tokens)
        owners = [index] * len(probes)
        done = {
            name: PassageRow(
                _answers(evaluation, owners),
                SelfEdits(index, item.passage.title, texts[name]) if texts.get(name) else None,
            )
            for name, evaluation in zip(["base", *names], evaluations, strict=True)
        }
        for name, result in zip(names, trained, strict=True):
            done[name].losses = list(result.losses)
            done[name].tokens = result.tokens
            done[name].seconds = result.seconds
        for name, passage_row in done.items():
            passage_row.add_to(results[name])
        if journal is not None:
            journal.record_passage(index, done)
        progress(index + 1, total, "")


def _batch(
    host: AdapterHost,
    passages: Sequence[EvalPassage],
    config: InnerLoopConfig,
    writer: _Writer,
    results: dict[str, ConditionResult],
    seconds: dict[str, float],
    progress: Progress,
) -> None:
    """One adapter per condition trained on all its passages together (a passage without
    supplied self-edits is left out of ``supplied``), all graded in one call."""
    total = len(passages) + 2
    names = [name for name in results if name != "base"]
    # members[name][index]: the self-edits condition ``name`` trains on for passage ``index``
    members: dict[str, dict[int, list[str]]] = {name: {} for name in results}
    members["base"] = {index: [] for index in range(len(passages))}
    with _timed(seconds, "generate"):
        writer.prefetch(passages, lambda status: progress(0, total, status))
        for index, item in enumerate(passages):
            for name in writer.conditions(item):
                members[name][index] = writer.texts(name, index, item)
    done = len(passages)

    def on_step(step: int, steps: int) -> None:
        progress(done, total, f"training step {step}/{steps}")

    with _timed(seconds, "train"):
        sets = [
            [
                sequence
                for index, texts in members[name].items()
                for sequence in sequences_of(
                    passages[index].passage, texts, config.format, writer.qa_form(name)
                )
            ]
            for name in names
        ]
        trained = train_many(host, sets, config.train, init=None, on_step=on_step)
    progress(done + 1, total, "grading")
    probes, owners = _all_probes(passages)
    with _timed(seconds, "grade"):
        states: list[AdapterState | None] = [None, *(t.state for t in trained)]
        evaluations = evaluate_many(host, states, probes, config.answer_max_tokens)
    for name, evaluation in zip(["base", *names], evaluations, strict=True):
        row = results[name]
        row.answers = [a for a in _answers(evaluation, owners) if a.passage in members[name]]
        row.passages = len(members[name])
        row.self_edits = [
            SelfEdits(index, passages[index].passage.title, texts)
            for index, texts in members[name].items()
            if texts
        ]
    for name, result in zip(names, trained, strict=True):
        results[name].add_trained(result)
    progress(total, total, "")


def run_forgetting(
    host: AdapterHost,
    passages: Sequence[EvalPassage],
    config: InnerLoopConfig,
    *,
    teacher: Teacher | None = None,
    teacher_host: AdapterHost | None = None,
    on_progress: Progress | None = None,
) -> ForgettingReport:
    """Learn ``passages`` one after another on one adapter (each update starts from the
    previous one) with the self-edits of ``teacher`` (the untrained teacher when None), and
    grade every passage, the later ones too, after each update."""
    progress = on_progress or _quiet
    condition = "teacher" if teacher is not None else "base-teacher"
    writer = _Writer(teacher_host or host, config, [("", teacher)] if teacher else [])
    probes, owners = _all_probes(passages)
    total = len(passages) + 1
    seconds: dict[str, float] = {}

    def per_passage(evaluation: Evaluation) -> list[int]:
        counts = [0] * len(passages)
        for graded, owner in zip(evaluation.graded, owners, strict=True):
            counts[owner] += graded.correct
        return counts

    with _timed(seconds, "total"):
        progress(0, total, "grading the base model")
        with _timed(seconds, "grade"):
            before = evaluate_many(host, [None], probes, config.answer_max_tokens)[0]
        state: AdapterState | None = None
        updates: list[ConditionResult] = []
        correct: list[list[int]] = []
        with _timed(seconds, "generate"):
            writer.prefetch(passages, lambda status: progress(1, total, status), only=condition)
        for index, item in enumerate(passages):
            texts = writer.texts(condition, index, item)
            progress(index + 1, total, f"update {index + 1}: training")
            with _timed(seconds, "train"):
                sequences = sequences_of(item.passage, texts, config.format, config.qa_form)
                trained = train_many(host, [sequences], config.train, init=state)[0]
            state = trained.state
            progress(index + 1, total, f"update {index + 1}: grading")
            with _timed(seconds, "grade"):
                evaluation = evaluate_many(host, [state], probes, config.answer_max_tokens)[0]
            update = ConditionResult(
                f"after update {index + 1}",
                answers=_answers(evaluation, owners),
                passages=len(passages),
                self_edits=[SelfEdits(index, item.passage.title, texts)],
            )
            update.add_trained(trained)
            updates.append(update)
            correct.append(per_passage(evaluation))
        progress(total, total, "")
    return ForgettingReport(
        condition=condition,
        titles=[item.passage.title for item in passages],
        questions=[len(item.passage.questions) for item in passages],
        before=per_passage(before),
        correct=correct,
        updates=updates,
        seconds=seconds,
    )
