"""SQuAD-shaped data files for the research scripts: [{"title", "context", "questions":
[{"question", "answer"}]}], read into the ML core's passages. The CLI reads the same files
through :mod:`sealctl.data`, which turns a bad file into a usage error."""

from __future__ import annotations

import json
from pathlib import Path

from seal.selfedit import QA, Passage

EXPECTED = "expected a JSON list of {title, context, questions: [{question, answer}]}"


class DataError(ValueError):
    """A data file that does not hold what :data:`EXPECTED` says."""


def data_rows(path: Path) -> list:
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: {EXPECTED} ({exc})") from exc
    if not isinstance(rows, list):
        raise DataError(f"{path}: {EXPECTED} (the file holds a {type(rows).__name__})")
    return rows


def passages_of(rows: list, path: Path) -> list[Passage]:
    try:
        return [
            Passage(
                row["title"],
                row["context"],
                tuple(QA(q["question"], q["answer"]) for q in row.get("questions", [])),
            )
            for row in rows
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: {EXPECTED} ({exc})") from exc


def load_passages(path: Path) -> list[Passage]:
    """Passages of a SQuAD-shaped JSON file, with their questions."""
    return passages_of(data_rows(path), path)
