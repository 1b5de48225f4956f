"""What an evaluation run leaves behind: a table for the terminal, ``results.json`` with every
answer, and PNG charts (accuracy with 95% Wilson intervals; the forgetting heat map)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from research.evaluation import CONDITIONS
from research.results import (
    ConditionResult,
    ForgettingReport,
    KnowledgeReport,
    Paired,
    mcnemar_exact,
    wilson_interval,
)
from seal.knowledge import InnerLoopConfig
from seal.questions import SYSTEM

GRADER = (
    "correct when the normalized gold answer appears in the normalized first sentence of the "
    "greedy answer to the question asked with only 'Topic: {title}' (no passage)"
)
INTERVAL = "95% Wilson score interval"


def settings_json(config: InnerLoopConfig, **extra: Any) -> dict[str, Any]:
    """The settings of a run: ``extra`` (model, seed, mode, ...) and the inner loop's config."""
    return {
        **extra,
        "format": config.format,
        "samples": config.num_candidates,
        "sample": asdict(config.sample),
        "train": asdict(config.train),
        "answer_max_tokens": config.answer_max_tokens,
        "qa_form": config.qa_form,
        "answer_system_prompt": SYSTEM,
        "grader": GRADER,
        "interval": INTERVAL,
    }


def _round(x: float) -> float:
    return round(x, 4)


def _description(name: str) -> str:
    source, _, form = name.partition("/")
    if source.startswith("teacher:"):
        text = f"passage + self-edits of the teacher {source.split(':', 1)[1]!r}"
    else:
        text = CONDITIONS.get(source, source)
    return f"{text}; question-answer items trained as {form}" if form else text


def _paired_json(pair: Paired | None) -> dict[str, Any] | None:
    if pair is None:
        return None
    return {
        "questions": pair.questions,
        "only_this": pair.only_this,
        "only_passage": pair.only_other,
        "mcnemar_p": _round(pair.p_value),
    }


def condition_json(row: ConditionResult, vs_passage: Paired | None = None) -> dict[str, Any]:
    low, high = row.interval
    losses = row.final_losses
    return {
        "name": row.name,
        "description": _description(row.name),
        "passages": row.passages,
        "questions": row.questions,
        "correct": row.correct,
        "accuracy": _round(row.accuracy),
        "ci95": [_round(low), _round(high)],
        "train_seconds": _round(row.train_seconds),
        "train_tokens": row.train_tokens,
        "epochs": row.epochs,
        "final_loss": _round(sum(losses) / len(losses)) if losses else None,
        "vs_passage": _paired_json(vs_passage),
        "self_edits": [asdict(s) for s in row.self_edits],
        "answers": [asdict(a) for a in row.answers],
    }


def _timing(seconds: dict[str, float]) -> dict[str, float]:
    return {f"{key}_seconds": _round(value) for key, value in seconds.items()}


def knowledge_json(report: KnowledgeReport, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "experiment": "knowledge",
        "settings": settings,
        "conditions": [
            condition_json(row, report.against().get(row.name)) for row in report.conditions
        ],
        "timing": _timing(report.seconds),
    }


def forgetting_json(report: ForgettingReport) -> dict[str, Any]:
    return {
        "condition": report.condition,
        "titles": report.titles,
        "questions": report.questions,
        "before": [_round(x) for x in report.before_accuracy],
        "correct_before": report.before,
        "matrix": [[_round(x) for x in row] for row in report.matrix],
        "correct": report.correct,
    }


def sequential_json(report: ForgettingReport, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "experiment": "knowledge",
        "settings": settings,
        "condition": report.condition,
        "updates": [condition_json(row) for row in report.updates],
        "forgetting": forgetting_json(report),
        "timing": _timing(report.seconds),
    }


def knowledge_table(report: KnowledgeReport) -> str:
    """One line per condition: accuracy with its interval, the exact McNemar test against the
    ``passage`` row of the same run (questions right only in this row / only in ``passage``,
    p), then what its adapters trained (tokens in the loss, mean epochs run, seconds); dashes
    for the untrained ``base``."""
    width = max([14, *(len(row.name) for row in report.conditions)])
    against = report.against()
    lines = [
        f"{'condition':<{width}} {'accuracy':>8} {'correct/questions':>18}  "
        f"{'95% CI (Wilson)':<16} {'vs passage (p)':>16}"
        f" {'trained tokens':>14} {'epochs':>6} {'train s':>8}"
    ]
    for row in report.conditions:
        pair = against.get(row.name)
        versus = f"{pair.only_this}/{pair.only_other} ({pair.p_value:.3f})" if pair else "-"
        low, high = row.interval
        if row.epochs:
            trained = (
                f" {row.train_tokens:>14} {sum(row.epochs) / len(row.epochs):>6.1f}"
                f" {row.train_seconds:>8.1f}"
            )
        else:
            trained = f" {'-':>14} {'-':>6} {'-':>8}"
        lines.append(
            f"{row.name:<{width}} {row.accuracy:>8.3f} {f'{row.correct}/{row.questions}':>18}"
            f"  {f'[{low:.3f}, {high:.3f}]':<16} {versus:>16}{trained}"
        )
    if against:
        lines.append(
            "vs passage: questions right only in this row / only in `passage`, and the exact "
            "two-sided McNemar p-value on them."
        )
    return "\n".join(lines)


def forgetting_table(report: ForgettingReport) -> str:
    """The accuracy matrix, one row per update; the diagonal is the passage just learned."""
    n = len(report.titles)
    head = "".join(f"{f'p{j + 1}':>7}" for j in range(n))
    lines = [
        f"{'':<10}{head}",
        f"{'before':<10}" + "".join(f"{x:>7.2f}" for x in report.before_accuracy),
    ]
    for i, row in enumerate(report.matrix):
        lines.append(f"{f'after {i + 1}':<10}" + "".join(f"{x:>7.2f}" for x in row))
    if report.correct:
        final = report.correct[-1]
        low, high = wilson_interval(sum(final), sum(report.questions))
        lines.append(
            f"after all {n} updates: {sum(final)}/{sum(report.questions)} correct "
            f"({sum(final) / max(sum(report.questions), 1):.3f}, 95% Wilson CI "
            f"[{low:.3f}, {high:.3f}])"
        )
    return "\n".join(lines)


def plot_accuracy(report: KnowledgeReport, path: Path) -> None:
    """A bar per condition, its 95% Wilson interval as the error bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = report.conditions
    figure = Figure(figsize=(1.6 + 1.3 * len(rows), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    accuracy = [row.accuracy for row in rows]
    errors = [
        [max(0.0, row.accuracy - row.interval[0]) for row in rows],
        [max(0.0, row.interval[1] - row.accuracy) for row in rows],
    ]
    positions = list(range(len(rows)))
    ax.bar(positions, accuracy, yerr=errors, capsize=5, color="#4c72b0")
    ax.set_xticks(positions, [f"{row.name}\n{row.correct}/{row.questions}" for row in rows])
    ax.set_ylim(0, 1)
    ax.set_ylabel("no-context accuracy")
    ax.set_title(f"Knowledge incorporation ({report.mode}); bars: 95% Wilson CI", fontsize=10)
    figure.savefig(path, dpi=120)


def plot_forgetting(report: ForgettingReport, path: Path) -> None:
    """Heat map of accuracy on passage j (columns) after update i (rows)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(report.titles)
    size = 2.5 + 0.45 * n
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    image = ax.imshow(report.matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=ax, label="accuracy")
    labels = [str(i + 1) for i in range(n)]
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(len(report.matrix)), labels[: len(report.matrix)])
    ax.set_xlabel("passage")
    ax.set_ylabel("after update")
    ax.set_title(f"Forgetting: sequential updates ({report.condition})", fontsize=10)
    if n <= 20:
        for i, row in enumerate(report.matrix):
            for j, value in enumerate(row):
                color = "black" if value > 0.6 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=color, fontsize=7)
    figure.savefig(path, dpi=120)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def write_knowledge(report: KnowledgeReport, out: Path, settings: dict[str, Any]) -> list[Path]:
    """``results.json`` and ``accuracy.png`` in ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    results, chart = out / "results.json", out / "accuracy.png"
    _write_json(results, knowledge_json(report, settings))
    plot_accuracy(report, chart)
    return [results, chart]


def write_forgetting(report: ForgettingReport, out: Path, settings: dict[str, Any]) -> list[Path]:
    """``results.json``, ``forgetting.json`` and ``forgetting.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    results, matrix, chart = out / "results.json", out / "forgetting.json", out / "forgetting.png"
    _write_json(results, sequential_json(report, settings))
    _write_json(matrix, forgetting_json(report))
    plot_forgetting(report, chart)
    return [results, matrix, chart]


# --- comparing two runs --------------------------------------------------------------------


@dataclass(frozen=True)
class PairedRow:
    """One condition of two runs, question by question."""

    condition: str
    questions: int
    first: int
    """Correct answers in the first run."""
    second: int
    only_first: int
    """Questions right in the first run and wrong in the second."""
    only_second: int
    same_self_edits: bool

    @property
    def p_value(self) -> float:
        """Exact two-sided McNemar test: how likely a split of the discordant questions at
        least this uneven is when both runs are equally good."""
        return mcnemar_exact(self.only_first, self.only_second)


def compare_runs(first: dict[str, Any], second: dict[str, Any]) -> list[PairedRow]:
    """Pair the conditions two ``results.json`` of ``seal eval knowledge`` share, question by
    question; the runs must have asked the same questions in the same order."""
    rows = []
    theirs = {c["name"]: c for c in second["conditions"]}
    for ours in first["conditions"]:
        other = theirs.get(ours["name"])
        if other is None:
            continue
        keys_a = [(a["passage"], a["question"]) for a in ours["answers"]]
        keys_b = [(a["passage"], a["question"]) for a in other["answers"]]
        if keys_a != keys_b:
            raise ValueError(
                f"condition {ours['name']!r}: the two runs asked different questions "
                f"({len(keys_a)} and {len(keys_b)}); compare runs on the same data and passages"
            )
        a = [x["correct"] for x in ours["answers"]]
        b = [x["correct"] for x in other["answers"]]
        rows.append(
            PairedRow(
                condition=ours["name"],
                questions=len(a),
                first=sum(a),
                second=sum(b),
                only_first=sum(x and not y for x, y in zip(a, b, strict=True)),
                only_second=sum(y and not x for x, y in zip(a, b, strict=True)),
                same_self_edits=ours.get("self_edits") == other.get("self_edits"),
            )
        )
    if not rows:
        raise ValueError("the two runs have no condition in common")
    return rows


def comparison_table(rows: list[PairedRow]) -> str:
    lines = [
        f"{'condition':<14}{'first':>10}{'second':>10}{'only 1st':>10}{'only 2nd':>10}"
        f"{'McNemar p':>11}  self-edits"
    ]
    for r in rows:
        lines.append(
            f"{r.condition:<14}{f'{r.first}/{r.questions}':>10}{f'{r.second}/{r.questions}':>10}"
            f"{r.only_first:>10}{r.only_second:>10}{r.p_value:>11.2f}  "
            f"{'same' if r.same_self_edits else 'different'}"
        )
    lines.append(
        "McNemar: exact two-sided test on the questions only one run answered right "
        "(p < 0.05: the runs differ beyond chance)."
    )
    return "\n".join(lines)
