"""The teacher-levers harness's table (research.levers.summarize)."""

from __future__ import annotations

from research.levers import summarize


def _entry(passage: int, old: int, real: int = 5, base: int = 0) -> dict:
    arm = {"candidates": 1, "self_edit": False, "promoted": True}
    return {
        "real": real,
        "base_real": base,
        "passage": {**arm, "real": passage},
        "old": {**arm, "real": old, "self_edit": True},
    }


def test_an_arm_that_answers_more_on_every_passage_is_significant() -> None:
    table = summarize([_entry(1, 3) for _ in range(12)], arms=("passage", "old"))
    row = next(line for line in table.splitlines() if line.startswith("| old |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "36" and cells[3] == "+40.0%"
    assert float(cells[5]) < 0.01, "12 passages all one way"
    assert cells[6] == "12"


def test_no_difference_is_not_significant() -> None:
    entries = [_entry(2, 3), _entry(3, 2)] * 5
    row = next(
        line for line in summarize(entries, ("passage", "old")).splitlines() if "| old" in line
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "+0.0%" and float(cells[5]) > 0.5
