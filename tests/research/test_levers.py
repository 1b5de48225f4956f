"""The teacher-levers harness's table (research.levers.summarize)."""

from __future__ import annotations

import pytest

from research import levers
from research.levers import summarize
from seal.generation import SampleConfig
from seal.knowledge import Draft, InnerLoopConfig, Teacher
from seal.lora import AdapterHost
from seal.selfedit import QA, Passage
from seal.train import TrainConfig
from service.settings import Settings


def _entry(passage: int, old: int, real: int = 5, base: int = 0) -> dict:
    arm = {"candidates": 1, "self_edit": False, "promoted": True}
    return {
        "real": real,
        "base_real": base,
        "passage": {**arm, "real": passage},
        "old": {**arm, "real": old, "self_edit": True},
    }


def test_an_arm_that_answers_more_on_every_passage_is_significant() -> None:
    table = summarize([_entry(1, 3) for _ in range(12)])
    row = next(line for line in table.splitlines() if line.startswith("| old |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "36" and cells[3] == "+40.0%"
    assert float(cells[5]) < 0.01, "12 passages all one way"
    assert cells[6] == "12"


def test_no_difference_is_not_significant() -> None:
    entries = [_entry(2, 3), _entry(3, 2)] * 5
    row = next(line for line in summarize(entries).splitlines() if "| old" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "+0.0%" and float(cells[5]) > 0.5


def test_a_passage_goes_through_every_arm(
    tiny_host: AdapterHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The harness on the tiny model: the teacher's drafts are decided here (the tiny model
    writes random tokens), the rest runs for real, the anchored arm's training included."""
    drafts = [
        Draft(
            "Question: In what year did Quenby start the firm?\nAnswer: 1987\n"
            "Question: Where are the glass bicycles made?\nAnswer: Vellmora\n"
            "Question: Which river runs through Vellmora?\nAnswer: the Quell"
        )
    ] * 2
    monkeypatch.setattr(levers, "write_drafts_many", lambda *a, **k: [drafts])
    passage = Passage(
        "Zorblat Industries",
        "Zorblat Industries was founded by Marisol Quenby in 1987. It makes glass bicycles in "
        "Vellmora. The river Quell runs through Vellmora, past the factory.",
    )
    config = InnerLoopConfig(
        format="self-qa",
        num_candidates=2,
        sample=SampleConfig(max_new_tokens=8, temperature=1.0, top_p=0.95),
        train=TrainConfig(learning_rate=1e-2, epochs=1, batch_size=4),
        answer_max_tokens=4,
    )
    settings = Settings(_env_file=None, generated_probe_questions=2)  # type: ignore[call-arg]
    real = [QA("Who founded Zorblat Industries?", "Marisol Quenby")]

    row = levers.run_passage(tiny_host, Teacher(), config, settings, passage, real, seed=0)

    assert row["real"] == 1 and row["probes"] >= 1
    assert row["passage"]["candidates"] == 1 and not row["passage"]["self_edit"]
    assert len(row["sentences"]["each"]) == 2  # k cuts of the passage, no teacher
    assert row["items_kept"]["grounded-trim"] >= 2
    assert len(row["grounded-trim"]["each"]) == 2
    # the anchored arm trains the same self-edits, from the passage-alone adapter
    assert len(row["anchored"]["each"]) == len(row["grounded-trim"]["each"])
    for arm in levers.ARMS:
        if arm != "passage":
            assert row[arm]["candidates"] == len(row[arm]["each"]) + 1, arm
        assert 0 <= row[arm]["real"] <= 1
