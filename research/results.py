"""What a knowledge-incorporation run measures (``research.evaluation`` runs it): the graded
answers, grouped into one row per condition or one per update, and the statistics the tables
quote with them (95% Wilson intervals, McNemar's exact test of paired answers).

They live apart from the runs so that the report, the skills table and the one-off scripts can
use them without importing the training and grading code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seal.train import TrainResult

#: The normal quantile of a two-sided 95% interval.
Z95 = NormalDist().inv_cdf(0.975)


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``correct`` successes in ``total`` trials (95% by
    default); (0, 1) when there are no trials."""
    if not 0 <= correct <= max(total, 0):
        raise ValueError(f"{correct} correct out of {total} questions")
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class Answer:
    passage: int
    """Index of the passage the question belongs to, among those evaluated."""
    title: str
    question: str
    gold: str
    answer: str
    correct: bool


@dataclass(frozen=True)
class SelfEdits:
    passage: int
    title: str
    texts: list[str]


@dataclass
class ConditionResult:
    """One row of the table: every answer graded under one condition."""

    name: str
    answers: list[Answer] = field(default_factory=list)
    passages: int = 0
    self_edits: list[SelfEdits] = field(default_factory=list)
    final_losses: list[float] = field(default_factory=list)
    """The last epoch's training loss of each adapter trained for this condition."""
    epochs: list[int] = field(default_factory=list)
    """The epochs each adapter ran (fewer than configured when it stopped early)."""
    train_tokens: int = 0
    """Tokens that entered the training loss, all adapters and epochs."""
    train_seconds: float = 0.0

    @property
    def questions(self) -> int:
        return len(self.answers)

    @property
    def correct(self) -> int:
        return sum(a.correct for a in self.answers)

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.questions else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.questions)

    def add_trained(self, trained: TrainResult) -> None:
        self.final_losses.extend(trained.losses[-1:])
        self.epochs.append(len(trained.losses))
        self.train_tokens += trained.tokens
        self.train_seconds += trained.seconds


@dataclass(frozen=True)
class Paired:
    """Two rows of one run, question by question (the questions both were asked)."""

    questions: int
    only_this: int
    """Questions this row got right and the other did not."""
    only_other: int

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.only_this, self.only_other)


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar test of paired right/wrong answers: how likely a split of the
    discordant questions at least this uneven is when both are equally good."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired(row: ConditionResult, other: ConditionResult) -> Paired:
    """``row`` against ``other`` on the questions both answered."""
    theirs = {(a.passage, a.question): a.correct for a in other.answers}
    pairs = [
        (a.correct, theirs[key]) for a in row.answers if (key := (a.passage, a.question)) in theirs
    ]
    return Paired(
        questions=len(pairs),
        only_this=sum(x and not y for x, y in pairs),
        only_other=sum(y and not x for x, y in pairs),
    )


@dataclass
class KnowledgeReport:
    mode: str
    conditions: list[ConditionResult]
    seconds: dict[str, float]
    """Wall time of self-edit generation, training, grading and the whole run."""

    def against(self, name: str = "passage") -> dict[str, Paired]:
        """Every other row paired with row ``name`` (none when the run has no such row)."""
        rows = {row.name: row for row in self.conditions}
        if name not in rows:
            return {}
        return {r.name: paired(r, rows[name]) for r in self.conditions if r.name != name}


@dataclass
class ForgettingReport:
    """Passages learned one after another on one adapter, all re-graded after each update."""

    condition: str
    titles: list[str]
    questions: list[int]
    """Questions per passage."""
    before: list[int]
    """Correct answers per passage before any update (the base model)."""
    correct: list[list[int]]
    """``correct[i][j]``: correct answers on passage j after the update on passage i."""
    updates: list[ConditionResult]
    """Per update: the self-edits it trained on and every answer graded after it."""
    seconds: dict[str, float]

    @property
    def matrix(self) -> list[list[float]]:
        """Accuracy on passage j (columns) after update i (rows)."""
        return [self._accuracy(row) for row in self.correct]

    @property
    def before_accuracy(self) -> list[float]:
        return self._accuracy(self.before)

    def _accuracy(self, correct: list[int]) -> list[float]:
        return [c / n if n else 0.0 for c, n in zip(correct, self.questions, strict=True)]


@dataclass
class PassageRow:
    """What one condition gave on one passage: its answers, the self-edits it trained on and
    what its adapter's training cost (None for the untrained ``base``)."""

    answers: list[Answer]
    self_edits: SelfEdits | None = None
    losses: list[float] | None = None
    tokens: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "answers": [asdict(a) for a in self.answers],
            "self_edits": asdict(self.self_edits) if self.self_edits else None,
            "losses": self.losses,
            "tokens": self.tokens,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PassageRow:
        edits = data.get("self_edits")
        return cls(
            answers=[Answer(**a) for a in data["answers"]],
            self_edits=SelfEdits(**edits) if edits else None,
            losses=data.get("losses"),
            tokens=int(data.get("tokens", 0)),
            seconds=float(data.get("seconds", 0.0)),
        )

    def add_to(self, row: ConditionResult) -> None:
        row.answers.extend(self.answers)
        row.passages += 1
        if self.self_edits is not None:
            row.self_edits.append(self.self_edits)
        if self.losses is not None:
            row.final_losses.extend(self.losses[-1:])
            row.epochs.append(len(self.losses))
            row.train_tokens += self.tokens
            row.train_seconds += self.seconds
