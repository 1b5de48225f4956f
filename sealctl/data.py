"""The data files the commands read: SQuAD-shaped passages with their questions, and
optionally another model's self-edits, with errors that say what the file should hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from research.evaluation import EvalPassage
    from seal.selfedit import Passage


def data_rows(path: Path) -> list:
    from research import data  # the CLI starts without the research package

    try:
        return data.data_rows(path)
    except data.DataError as exc:
        raise typer.BadParameter(str(exc)) from exc


def load_passages(path: Path) -> list[Passage]:
    """Passages of a SQuAD-shaped JSON file: [{"title", "context", "questions": [...]}]."""
    return _passages(data_rows(path), path)


def _passages(rows: list, path: Path) -> list[Passage]:
    from research import data

    try:
        return data.passages_of(rows, path)
    except data.DataError as exc:
        raise typer.BadParameter(str(exc)) from exc


def load_eval_passages(path: Path) -> list[EvalPassage]:
    """As ``load_passages``, with each passage's optional ``"self_edits"``: a list of
    self-edit texts (e.g. written by another model), each one whole self-edit."""
    from research.evaluation import EvalPassage

    rows = data_rows(path)
    documents = []
    for index, (row, passage) in enumerate(zip(rows, _passages(rows, path), strict=True)):
        edits = row.get("self_edits", [])
        if not isinstance(edits, list) or not all(isinstance(e, str) and e.strip() for e in edits):
            raise typer.BadParameter(
                f'{path}: passage {index} ({passage.title!r}): "self_edits" must be a list of '
                f"non-empty strings, each one whole self-edit; got {json.dumps(edits)[:80]}"
            )
        documents.append(EvalPassage(passage, tuple(edits)))
    return documents
