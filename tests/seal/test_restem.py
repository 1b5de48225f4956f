"""ReST-EM pieces on the tiny model: the teacher's training data and a round's bookkeeping."""

from __future__ import annotations

import pytest
import torch

from seal.generation import SampleConfig
from seal.knowledge import InnerLoopConfig, Teacher
from seal.lora import STUDENT, TEACHER, AdapterHost, LoraSpec, checksum
from seal.restem import (
    RoundConfig,
    heldout_evaluation,
    restem_round,
    teacher_examples,
    train_teacher,
)
from seal.selfedit import QA, Passage
from seal.train import TrainConfig
from tests.doubles import grade_probes
from tests.tiny import SPEC, load_tiny

PASSAGE = Passage(
    "Zorblat Industries",
    "Zorblat Industries was founded by Marisol Quenby.",
    (QA("Who founded Zorblat Industries?", "Marisol Quenby"),),
)
FAST = InnerLoopConfig(
    num_candidates=2,
    sample=SampleConfig(max_new_tokens=8, temperature=1.0, top_p=0.95, seed=0),
    train=TrainConfig(epochs=1),
    answer_max_tokens=4,
)


def host(tiny_model_dir) -> AdapterHost:  # type: ignore[no-untyped-def]
    return AdapterHost(
        load_tiny(tiny_model_dir), {STUDENT: SPEC, TEACHER: LoraSpec(rank=8, alpha=16)}
    )


def test_teacher_examples_put_the_loss_on_the_self_edit_only(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    h = host(tiny_model_dir)
    text = "1. Marisol Quenby founded Zorblat Industries."
    [example] = teacher_examples(h, [(PASSAGE, "implications", text)], max_len=512)
    reply = h.tokenizer.decode(example.ids[example.loss_from :])
    assert reply.startswith("1. Marisol Quenby") and reply.endswith(h.tokenizer.eos_token)
    prompt = h.tokenizer.decode(example.ids[: example.loss_from])
    assert PASSAGE.text in prompt and "Marisol Quenby founded" not in prompt


def test_training_the_teacher_leaves_the_student_slot_alone(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    h = host(tiny_model_dir)
    student_before = checksum(h.state(STUDENT))
    trained = train_teacher(
        h,
        [(PASSAGE, "implications", "1. Marisol Quenby founded it.")],
        TrainConfig(learning_rate=1e-2, epochs=5),
        init=None,
    )
    assert trained.losses[-1] < trained.losses[0]
    assert checksum(h.state(STUDENT)) == student_before
    assert checksum(trained.state) != checksum(h.fresh_state(TEACHER))


@pytest.mark.parametrize(
    ("self_edits", "passage", "kept"),
    [(True, False, True), (True, True, False), (False, False, False)],
    ids=["a self-edit beats the passage", "ties with the passage", "earns nothing"],
)
def test_a_round_keeps_a_self_edit_only_for_a_positive_reward_above_the_passage(  # type: ignore[no-untyped-def]
    tiny_model_dir, monkeypatch: pytest.MonkeyPatch, self_edits: bool, passage: bool, kept: bool
) -> None:
    grade_probes(monkeypatch, before=False, self_edits=self_edits, passage=passage)
    h = host(tiny_model_dir)
    result = restem_round(h, [PASSAGE], RoundConfig(inner=FAST), Teacher())
    [scored] = result.scored
    assert len(scored.candidates) == 2
    assert result.rewards == [c.reward for c in scored.candidates] == [float(self_edits)] * 2
    assert result.mean_reward == sum(result.rewards) / 2
    # the passage alone trained beside the self-edits, each self-edit measured against it
    plain = scored.passage_alone
    assert plain is not None and plain.passage_alone and plain.items == []
    assert plain.trained is not None and plain.evaluation is not None
    for c in scored.candidates:
        assert c.over_passage == pytest.approx(c.accuracy - plain.accuracy)
    if kept:
        assert scored.kept is not None and scored.kept in scored.candidates
        assert scored.kept.reward > 0 and (scored.kept.over_passage or 0) > 0
        assert result.kept == [scored] and result.teacher is not None
        assert result.trained is not None and result.trained.losses
        assert checksum(result.teacher) != checksum(h.fresh_state(TEACHER))
    else:  # the teacher stays as it was
        assert scored.kept is None and result.kept == [] and result.teacher is None


def test_heldout_evaluation_grades_every_question_of_every_sample(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    h = host(tiny_model_dir)
    evaluation = heldout_evaluation(h, [PASSAGE, PASSAGE], FAST, Teacher(), samples=2)
    assert len(evaluation.graded) == 4
    assert all(g.probe.qa.answer == "Marisol Quenby" for g in evaluation.graded)
    assert torch.is_tensor(next(iter(h.state(TEACHER).values())))
