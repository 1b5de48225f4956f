"""The SEAL inner loop on the tiny model: self-edits, rewarded candidates, probe questions."""

from __future__ import annotations

import pytest

from seal.generation import SampleConfig
from seal.grading import Evaluation, Graded, Probe, evaluate, is_correct, normalize
from seal.knowledge import (
    STUDENT,
    Candidate,
    InnerLoopConfig,
    Teacher,
    best_candidate,
    score_candidates,
    write_probe_questions,
    write_probe_questions_many,
    write_self_edits,
    write_self_edits_many,
)
from seal.lora import checksum
from seal.multi import train_many
from seal.selfedit import FORMATS, PRIMERS, QA, Passage, teacher_messages, training_sequences
from seal.train import TrainConfig, TrainResult
from tests.seal.teaching import speaking_host, teach

PASSAGE = Passage(
    "Zorblat Industries",
    "Zorblat Industries was founded by Marisol Quenby in 1987. "
    "Zorblat Industries makes glass bicycles in Vellmora.",
    questions=(
        QA("Who founded Zorblat Industries?", "Marisol Quenby"),
        QA("What does Zorblat Industries make?", "glass bicycles"),
    ),
)
SELF_EDITS = [
    "1. Marisol Quenby founded Zorblat Industries.\n2. Zorblat Industries began in 1987.",
    "1. Glass bicycles are made in Vellmora.\n2. Zorblat Industries is a bicycle maker.",
]
SAMPLE = SampleConfig(max_new_tokens=6, temperature=1.0, top_p=0.95, seed=0)


def evaluation_with(accuracy_of_four: int) -> Evaluation:
    probe = Probe(PASSAGE.title, PASSAGE.questions[0])
    return Evaluation([Graded(probe, "", i < accuracy_of_four) for i in range(4)])


@pytest.mark.parametrize("fmt", FORMATS)
def test_self_edits_start_with_the_primer(tiny_host, fmt: str) -> None:
    texts = write_self_edits(tiny_host, PASSAGE, fmt, 3, SAMPLE, Teacher())
    assert len(texts) == 3
    assert all(t.startswith(PRIMERS[fmt] + " ") and len(t) > len(PRIMERS[fmt]) + 1 for t in texts)
    assert len(set(texts)) == 3, "k samples, not one sample k times"
    assert write_self_edits(tiny_host, PASSAGE, fmt, 3, SAMPLE, Teacher()) == texts


def test_self_edits_of_many_passages_come_back_per_passage(tiny_model_dir) -> None:
    host = speaking_host(tiny_model_dir, ("student", "teacher"))
    edit = "Marisol Quenby founded Zorblat Industries.\n2. It makes glass bicycles."
    teacher = Teacher(
        teach(host, "teacher", teacher_messages(PASSAGE, "rewrite"), " " + edit, prefix="1.")
    )
    other = Passage("Vellmora", "Vellmora is a town of glassblowers.")
    sample = SampleConfig(max_new_tokens=32, temperature=0.7, top_p=0.95, seed=0)

    texts = write_self_edits_many(host, [PASSAGE, other, PASSAGE], "rewrite", 2, sample, teacher)

    assert [len(t) for t in texts] == [2, 2, 2]
    assert texts[0] == texts[2] == [f"1. {edit}"] * 2  # the taught passage, in its place
    assert texts[1] != [f"1. {edit}"] * 2
    assert write_self_edits_many(host, [], "rewrite", 2, sample, teacher) == []


def test_self_edits_of_many_passages_are_decoded_in_batches_of_whole_passages(tiny_host) -> None:
    passages = [Passage(f"Town {i}", f"Town {i} has {i} bridges.") for i in range(5)]
    sample = SampleConfig(max_new_tokens=6, temperature=1.0, top_p=0.95, seed=0, batch_size=4)
    reported: list[tuple[int, int]] = []

    texts = write_self_edits_many(
        tiny_host, passages, "rewrite", 2, sample, Teacher(), on_batch=lambda *a: reported.append(a)
    )

    # 4 completions a batch hold the 2 of 2 passages: batches end after passages 2, 4 and 5
    assert reported == [(2, 5), (4, 5), (5, 5)]
    assert [len(t) for t in texts] == [2] * 5
    assert all(t.startswith("1. ") for own in texts for t in own)
    # k larger than the batch: each passage is still decoded whole, one per batch
    reported.clear()
    write_self_edits_many(
        tiny_host,
        passages[:2],
        "rewrite",
        6,
        sample,
        Teacher(),
        on_batch=lambda *a: reported.append(a),
    )
    assert reported == [(1, 2), (2, 2)]


def test_a_teacher_adapter_writes_the_self_edits(tiny_model_dir) -> None:
    host = speaking_host(tiny_model_dir, ("student", "teacher"))
    edit = "Marisol Quenby founded Zorblat Industries.\n2. It makes glass bicycles."
    messages = teacher_messages(PASSAGE, "rewrite")
    teacher = Teacher(teach(host, "teacher", messages, " " + edit, prefix="1."))
    assert teacher.active_slot == "teacher" and Teacher().active_slot is None

    sample = SampleConfig(max_new_tokens=32, temperature=0.7, top_p=0.95, seed=0)
    assert write_self_edits(host, PASSAGE, "rewrite", 2, sample, teacher) == [f"1. {edit}"] * 2
    assert write_self_edits(host, PASSAGE, "rewrite", 1, sample, Teacher()) != [f"1. {edit}"]


def test_candidates_are_rewarded_against_the_baseline(tiny_host) -> None:
    config = InnerLoopConfig(
        train=TrainConfig(learning_rate=1e-2, epochs=2, batch_size=2), answer_max_tokens=4
    )
    baseline = evaluation_with(1)  # accuracy 0.25
    seen: list[int] = []
    candidates = score_candidates(
        tiny_host,
        PASSAGE,
        SELF_EDITS,
        config,
        init=None,
        baseline=baseline,
        on_candidate=lambda i, c: seen.append(i),
    )
    assert seen == [0, 1]
    assert [c.text for c in candidates] == SELF_EDITS
    assert candidates[0].items == [
        "Marisol Quenby founded Zorblat Industries.",
        "Zorblat Industries began in 1987.",
    ]
    fresh = checksum(tiny_host.fresh_state(STUDENT))
    for candidate in candidates:
        assert candidate.evaluation is not None and candidate.trained is not None
        assert [g.probe.qa for g in candidate.evaluation.graded] == list(PASSAGE.questions)
        assert candidate.reward == pytest.approx(candidate.accuracy - 0.25)
        assert len(candidate.trained.losses) == 2
        assert checksum(candidate.trained.state) != fresh, "each candidate trains an adapter"
        again = evaluate(
            tiny_host,
            [Probe(PASSAGE.title, qa) for qa in PASSAGE.questions],
            slot=STUDENT,
            state=candidate.trained.state,
            max_new_tokens=4,
        )
        assert [g.answer for g in again.graded] == [g.answer for g in candidate.evaluation.graded]
    assert checksum(candidates[0].trained.state) != checksum(candidates[1].trained.state)


def test_candidates_start_from_the_given_init(tiny_host) -> None:
    """With a zero learning rate the trained adapter is exactly the one it started from."""
    still = InnerLoopConfig(train=TrainConfig(learning_rate=0.0, epochs=1), answer_max_tokens=4)
    moved = InnerLoopConfig(train=TrainConfig(learning_rate=1e-2, epochs=2), answer_max_tokens=4)
    init = score_candidates(
        tiny_host, PASSAGE, SELF_EDITS[:1], moved, init=None, baseline=evaluation_with(0)
    )[0].trained.state

    [from_init] = score_candidates(
        tiny_host, PASSAGE, SELF_EDITS[1:], still, init=init, baseline=evaluation_with(0)
    )
    assert checksum(from_init.trained.state) == checksum(init)
    [from_fresh] = score_candidates(
        tiny_host, PASSAGE, SELF_EDITS[1:], still, init=None, baseline=evaluation_with(0)
    )
    assert checksum(from_fresh.trained.state) == checksum(tiny_host.fresh_state(STUDENT))


def test_anchored_self_edits_continue_from_the_passage_alone(tiny_host) -> None:
    """``anchored``: the passage alone is trained first, from ``init``; each self-edit's
    candidate is that adapter trained on further, on its items + the passage."""
    config = InnerLoopConfig(
        train=TrainConfig(learning_rate=1e-2, epochs=2, batch_size=2), answer_max_tokens=4
    )
    anchored = score_candidates(
        tiny_host,
        PASSAGE,
        SELF_EDITS,
        config,
        init=None,
        baseline=evaluation_with(0),
        passage_alone=True,
        anchored=True,
    )
    assert [c.passage_alone for c in anchored] == [False, False, True]
    plain = train_many(tiny_host, [training_sequences(PASSAGE, [])], config.train, init=None)[0]
    assert checksum(anchored[-1].trained.state) == checksum(plain.state)
    by_hand = train_many(
        tiny_host,
        [training_sequences(PASSAGE, [("implications", t)]) for t in SELF_EDITS],
        config.train,
        init=plain.state,
    )
    for candidate, expected in zip(anchored, by_hand, strict=False):
        assert checksum(candidate.trained.state) == checksum(expected.state)
    side_by_side = score_candidates(
        tiny_host,
        PASSAGE,
        SELF_EDITS,
        config,
        init=None,
        baseline=evaluation_with(0),
        passage_alone=True,
    )
    assert checksum(side_by_side[0].trained.state) != checksum(anchored[0].trained.state)


def test_a_candidate_that_answers_earns_the_accuracy_gain(tiny_model_dir) -> None:
    """An untrained (identity) adapter answers as the base does; gold taken from that answer
    makes it correct, so the reward is exactly accuracy minus the baseline."""
    host = speaking_host(tiny_model_dir)
    probe_q = "Who founded Zorblat Industries?"
    base = evaluate(host, [Probe(PASSAGE.title, QA(probe_q, "?"))], slot=None, max_new_tokens=4)
    gold = base.graded[0].answer.split()[0]
    assert normalize(gold) and is_correct(base.graded[0].answer, gold)
    passage = Passage(PASSAGE.title, PASSAGE.text, questions=(QA(probe_q, gold),))
    config = InnerLoopConfig(train=TrainConfig(learning_rate=0.0, epochs=1), answer_max_tokens=4)

    [candidate] = score_candidates(
        host, passage, SELF_EDITS[:1], config, init=None, baseline=evaluation_with(1)
    )
    assert candidate.accuracy == 1.0
    assert candidate.reward == pytest.approx(0.75)


def test_the_passage_alone_is_trained_beside_the_self_edits_and_wins_when_they_are_worse(
    tiny_model_dir,
) -> None:
    """Gold taken from the base model's own answer: whatever moves the adapter away from the
    base answers worse. The passage alone is one short sequence (one small step per epoch);
    a long self-edit is many, so its candidate moves far and loses to plain fine-tuning."""
    host = speaking_host(tiny_model_dir)
    probe_q = "Who founded Zorblat Industries?"
    base = evaluate(host, [Probe(PASSAGE.title, QA(probe_q, "?"))], slot=None, max_new_tokens=4)
    gold = base.graded[0].answer  # every word of it: any change of the answer is wrong
    passage = Passage(PASSAGE.title, PASSAGE.text, questions=(QA(probe_q, gold),))
    noisy = "\n".join(
        f"{i}. Item {i} of a long list about something else entirely." for i in range(60)
    )
    config = InnerLoopConfig(
        train=TrainConfig(learning_rate=1e-3, epochs=2, batch_size=4), answer_max_tokens=4
    )

    *edits, plain = score_candidates(
        host, passage, [noisy, noisy], config, init=None, baseline=evaluation_with(0),
        passage_alone=True,
    )  # fmt: skip

    assert plain.passage_alone and plain.items == [] and plain.trained is not None
    assert plain.trained.tokens < min(e.trained.tokens for e in edits if e.trained)
    assert plain.accuracy == 1.0, "a few small steps keep the base model's answer"
    assert all(e.accuracy == 0.0 and e.over_passage == -1.0 for e in edits)
    assert best_candidate([*edits, plain]) is plain
    # without it, only the self-edits come back, with nothing to compare them with
    alone = score_candidates(host, passage, [noisy], config, init=None, baseline=evaluation_with(0))
    assert len(alone) == 1 and alone[0].over_passage is None


def trained(losses: list[float]) -> TrainResult:
    return TrainResult(state={}, losses=losses)


def test_best_candidate_has_the_highest_reward() -> None:
    low = Candidate("a", [], reward=-0.5, trained=trained([0.1]))
    high = Candidate("b", [], reward=0.5, trained=trained([9.0]))
    mid = Candidate("c", [], reward=0.0, trained=trained([0.2]))
    assert best_candidate([low, high, mid]) is high
    assert best_candidate([low]) is low


def test_best_candidate_breaks_ties_by_the_lowest_final_loss() -> None:
    untrained = Candidate("a", [], reward=0.5)
    no_losses = Candidate("b", [], reward=0.5, trained=trained([]))
    worse = Candidate("c", [], reward=0.5, trained=trained([0.1, 2.0]))
    better = Candidate("d", [], reward=0.5, trained=trained([3.0, 1.0]))
    assert best_candidate([untrained, no_losses, worse, better]) is better
    assert best_candidate([untrained, no_losses]) is untrained, "the first of full ties"


def test_best_candidate_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        best_candidate([])


def test_probe_questions_from_the_tiny_model_keep_the_invariant(tiny_host) -> None:
    assert write_probe_questions(tiny_host, PASSAGE, 0, Teacher()) == []
    found = write_probe_questions(tiny_host, PASSAGE, 2, Teacher(), seed=1)
    assert len(found) <= 2
    text = f" {normalize(PASSAGE.text)} "
    for qa in found:
        assert qa.question.endswith("?") and f" {normalize(qa.answer)} " in text


def test_probe_questions_of_many_passages_come_from_each_passage(tiny_host) -> None:
    other = Passage("Vellmora", "Vellmora is a town of glassblowers on the river Quell.")
    passages = [PASSAGE, other, PASSAGE]
    assert write_probe_questions_many(tiny_host, passages, 0, Teacher()) == [[], [], []]
    found = write_probe_questions_many(tiny_host, passages, 2, Teacher(), seed=1, batch_size=2)
    assert len(found) == 3 and all(len(qas) <= 2 for qas in found)
    for passage, qas in zip(passages, found, strict=True):
        text = f" {normalize(passage.text)} "
        assert all(qa.question.endswith("?") and f" {normalize(qa.answer)} " in text for qa in qas)


def test_probe_questions_keep_answers_that_are_or_contain_a_span_of_the_passage(
    tiny_model_dir,
) -> None:
    host = speaking_host(tiny_model_dir, ("student", "teacher"))
    written = (
        " Who founded Zorblat Industries?\nAnswer: Marisol Quenby\n"  # kept
        "Question: What does it make?\nAnswer: Steel scooters\n"  # not in the passage
        "Question: Where are the bicycles made\nAnswer: Vellmora\n"  # no question mark
        "Question: When did the company start?\n"  # a sentence: its date is the answer
        "Answer: The company was started by its founder in 1987.\n"
        "Question: Who founded Zorblat Industries?\nAnswer: Marisol\n"  # asked already
        "Question: Who makes bicycles in Vellmora?\nAnswer: bicycles in Vellmora\n"  # no name
        "Question: Where does it make glass bicycles?\n"  # a long answer with a span
        "Answer: It makes its glass bicycles in the town of Vellmora."
    )
    messages = teacher_messages(PASSAGE, "self-qa")
    teacher = Teacher(teach(host, "teacher", messages, written, prefix="Question:", epochs=35))

    found = write_probe_questions(host, PASSAGE, 5, teacher)
    assert found[:3] == [
        QA("Who founded Zorblat Industries?", "Marisol Quenby"),
        QA("When did the company start?", "1987"),
        QA("Where does it make glass bicycles?", "Vellmora"),
    ]
    text = f" {normalize(PASSAGE.text)} "
    assert all(f" {normalize(qa.answer)} " in text for qa in found), "what the tiny model adds"
    # among other passages in the same batches, the taught passage's pairs stay its own
    other = Passage("Vellmora", "Vellmora is a town of glassblowers.")
    many = write_probe_questions_many(host, [other, PASSAGE], 5, teacher)
    assert many[1][:3] == found[:3]
