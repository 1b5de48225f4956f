"""Distilling another model's self-edits into the teacher, on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from seal.distill import DataError, Target, distill, reference_targets
from seal.generation import SampleConfig
from seal.knowledge import Teacher, write_self_edits
from seal.lora import STUDENT, TEACHER, AdapterHost, LoraSpec
from seal.selfedit import Passage, canonical, parse_qa
from seal.train import TrainConfig
from tests.tiny import SPEC, load_tiny

ROW = {
    "title": "Zorblat Industries",
    "context": "Zorblat Industries was founded by Marisol Quenby in 1931.",
    "questions": [{"question": "Who founded Zorblat Industries?", "answer": "Marisol Quenby"}],
    "self_edits": {
        "big-model": {
            "self-qa": [
                "Question 1: Who founded Zorblat Industries?\nAnswer 1: Marisol Quenby.\n\n"
                "Question 2: When?\nAnswer 2: In 1931.\nYou are an AI assistant.",
                "nothing that parses",
            ],
            "implications": [
                "Here are some implications:\n1. Zorblat is old.\n- It has a founder."
            ],
        },
        "other-model": {"self-qa": ["Question: Who?\nAnswer: Quenby"]},
    },
    "best_of_5": {"big-model": {"self-qa": "Question 1: Founded when?\nAnswer 1: 1931"}},
}


def test_targets_are_rewritten_in_the_teachers_own_format() -> None:
    targets = reference_targets([ROW], ["big-model"], ["self-qa", "implications"])
    # the unparseable self-edit is dropped; the trailing chatter and the numbering go
    assert [(t.format, t.text) for t in targets] == [
        (
            "self-qa",
            "Question: Who founded Zorblat Industries?\nAnswer: Marisol Quenby.\n"
            "Question: When?\nAnswer: In 1931.",
        ),
        ("implications", "1. Zorblat is old.\n2. It has a founder."),
    ]
    assert {t.source for t in targets} == {"big-model"}
    assert targets[0].passage.questions[0].answer == "Marisol Quenby"
    # what the teacher learns parses back to the same pairs
    assert parse_qa(targets[0].text) == parse_qa(ROW["self_edits"]["big-model"]["self-qa"][0])


def test_targets_can_be_the_best_of_five_and_leave_held_out_passages_out() -> None:
    [best] = reference_targets([ROW], ["big-model"], ["self-qa"], best_only=True)
    assert best.text == "Question: Founded when?\nAnswer: 1931"
    both = reference_targets([ROW], ["big-model", "other-model"], ["self-qa"])
    assert [t.source for t in both] == ["big-model", "other-model"]
    with pytest.raises(DataError, match="no self-edit of source"):
        reference_targets([ROW], ["big-model"], ["self-qa"], exclude=[ROW["context"]])
    with pytest.raises(DataError, match="unknown format"):
        reference_targets([ROW], ["big-model"], ["poetry"])
    with pytest.raises(DataError, match="passage 0"):
        reference_targets([{"title": "no context"}], ["big-model"], ["self-qa"])


def test_canonical_is_empty_when_nothing_parses() -> None:
    assert canonical("Question: no answer here", "self-qa") == ""
    assert canonical("1. An implication.\n2. Another one.", "implications") == (
        "1. An implication.\n2. Another one."
    )


def test_the_teacher_learns_to_write_the_target_self_edit(tiny_model_dir: Path) -> None:
    host = AdapterHost(load_tiny(tiny_model_dir), {STUDENT: SPEC, TEACHER: LoraSpec(8, 16)})
    passage = Passage(ROW["title"], ROW["context"])
    target = "Question: Who founded it?\nAnswer: Marisol Quenby"
    # The tiny model's end-of-turn token is its padding token, whose tied output embedding is
    # zero, so it cannot learn to stop: decode exactly the target's tokens after the primer.
    reply = host.tokenizer(target.removeprefix("Question:"), add_special_tokens=False)
    greedy = SampleConfig(max_new_tokens=len(reply["input_ids"]), temperature=0.0)
    before = write_self_edits(host, passage, "self-qa", 1, greedy, Teacher())
    assert before != [target]
    trained = distill(
        host,
        [Target(passage, "self-qa", target, "big-model")],
        TrainConfig(learning_rate=2e-2, epochs=60),
        init=None,
    )
    assert trained.losses[-1] < trained.losses[0] / 10
    after = write_self_edits(host, passage, "self-qa", 1, greedy, Teacher(state=trained.state))
    assert after == [target]
