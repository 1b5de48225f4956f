"""Augmentations keep a task solvable: every grid of a task is mapped by the same invertible
function, so a task with rule f becomes one with rule g f g^-1."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from seal.skills.augment import (
    BASIC,
    CHAIN,
    MAX_SIDE,
    REPEAT,
    SIZE,
    Augmentation,
    augmentations,
    augmented_tasks,
    colour_permutation,
    permute_demos,
    rotate180,
    transpose,
)
from seal.skills.config import DEFAULT_CONFIG, OUTPUT_TOKENS, SkillConfig
from seal.skills.tasks import Demo, Grid, SkillTask, arc_tasks, grid_of, grid_text, text_tasks

ARC = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "arc"
ALL = SkillConfig(True, True, True, True, OUTPUT_TOKENS, 1e-3, 2)
NONE = SkillConfig(False, False, False, False, OUTPUT_TOKENS, 1e-3, 2)
GEOMETRIC = [*BASIC, *SIZE, *CHAIN, *REPEAT]


@pytest.fixture(scope="module")
def arc() -> dict[str, tuple[SkillTask, list[Demo]]]:
    if not ARC.is_dir():
        pytest.skip(f"the ARC tasks are not at {ARC}")
    return {task.name: (task, tests) for task, tests in arc_tasks(ARC)}


def grids(demo: Demo) -> tuple[Grid, Grid]:
    inp, out = grid_of(demo.input), grid_of(demo.output)
    assert inp is not None and out is not None
    return inp, out


def with_tests(arc: dict, name: str) -> SkillTask:
    """The task with its test cases as further demonstrations (more grids to check)."""
    task, tests = arc[name]
    return SkillTask(name, (*task.demos, *tests))


def test_grid_text_and_grid_of_are_inverse() -> None:
    grid = [[0, 1, 2], [3, 4, 0]]
    assert grid_text(grid) == "012\n340"
    assert grid_of("012\n340") == grid
    assert grid_of("  012 \r\n 340\n") == grid
    for bad in ["", "01\n2", "0 1\n2 3", "ab\ncd", "01\n\n23", "١٢"]:
        assert grid_of(bad) is None, bad
    bad_grids: list[Grid] = [[], [[]], [[1, 2], [3]], [[10]], [[-1]], [[True]]]
    for bad_grid in bad_grids:
        with pytest.raises(ValueError):
            grid_text(bad_grid)


def test_arc_tasks_are_grid_tasks_with_their_solutions(arc) -> None:
    assert len(arc) == 12
    task, tests = arc["6150a2bd"]
    assert task.grid and len(task.demos) == 2 and len(tests) == 1
    assert all(grid_of(t.output) is not None for _, ts in arc.values() for t in ts)
    assert len(arc["44f52bb0"][1]) == 2


def test_shipped_text_tasks_are_text_tasks_with_enough_examples() -> None:
    tasks = text_tasks()
    assert len(tasks) >= 8
    assert len({t.name for t, _ in tasks}) == len(tasks)
    for task, tests in tasks:
        assert not task.grid, task.name
        assert len(task.demos) >= 8 and len(tests) >= 4, task.name
        assert task.description
        inputs = [d.input for d in (*task.demos, *tests)]
        assert len(set(inputs)) == len(inputs), f"{task.name} repeats an input"
        assert all(d.output and len(d.output) <= 40 for d in (*task.demos, *tests))


@pytest.mark.parametrize("augmentation", GEOMETRIC, ids=lambda a: a.name)
def test_a_map_that_commutes_with_the_rule_keeps_the_rule(arc, augmentation) -> None:
    """6150a2bd's rule is a half turn, which commutes with every rotation, flip, transpose,
    scaling and tiling: each augmented task has the same rule."""
    task = with_tests(arc, "6150a2bd")
    assert all(rotate180(i) == o for i, o in map(grids, task.demos))
    augmented = augmentation(task)
    assert augmented is not None
    assert augmented.demos != task.demos or augmentation.name == "rotate180"
    for inp, out in map(grids, augmented.demos):
        assert out == rotate180(inp)


@pytest.mark.parametrize("augmentation", GEOMETRIC, ids=lambda a: a.name)
@pytest.mark.parametrize("name", ["6d0aefbc", "8be77c9e"])
def test_the_augmented_task_has_the_conjugated_rule(arc, augmentation, name) -> None:
    """A rule that does not commute (6d0aefbc mirrors each row beside itself) becomes
    g f g^-1 on the augmented task."""
    mirrors = {
        "6d0aefbc": lambda g: [row + row[::-1] for row in g],
        "8be77c9e": lambda g: g + g[::-1],
    }
    rule = mirrors[name]
    task = with_tests(arc, name)
    augmented = augmentation(task)
    assert augmented is not None
    for inp, out in map(grids, augmented.demos):
        assert out == augmentation.forward(rule(augmentation.inverse(inp)))


def test_transposing_one_mirror_task_gives_the_other(arc) -> None:
    """The conjugate of 6d0aefbc's rule by the transpose is 8be77c9e's rule."""
    transposed = next(a for a in BASIC if a.forward is transpose)(with_tests(arc, "6d0aefbc"))
    assert transposed is not None
    for inp, out in map(grids, transposed.demos):
        assert out == inp + inp[::-1]


@pytest.mark.parametrize("name", ["6150a2bd", "8d5021e8", "67e8384a", "4be741c5"])
def test_every_augmentation_is_invertible(arc, name) -> None:
    task = with_tests(arc, name)
    rng = random.Random(0)
    for augmentation in [*GEOMETRIC, *(colour_permutation(rng) for _ in range(5))]:
        augmented = augmentation(task)
        if augmented is None:  # too large (4be741c5's 14x16 inputs scaled up)
            continue
        assert augmentation.undo(augmented) == task, augmentation.name


def test_colour_permutations_keep_the_background_and_are_bijections() -> None:
    every_colour = [list(range(10))]
    rng = random.Random(1)
    seen = set()
    for _ in range(50):
        permutation = colour_permutation(rng)
        mapped = permutation.forward(every_colour)[0]
        assert mapped[0] == 0
        assert sorted(mapped) == list(range(10))
        assert permutation.inverse([mapped]) == every_colour
        seen.add(tuple(mapped))
    assert len(seen) > 40, "the permutations should vary"


def test_a_colour_permutation_keeps_a_colour_independent_rule(arc) -> None:
    task = with_tests(arc, "6150a2bd")
    for seed in range(10):
        permuted = colour_permutation(random.Random(seed))(task)
        assert permuted is not None
        assert all(rotate180(i) == o for i, o in map(grids, permuted.demos))


def test_augmentations_of_every_arc_task_stay_rectangular_and_at_most_30_by_30(arc) -> None:
    rng = random.Random(0)
    for task, _ in arc.values():
        for augmented in augmented_tasks(task, ALL, rng, limit=1000):
            assert augmented.grid, augmented.name
            for inp, out in map(grids, augmented.demos):
                for grid in (inp, out):
                    assert len(grid) <= MAX_SIDE and len(grid[0]) <= MAX_SIDE
                    assert all(len(row) == len(grid[0]) for row in grid)


def test_an_augmentation_that_would_exceed_30_by_30_is_skipped() -> None:
    big = SkillTask("big", (Demo(grid_text([[1] * 16] * 16), grid_text([[2] * 3] * 3)),))
    upscale = SIZE[0]
    assert upscale(big) is None
    names = [t.name for t in augmented_tasks(big, ALL, random.Random(0), 100)]
    assert not any("upscale" in n or "tile" in n for n in names)
    assert any("rotate90" in n for n in names)
    assert REPEAT[0](big) is None and BASIC[0](big) is not None


def test_augmentations_follow_the_configuration() -> None:
    assert augmentations(NONE, grid=True) == []
    assert augmentations(ALL, grid=False) == []
    assert len(augmentations(ALL, grid=True)) == len(GEOMETRIC)
    basic_only = SkillConfig(True, False, False, False, OUTPUT_TOKENS, 1e-3, 2)
    assert augmentations(basic_only, grid=True) == list(BASIC)
    assert all(isinstance(a, Augmentation) for a in augmentations(DEFAULT_CONFIG, grid=True))


def test_augmented_tasks_start_with_the_task_are_distinct_and_limited(arc) -> None:
    task = arc["6e02f1e3"][0]
    for limit in (1, 5, 30):
        tasks = augmented_tasks(task, ALL, random.Random(3), limit)
        assert tasks[0] == task
        assert len(tasks) == limit
        assert len({t.demos for t in tasks}) == len(tasks)
    again = augmented_tasks(task, ALL, random.Random(3), 30)
    assert again == augmented_tasks(task, ALL, random.Random(3), 30), "not repeatable"


def test_a_text_task_is_only_reordered() -> None:
    task, _ = text_tasks()[0]
    tasks = augmented_tasks(task, ALL, random.Random(0), limit=6)
    assert tasks[0] == task and len(tasks) == 6
    for other in tasks[1:]:
        assert sorted(other.demos, key=repr) == sorted(task.demos, key=repr)
        assert other.demos != task.demos


def test_a_two_demo_task_without_augmentations_has_its_two_orders() -> None:
    task = SkillTask("t", (Demo("a", "b"), Demo("c", "d")))
    tasks = augmented_tasks(task, NONE, random.Random(0), limit=10)
    assert [t.demos for t in tasks] == [task.demos, task.demos[::-1]]
    assert permute_demos(task, random.Random(0)).name == "t"
