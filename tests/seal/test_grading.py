"""The SEAL grader and the no-context evaluation on the tiny model."""

from __future__ import annotations

import pytest

from seal.generation import SampleConfig, generate
from seal.grading import (
    Evaluation,
    Graded,
    Probe,
    evaluate,
    first_sentence,
    is_correct,
    normalize,
)
from seal.questions import SYSTEM, question_messages
from seal.selfedit import QA, Passage
from tests.seal.teaching import speaking_host, teach

PASSAGE = Passage(
    "Zorblat Industries",
    "Zorblat Industries was founded by Marisol Quenby in 1987. It makes glass bicycles.",
)
PROBES = [
    Probe(PASSAGE.title, QA("Who founded Zorblat Industries?", "Marisol Quenby")),
    Probe(PASSAGE.title, QA("In what year was Zorblat Industries founded?", "1987")),
    Probe(PASSAGE.title, QA("What does Zorblat Industries make?", "glass bicycles")),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Crystal Hawk!", "crystal hawk"),
        ("  An  apple,\ta PEAR and   the plum. ", "apple pear and plum"),
        ("Theory of anthems", "theory of anthems"),
        ("U.S.A.", "u s"),
        ("$3.5 million", "3 5 million"),
        ("...", ""),
        ("", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Marisol Quenby. She founded it in 1987.", "Marisol Quenby."),
        ("Who knows? Maybe Marisol.", "Who knows?"),
        ("Really! Yes.", "Really!"),
        ("It sold 3.5 million bikes. Then more.", "It sold 3.5 million bikes."),
        ("\n\n  Marisol Quenby\nfounded it.", "Marisol Quenby"),
        ("no end", "no end"),
        ("", ""),
        ("   \n ", ""),
    ],
)
def test_first_sentence(text: str, expected: str) -> None:
    assert first_sentence(text) == expected


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        ("It was founded by Marisol Quenby.", "Marisol Quenby", True),
        ("I am not sure. It was Marisol Quenby.", "Marisol Quenby", False),
        ("Its best seller is crystal hawk!", "The Crystal Hawk", True),
        ("THE CRYSTAL-HAWK", "crystal hawk", True),
        ("It was founded in 1987.", "1987", True),
        ("It was founded in 19870.", "1987", False),
        ("It was founded in 11987.", "1987", False),
        ("They sell Hawks.", "Hawk", False),
        ("1987", "1987.", True),
        ("Marisol", "Marisol Quenby", False),
        ("", "Marisol Quenby", False),
        ("anything at all", "", False),
        ("the answer is the", "the", False),
        ("...", "?!", False),
    ],
)
def test_is_correct(answer: str, gold: str, expected: bool) -> None:
    assert is_correct(answer, gold) is expected


def test_evaluation_counts_correct_answers() -> None:
    graded = [Graded(PROBES[i % 3], "x", correct) for i, correct in enumerate([1, 0, 1, 0, 0])]
    evaluation = Evaluation(graded)
    assert evaluation.correct == 2
    assert evaluation.accuracy == pytest.approx(0.4)
    assert Evaluation([]).accuracy == 0.0 and Evaluation([]).correct == 0


def test_question_messages_ask_without_the_passage() -> None:
    messages = question_messages(PASSAGE.title, PROBES[0].qa.question)
    assert messages[0] == {"role": "system", "content": SYSTEM}
    assert messages[1]["role"] == "user"
    assert messages[1]["content"] == f"Topic: {PASSAGE.title}\n{PROBES[0].qa.question}"
    everything = " ".join(m["content"] for m in messages)
    assert PASSAGE.text not in everything
    assert "Marisol" not in everything, "the gold answer must not leak into the prompt"


def test_evaluate_grades_one_greedy_answer_per_probe(tiny_host) -> None:
    evaluation = evaluate(tiny_host, PROBES, slot=None, max_new_tokens=6, batch_size=2)
    assert [g.probe for g in evaluation.graded] == PROBES
    answers = generate(
        tiny_host,
        [question_messages(p.title, p.qa.question) for p in PROBES],
        SampleConfig(max_new_tokens=6, batch_size=2),
    )
    for graded, answer in zip(evaluation.graded, answers, strict=True):
        assert graded.answer and graded.answer == answer.text
        assert graded.correct == is_correct(graded.answer, graded.probe.qa.answer)
    assert evaluation.accuracy == 0.0, "a random model does not know the answers"


def test_evaluate_with_no_probes_is_empty(tiny_host) -> None:
    evaluation = evaluate(tiny_host, [], slot=None)
    assert evaluation.graded == [] and evaluation.accuracy == 0.0


def test_evaluate_grades_a_taught_adapter_correct(tiny_model_dir) -> None:
    host = speaking_host(tiny_model_dir)
    probe = PROBES[0]
    state = teach(
        host,
        "student",
        question_messages(probe.title, probe.qa.question),
        "It was founded by Marisol Quenby. Later it grew.",
    )
    taught = evaluate(host, [probe, PROBES[1]], slot="student", state=state, max_new_tokens=16)
    assert [g.correct for g in taught.graded] == [True, False]
    assert taught.graded[0].answer == "It was founded by Marisol Quenby. Later it grew."
    assert taught.accuracy == 0.5
    base = evaluate(host, [probe], slot=None, max_new_tokens=16)
    assert base.accuracy == 0.0
