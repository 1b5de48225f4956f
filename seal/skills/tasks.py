"""Few-shot tasks: demonstrations as text, ARC grids as rows of digits.

A skill is learned from input -> output demonstrations. Everything outside ``grid_of`` and
``grid_text`` sees them as text, so ARC grids and a tenant's own text tasks go through the same
prompts, training and grading; a task is a grid task when every input and output parses as a
grid, and only then do the grid augmentations apply (``seal.skills.augment``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

Grid = list[list[int]]
"""An ARC grid: rows of colours 0-9, all rows the same length."""


@dataclass(frozen=True)
class Demo:
    """One demonstration or test case, always text."""

    input: str
    output: str


@dataclass(frozen=True)
class SkillTask:
    """A task to learn: its name, its demonstrations and, when it has one, what it does."""

    name: str
    demos: tuple[Demo, ...]
    description: str = ""

    @property
    def grid(self) -> bool:
        """Every input and output parses as a grid (``grid_of``)."""
        return bool(self.demos) and all(
            grid_of(d.input) is not None and grid_of(d.output) is not None for d in self.demos
        )


def grid_text(grid: Grid) -> str:
    """One line per row, digits without separators: ``[[0, 1, 2], [3, 4, 0]]`` -> ``"012\\n340"``.
    One digit is one token of the default model's tokenizer, so a grid costs rows x (cols + 1)
    tokens."""
    if not grid or not grid[0] or any(len(row) != len(grid[0]) for row in grid):
        raise ValueError("a grid is a non-empty list of rows of the same non-zero length")
    if any(
        not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= 9 for r in grid for c in r
    ):
        raise ValueError("a grid's cells are integers 0-9")
    return "\n".join("".join(str(c) for c in row) for row in grid)


def grid_of(text: str) -> Grid | None:
    """The inverse of ``grid_text``; None when ``text`` is not a rectangular grid of digits 0-9
    (surrounding whitespace, and each line's, is ignored)."""
    rows = [line.strip() for line in text.strip().splitlines()]
    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        return None
    if not all(row.isascii() and row.isdigit() for row in rows):
        return None
    return [[int(c) for c in row] for row in rows]


def arc_tasks(folder: Path) -> list[tuple[SkillTask, list[Demo]]]:
    """The ARC tasks of ``folder`` (``train_challenges.json`` and ``train_solutions.json``, the
    layout of the ARC Prize files): each task of its train pairs, with its test cases and their
    solutions, every grid as ``grid_text``. In the files' order."""
    challenges = json.loads((Path(folder) / "train_challenges.json").read_text())
    solutions = json.loads((Path(folder) / "train_solutions.json").read_text())
    out = []
    for name, challenge in challenges.items():
        demos = tuple(
            Demo(grid_text(pair["input"]), grid_text(pair["output"])) for pair in challenge["train"]
        )
        tests = [
            Demo(grid_text(case["input"]), grid_text(solution))
            for case, solution in zip(challenge["test"], solutions[name], strict=True)
        ]
        out.append((SkillTask(name, demos), tests))
    return out


def _demo(item: Any) -> Demo:
    return Demo(str(item["input"]), str(item["output"]))


def text_tasks(path: Path | None = None) -> list[tuple[SkillTask, list[Demo]]]:
    """The text tasks the project ships (``seal/skills/text_tasks.json``, made up for it), or
    those of ``path`` in the same shape: ``[{"name", "description", "demos": [{"input",
    "output"}], "tests": [...]}]``. Each task with its test cases."""
    if path is None:
        raw = resources.files("seal.skills").joinpath("text_tasks.json").read_text()
    else:
        raw = Path(path).read_text()
    return [
        (
            SkillTask(item["name"], tuple(_demo(d) for d in item["demos"]), item["description"]),
            [_demo(d) for d in item["tests"]],
        )
        for item in json.loads(raw)
    ]


def load_tasks(data: str) -> list[tuple[SkillTask, list[Demo]]]:
    """The tasks ``data`` names: ``text`` (the shipped text tasks), a folder of ARC tasks or a
    JSON file of text tasks. A ValueError says when it is none of them."""
    path = Path(data)
    if data == "text":
        return text_tasks()
    if path.is_dir():
        return arc_tasks(path)
    if path.is_file():
        return text_tasks(path)
    raise ValueError(f"{data} is neither `text`, a folder of ARC tasks nor a file")
