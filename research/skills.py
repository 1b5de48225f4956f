"""``seal eval skills``: the SEAL paper's few-shot table for our student.

For each task (its demonstrations to learn from, its test cases with their solutions), four
rows, each graded on the test cases only (never trained on):

- ``in-context``: the base model with the demonstrations in its prompt, no training;
- ``ttt-fixed``: test-time training with the one fixed configuration (``DEFAULT_CONFIG``);
- ``teacher``: the untrained teacher writes k configurations, each trains its own adapter;
- ``restem``: the same after ReST-EM, the teacher fine-tuned on the configurations of the
  ``teacher`` row that solved their task (the paper's behaviour cloning on successful
  self-edits; ``keep`` below 1 also keeps those that answered that share of the test cases).
  Two folds: the teacher that writes for a task was trained on the other fold's tasks only,
  so the row is out of sample. A fold whose other half kept nothing keeps the untrained
  teacher, and says so; as a task's configurations are written with the same seed in every
  row, its attempts are then the teacher row's, reused rather than trained again.

A task is solved when every test case is answered exactly. The rows with k configurations
report the share of (task, configuration) pairs solved (the paper's "success rate" of
self-edits) and how many tasks any configuration solved; every rate has its 95% Wilson
interval.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from research.results import wilson_interval
from seal.lora import STUDENT, TEACHER, AdapterHost, AdapterState
from seal.skills.config import DEFAULT_CONFIG, ConfigError, SkillConfig, parse_config
from seal.skills.tasks import Demo, SkillTask
from seal.skills.teacher import teacher_turns, write_configs
from seal.skills.ttt import ConfigResult, SkillScale, fit_context, matches, predict, train_with
from seal.train import TrainConfig, tokenize, train_adapter

ROWS = ("in-context", "ttt-fixed", "teacher", "restem")

Case = tuple[SkillTask, list[Demo]]


@dataclass
class Attempt:
    """One way of answering one task's test cases."""

    task: str
    row: str
    correct: int
    cases: int
    text: str = ""
    """The configuration as written (rows with configurations)."""
    parsed: bool = True
    answers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def solved(self) -> bool:
        return self.parsed and self.cases > 0 and self.correct == self.cases

    @property
    def share(self) -> float:
        """The share of the test cases answered exactly."""
        return self.correct / self.cases if self.parsed and self.cases else 0.0

    def kept(self, keep: float) -> bool:
        """Whether ReST-EM learns from this configuration: it answered at least the share
        ``keep`` of the test cases, and at least one."""
        return self.correct > 0 and self.share >= keep


@dataclass
class RowSummary:
    row: str
    attempts: int
    solved: int
    tasks: int
    tasks_solved: int
    parsed: int

    @property
    def rate(self) -> float:
        return self.solved / self.attempts if self.attempts else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.solved, self.attempts)


@dataclass
class SkillsReport:
    data: str
    k: int
    seed: int
    scale: dict[str, Any]
    keep: float = 1.0
    """ReST-EM learned from the configurations that answered at least this share."""
    attempts: list[Attempt] = field(default_factory=list)
    folds: dict[str, str] = field(default_factory=dict)
    """Each task's fold ("a" or "b") and what its ReST-EM teacher learned from."""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[RowSummary]:
        rows = []
        for row in ROWS:
            mine = [a for a in self.attempts if a.row == row]
            if not mine:
                continue
            tasks = sorted({a.task for a in mine})
            rows.append(
                RowSummary(
                    row=row,
                    attempts=len(mine),
                    solved=sum(a.solved for a in mine),
                    tasks=len(tasks),
                    tasks_solved=sum(any(a.solved for a in mine if a.task == t) for t in tasks),
                    parsed=sum(a.parsed for a in mine),
                )
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "k": self.k,
            "seed": self.seed,
            "scale": self.scale,
            "keep": self.keep,
            "folds": self.folds,
            "notes": self.notes,
            "summary": [
                {**asdict(s), "rate": s.rate, "interval": s.interval} for s in self.summary()
            ],
            "attempts": [asdict(a) for a in self.attempts],
        }


def _attempt(
    host: AdapterHost,
    task: SkillTask,
    tests: Sequence[Demo],
    row: str,
    state: AdapterState | None,
    scale: SkillScale,
    *,
    text: str = "",
    started: float,
) -> Attempt:
    longest = max(tests, key=lambda d: len(d.input)).input
    context = fit_context(host.tokenizer, task, task.demos, longest, scale.max_seq_len)
    answers = predict(host, STUDENT, state, task, context, [t.input for t in tests], scale)
    correct = sum(matches(a, t.output) for a, t in zip(answers, tests, strict=True))
    return Attempt(
        task.name,
        row,
        correct,
        len(tests),
        text=text,
        answers=answers,
        seconds=time.perf_counter() - started,
    )


def _with_config(
    host: AdapterHost,
    task: SkillTask,
    tests: Sequence[Demo],
    row: str,
    text: str,
    scale: SkillScale,
    seed: int,
) -> Attempt:
    started = time.perf_counter()
    try:
        config: SkillConfig = parse_config(text)
    except ConfigError:
        return Attempt(task.name, row, 0, len(tests), text=text, parsed=False)
    state, _ = train_with(host, STUDENT, task, task.demos, config, scale, seed)
    return _attempt(host, task, tests, row, state, scale, text=text, started=started)


def _teacher_rows(
    host: AdapterHost,
    cases: Sequence[Case],
    row: str,
    teacher: AdapterState | None,
    k: int,
    scale: SkillScale,
    seed: int,
    report: SkillsReport,
    on_done: Callable[[SkillsReport, str], None],
) -> None:
    for task, tests in cases:
        texts = write_configs(
            host, TEACHER if teacher is not None else None, teacher, task, k, _task_seed(seed, task)
        )
        for text in texts:
            report.attempts.append(_with_config(host, task, tests, row, text, scale, seed))
        on_done(report, f"{task.name}: {row}")


def _task_seed(seed: int, task: SkillTask) -> int:
    """The seed a teacher writes a task's configurations with: the same in every row, so that
    the rows differ only in their teacher."""
    return seed + zlib.crc32(task.name.encode())


def _train_teacher(
    host: AdapterHost, solved: Sequence[tuple[SkillTask, ConfigResult]], seed: int
) -> AdapterState:
    """Behaviour cloning on the successful configurations (the paper: 8 epochs, lr 5e-5 at
    LoRA rank 16 on a 1B model; a higher rate for our small teacher's rank-32 slot)."""
    examples = tokenize(host, teacher_turns(solved), 4096)
    config = TrainConfig(learning_rate=3e-4, epochs=8, batch_size=2, seed=seed)
    return train_adapter(host, TEACHER, examples, config).state


def run_skills_eval(
    host: AdapterHost,
    cases: Sequence[Case],
    *,
    data: str,
    k: int = 3,
    seed: int = 0,
    scale: SkillScale | None = None,
    rows: Sequence[str] = ROWS,
    keep: float = 1.0,
    earlier: Sequence[Attempt] = (),
    on_done: Callable[[SkillsReport, str], None] = lambda _report, _what: None,
) -> SkillsReport:
    """Every row of ``rows`` for every task of ``cases``; ``host`` needs a teacher slot for
    the ``restem`` row. ReST-EM learns from the ``teacher`` row's configurations that answered
    at least the share ``keep`` of their task's test cases (the paper: 1.0, every one; any
    share keeps only configurations that answered one or more). ``earlier`` attempts (of an
    earlier run with the same tasks, k and seed) stand in for the rows not in ``rows``: the
    ``restem`` row alone can reuse a run's ``teacher`` row. ``on_done(report, what)`` hears
    of each task's row done, with the report so far (a long run can save it as it goes)."""
    scale = scale or SkillScale()
    report = SkillsReport(data=data, k=k, seed=seed, scale=asdict(scale), keep=keep)
    names = {task.name for task, _ in cases}
    report.attempts += [a for a in earlier if a.row not in rows and a.task in names]
    if earlier:
        report.notes.append(
            "rows " + ", ".join(sorted({a.row for a in report.attempts})) + " from an earlier run"
        )
    for task, tests in cases if {"in-context", "ttt-fixed"} & set(rows) else ():
        if "in-context" in rows:
            started = time.perf_counter()
            report.attempts.append(
                _attempt(host, task, tests, "in-context", None, scale, started=started)
            )
        if "ttt-fixed" in rows:
            report.attempts.append(
                _with_config(host, task, tests, "ttt-fixed", DEFAULT_CONFIG.to_json(), scale, seed)
            )
        on_done(report, f"{task.name}: in-context, ttt-fixed")
    reused = any(a.row == "teacher" for a in report.attempts)
    if "teacher" in rows or ("restem" in rows and not reused):
        _teacher_rows(host, cases, "teacher", None, k, scale, seed, report, on_done)
    if "restem" in rows:
        folds = {task.name: "ab"[i % 2] for i, (task, _) in enumerate(cases)}
        for fold in "ab":
            _restem_fold(host, cases, folds, fold, k, scale, seed, keep, report, on_done)
    return report


def _restem_fold(
    host: AdapterHost,
    cases: Sequence[Case],
    folds: dict[str, str],
    fold: str,
    k: int,
    scale: SkillScale,
    seed: int,
    keep: float,
    report: SkillsReport,
    on_done: Callable[[SkillsReport, str], None],
) -> None:
    """The ``restem`` row of the tasks in ``fold``: their teacher learns only from the other
    fold's ``teacher`` row, so that the row is out of sample."""
    mine = [c for c in cases if folds[c[0].name] == fold]
    others = {t.name: t for t, _ in cases if folds[t.name] != fold}
    solved = [
        (others[a.task], ConfigResult(a.text, DEFAULT_CONFIG, None, a.share, None))
        for a in report.attempts
        if a.row == "teacher" and a.task in others and a.kept(keep)
    ]
    what = "solved their task" if keep >= 1.0 else f"answered at least {keep:.0%} of the test cases"
    for task, _ in mine:
        report.folds[task.name] = (
            f"fold {fold}: teacher trained on {len(solved)} configuration(s) that {what}, "
            f"of {len({t.name for t, _ in solved})} tasks of the other fold"
        )
    if not solved:
        # the untrained teacher with the same seeds writes the same configurations,
        # which train the same adapters: the teacher row's attempts are this row's
        report.notes.append(
            f"fold {fold}: none of the other fold's configurations {what}, "
            "so its ReST-EM teacher is the untrained one and its attempts are the "
            "teacher row's (the same teacher and seeds)"
        )
        in_fold = {task.name for task, _ in mine}
        report.attempts += [
            replace(a, row="restem")
            for a in list(report.attempts)
            if a.row == "teacher" and a.task in in_fold
        ]
        on_done(report, f"fold {fold}: restem (the teacher row's attempts)")
        return
    teacher = _train_teacher(host, solved, seed)
    _teacher_rows(host, mine, "restem", teacher, k, scale, seed, report, on_done)


def format_skills(report: SkillsReport) -> str:
    lines = [
        f"seal eval skills: {report.data}, k = {report.k} configurations per task, seed "
        f"{report.seed}"
        + (
            f", ReST-EM kept configurations with at least {report.keep:.0%}"
            if report.keep < 1
            else ""
        ),
        "",
        "| row | success rate | 95% interval | solved / attempts | tasks solved | "
        "configurations that parsed |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in report.summary():
        low, high = s.interval
        lines.append(
            f"| {s.row} | {s.rate:.1%} | {low:.1%} - {high:.1%} | {s.solved} / {s.attempts} | "
            f"{s.tasks_solved} of {s.tasks} | {s.parsed} of {s.attempts} |"
        )
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def attempts_of(data: dict[str, Any]) -> list[Attempt]:
    """The attempts of a report's JSON (what ``SkillsReport.to_json`` wrote)."""
    return [Attempt(**a) for a in data["attempts"]]
