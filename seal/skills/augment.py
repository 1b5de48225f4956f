"""Augmentations: more training tasks from a few demonstrations, each still solvable.

A geometric augmentation maps every grid of a task, inputs and outputs alike, by the same
invertible function g. A task whose rule is f becomes a task whose rule is g f g^-1: a
different rule, but one that the demonstrations determine as well as they determined f, which
is what test-time training needs (the paper's ``arclib/augmenters.py``). Colour permutations
(1-9 permuted, 0 the background kept) and demonstration orders change the surface only; order
permutations are the one augmentation of text tasks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from seal.skills.config import SkillConfig
from seal.skills.tasks import Demo, Grid, SkillTask, grid_of, grid_text

MAX_SIDE = 30
"""ARC's largest grid side; an augmentation that would make a grid larger is skipped."""


def rotate90(grid: Grid) -> Grid:
    """A quarter turn counter-clockwise (numpy's ``rot90``)."""
    return [list(row) for row in zip(*grid, strict=True)][::-1]


def rotate180(grid: Grid) -> Grid:
    return [row[::-1] for row in grid[::-1]]


def rotate270(grid: Grid) -> Grid:
    return [list(row)[::-1] for row in zip(*grid, strict=True)]


def flip_up_down(grid: Grid) -> Grid:
    return [list(row) for row in grid[::-1]]


def flip_left_right(grid: Grid) -> Grid:
    return [row[::-1] for row in grid]


def transpose(grid: Grid) -> Grid:
    return [list(row) for row in zip(*grid, strict=True)]


def upscale(grid: Grid) -> Grid:
    """Every cell as a 2x2 block."""
    return [[c for c in row for _ in range(2)] for row in grid for _ in range(2)]


def downscale(grid: Grid) -> Grid:
    """``upscale``'s inverse: one cell of each 2x2 block."""
    return [row[::2] for row in grid[::2]]


def double_height(grid: Grid) -> Grid:
    """Every row twice."""
    return [list(row) for row in grid for _ in range(2)]


def halve_height(grid: Grid) -> Grid:
    return [list(row) for row in grid[::2]]


def double_width(grid: Grid) -> Grid:
    """Every column twice."""
    return [[c for c in row for _ in range(2)] for row in grid]


def halve_width(grid: Grid) -> Grid:
    return [row[::2] for row in grid]


def tile_rows(grid: Grid) -> Grid:
    """The grid twice, one above the other."""
    return [list(row) for row in grid + grid]


def untile_rows(grid: Grid) -> Grid:
    return [list(row) for row in grid[: len(grid) // 2]]


def tile_columns(grid: Grid) -> Grid:
    """The grid twice, side by side."""
    return [row + row for row in grid]


def untile_columns(grid: Grid) -> Grid:
    return [row[: len(row) // 2] for row in grid]


def tile_both(grid: Grid) -> Grid:
    return tile_rows(tile_columns(grid))


def untile_both(grid: Grid) -> Grid:
    return untile_columns(untile_rows(grid))


GridMap = Callable[[Grid], Grid]


@dataclass(frozen=True)
class Augmentation:
    """A named, pure function on grids, applied to every demonstration's input and output
    alike; ``inverse`` undoes it."""

    name: str
    forward: GridMap
    inverse: GridMap

    def then(self, other: Augmentation) -> Augmentation:
        """This augmentation, then ``other``."""
        first, second = self, other
        return Augmentation(
            f"{first.name}+{second.name}",
            lambda g: second.forward(first.forward(g)),
            lambda g: first.inverse(second.inverse(g)),
        )

    def __call__(self, task: SkillTask) -> SkillTask | None:
        """``task`` with every grid mapped; None when a grid would exceed ``MAX_SIDE`` (or the
        task is not a grid task)."""
        return _map_task(task, self.forward, f"{task.name}/{self.name}")

    def undo(self, task: SkillTask) -> SkillTask | None:
        return _map_task(task, self.inverse, task.name.removesuffix(f"/{self.name}"))


def _map_task(task: SkillTask, fn: GridMap, name: str) -> SkillTask | None:
    demos = []
    for demo in task.demos:
        pair = []
        for text in (demo.input, demo.output):
            grid = grid_of(text)
            if grid is None:
                return None
            mapped = fn(grid)
            if not mapped or len(mapped) > MAX_SIDE or len(mapped[0]) > MAX_SIDE:
                return None
            pair.append(grid_text(mapped))
        demos.append(Demo(pair[0], pair[1]))
    return SkillTask(name, tuple(demos), task.description)


ROTATE_90 = Augmentation("rotate90", rotate90, rotate270)
ROTATE_180 = Augmentation("rotate180", rotate180, rotate180)
ROTATE_270 = Augmentation("rotate270", rotate270, rotate90)
FLIP_UP_DOWN = Augmentation("flip_up_down", flip_up_down, flip_up_down)
FLIP_LEFT_RIGHT = Augmentation("flip_left_right", flip_left_right, flip_left_right)
TRANSPOSE = Augmentation("transpose", transpose, transpose)
UPSCALE = Augmentation("upscale", upscale, downscale)

BASIC = (ROTATE_90, ROTATE_180, ROTATE_270, FLIP_UP_DOWN, FLIP_LEFT_RIGHT, TRANSPOSE)
SIZE = (
    UPSCALE,
    Augmentation("double_height", double_height, halve_height),
    Augmentation("double_width", double_width, halve_width),
)
CHAIN = tuple(
    a.then(UPSCALE)
    for a in (ROTATE_90, ROTATE_270, ROTATE_180, FLIP_UP_DOWN, FLIP_LEFT_RIGHT, TRANSPOSE)
)
REPEAT = (
    Augmentation("tile_rows", tile_rows, untile_rows),
    Augmentation("tile_columns", tile_columns, untile_columns),
    Augmentation("tile_both", tile_both, untile_both),
)


def colour_permutation(rng: random.Random) -> Augmentation:
    """A random permutation of the colours 1-9; 0, the background, is kept."""
    colours = list(range(1, 10))
    rng.shuffle(colours)
    table = [0, *colours]
    back = [table.index(c) for c in range(10)]
    name = "colours" + "".join(map(str, colours))
    return Augmentation(
        name,
        lambda g: [[table[c] for c in row] for row in g],
        lambda g: [[back[c] for c in row] for row in g],
    )


def permute_demos(task: SkillTask, rng: random.Random) -> SkillTask:
    """The same demonstrations in a random order (any task, text included)."""
    demos = list(task.demos)
    rng.shuffle(demos)
    return SkillTask(task.name, tuple(demos), task.description)


def augmentations(config: SkillConfig, grid: bool) -> list[Augmentation]:
    """The grid augmentations the configuration asks for, in the paper's order; none for a
    task that is not a grid task."""
    if not grid:
        return []
    chosen = [
        (config.use_basic_augmentations, BASIC),
        (config.use_size_augmentations, SIZE),
        (config.use_chain_augmentations, CHAIN),
        (config.use_repeat_augmentations, REPEAT),
    ]
    return [a for wanted, group in chosen if wanted for a in group]


def augmented_tasks(
    task: SkillTask, config: SkillConfig, rng: random.Random, limit: int
) -> list[SkillTask]:
    """The task itself first, then augmented copies, deduplicated (a symmetric grid can map
    onto itself), at most ``limit`` in all. As in the paper, the copies are the configuration's
    grid augmentations of the task, and each of those (the task too) once more with its colours
    permuted (grid tasks with some augmentation chosen) and its demonstrations reordered; when
    there are more than fit, a random choice of them. Room left is filled with more orders of
    the demonstrations (all a text task has)."""
    chosen = augmentations(config, task.grid)
    geometric = [t for a in chosen if (t := a(task)) is not None]
    variants = []
    for base in [task, *geometric]:
        variant = (colour_permutation(rng)(base) or base) if chosen else base
        variants.append(permute_demos(variant, rng))
    candidates = geometric + variants
    rng.shuffle(candidates)
    out: list[SkillTask] = []
    seen: set[tuple[Demo, ...]] = set()

    def add(candidate: SkillTask) -> None:
        if len(out) < limit and candidate.demos not in seen:
            seen.add(candidate.demos)
            out.append(candidate)

    for candidate in [task, *candidates]:
        add(candidate)
    for _ in range(4 * limit):  # room left: more orders of the demonstrations
        if len(out) >= limit:
            break
        add(permute_demos(task, rng))
    return out
