"""``seal eval skills`` (research.skills) on a tiny model: its rows, and that ReST-EM's teacher
for a task never learned from that task's fold."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from research import skills as skills_module
from research.skills import Attempt, format_skills, run_skills_eval
from seal.lora import STUDENT, TEACHER, AdapterHost
from seal.skills.config import DEFAULT_CONFIG
from seal.skills.tasks import Demo, SkillTask
from seal.skills.ttt import SkillScale
from tests.tiny import SPEC, load_tiny

SMALL = SkillScale(max_examples=4, max_steps=2, max_new_tokens=8)


def _case(name: str) -> tuple[SkillTask, list[Demo]]:
    demos = (Demo("a b", "b a"), Demo("c d", "d c"), Demo("e f", "f e"))
    return SkillTask(name, demos), [Demo("g h", "h g")]


def _record_teacher_training(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The task names each ReST-EM teacher is trained on, one list per training (the
    training itself runs)."""
    learned: list[list[str]] = []
    real = skills_module._train_teacher

    def train_teacher(host, solved, seed):  # type: ignore[no-untyped-def]
        learned.append([task.name for task, _ in solved])
        return real(host, solved, seed)

    monkeypatch.setattr(skills_module, "_train_teacher", train_teacher)
    return learned


@pytest.fixture
def host(tiny_model_dir: Path) -> AdapterHost:
    return AdapterHost(load_tiny(tiny_model_dir), {STUDENT: SPEC, TEACHER: SPEC}, seed=0)


def test_every_row_answers_every_task_and_the_table_says_so(host: AdapterHost) -> None:
    cases = [_case("one"), _case("two")]
    report = run_skills_eval(host, cases, data="tiny", k=1, scale=SMALL)

    counts = {row: sum(a.row == row for a in report.attempts) for row in skills_module.ROWS}
    assert counts == {"in-context": 2, "ttt-fixed": 2, "teacher": 2, "restem": 2}
    assert all(a.cases == 1 for a in report.attempts)
    assert set(report.folds) == {"one", "two"}
    table = format_skills(report)
    for row in skills_module.ROWS:
        assert f"| {row} |" in table
    data = report.to_json()
    assert [s["row"] for s in data["summary"]] == list(skills_module.ROWS)


def test_the_restem_teacher_of_a_fold_learns_only_from_the_other_fold(
    host: AdapterHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [_case("one"), _case("two"), _case("three"), _case("four")]  # folds a, b, a, b
    written = DEFAULT_CONFIG.to_json()
    monkeypatch.setattr(skills_module, "write_configs", lambda *a, **kw: [written])

    def attempt(host, task, tests, row, text, scale, seed):  # type: ignore[no-untyped-def]
        # in the teacher row only task "two" (fold b) is solved
        solved = row == "teacher" and task.name == "two"
        return Attempt(task.name, row, int(solved), 1, text=text)

    monkeypatch.setattr(skills_module, "_with_config", attempt)
    learned = _record_teacher_training(monkeypatch)

    report = run_skills_eval(host, cases, data="tiny", k=1, scale=SMALL, rows=["teacher", "restem"])

    assert learned == [["two"]]  # fold a's teacher: fold b's solved task, never its own
    assert "none of the other fold's configurations solved their task" in " ".join(
        report.notes
    )  # fold b: nothing to learn
    assert (
        "fold a" in report.folds["one"] and "1 configuration(s) that solved" in report.folds["one"]
    )


def test_a_fold_with_nothing_to_learn_reuses_the_teacher_rows_attempts(
    host: AdapterHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [_case("one"), _case("two")]
    rows_run: list[str] = []
    real = skills_module._with_config

    def attempt(host, task, tests, row, text, scale, seed):  # type: ignore[no-untyped-def]
        rows_run.append(row)
        return replace(real(host, task, tests, row, text, scale, seed), correct=0)

    monkeypatch.setattr(skills_module, "_with_config", attempt)
    report = run_skills_eval(host, cases, data="tiny", k=2, scale=SMALL, rows=["teacher", "restem"])

    assert rows_run == ["teacher"] * 4  # nothing solved: no ReST-EM teacher, nothing retrained
    teacher = [a for a in report.attempts if a.row == "teacher"]
    restem = [a for a in report.attempts if a.row == "restem"]
    assert [(a.task, a.text, a.answers) for a in restem] == [
        (a.task, a.text, a.answers) for a in teacher
    ]
    assert sum("attempts are the teacher row's" in n for n in report.notes) == 2


def test_the_untrained_teacher_writes_a_tasks_configurations_alike_in_every_row(
    host: AdapterHost,
) -> None:
    """What reusing the teacher row's attempts rests on: the same teacher and task seed write
    the same configurations."""
    task, _ = _case("one")
    seed = skills_module._task_seed(0, task)
    first = skills_module.write_configs(host, None, None, task, 2, seed)
    assert skills_module.write_configs(host, None, None, task, 2, seed) == first
    assert skills_module._task_seed(0, _case("two")[0]) != seed


def test_restem_can_keep_partly_right_configurations_and_reuse_an_earlier_teacher_row(
    host: AdapterHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [_case("one"), _case("two")]  # folds a, b
    written = DEFAULT_CONFIG.to_json()
    earlier = [
        Attempt("one", "teacher", 1, 2, text=written),  # half right: kept at keep 0.5
        Attempt("two", "teacher", 0, 2, text=written),  # nothing right: never kept
        Attempt("one", "in-context", 0, 2),
    ]
    assert [a.kept(0.5) for a in earlier[:2]] == [True, False]
    assert not earlier[0].kept(1.0) and not Attempt("x", "teacher", 0, 2).kept(0.0)
    monkeypatch.setattr(skills_module, "write_configs", lambda *a, **kw: [written])
    rows_run: list[str] = []

    def attempt(host, task, tests, row, text, scale, seed):  # type: ignore[no-untyped-def]
        rows_run.append(f"{row}:{task.name}")
        return Attempt(task.name, row, 0, 2, text=text)

    monkeypatch.setattr(skills_module, "_with_config", attempt)
    learned = _record_teacher_training(monkeypatch)
    report = run_skills_eval(
        host, cases, data="tiny", k=1, scale=SMALL, rows=["restem"], keep=0.5, earlier=earlier
    )

    # the teacher row came from the earlier run; fold b's teacher learned task one's
    # half-right configuration, fold a's had nothing kept and reuses the teacher row
    assert rows_run == ["restem:two"] and learned == [["one"]]
    assert {(a.task, a.row) for a in report.attempts} == {
        ("one", "teacher"),
        ("two", "teacher"),
        ("one", "in-context"),
        ("one", "restem"),
        ("two", "restem"),
    }
    assert "at least 50% of the test cases" in report.folds["two"]
    assert report.to_json()["keep"] == 0.5 and "earlier run" in " ".join(report.notes)
    assert "at least 50%" in format_skills(report)
    assert skills_module.attempts_of(report.to_json()) == report.attempts
