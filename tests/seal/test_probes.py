"""Probe questions without a model: spans of written answers, and cloze questions."""

from __future__ import annotations

from seal.grading import normalize
from seal.probes import answer_span, cloze_questions, probe_pairs
from seal.selfedit import QA

MARKET = (
    "The Grainger Market itself, was opened in 1835 and was Newcastle's first indoor market. "
    "It replaced an earlier market originally built in 1808 called the Butcher Market."
)


def test_a_short_answer_found_in_the_passage_is_its_own_gold() -> None:
    assert answer_span("When was the market opened?", "1835.", MARKET) == "1835"


def test_a_sentence_answer_is_graded_on_the_span_that_fits_the_question() -> None:
    answer = "The Grainger Market, which opened in 1835, was Newcastle's first indoor market."
    assert answer_span("When was the Grainger Market opened?", answer, MARKET) == "1835"
    assert answer_span("Which market did it replace?", f"It replaced the {MARKET[-15:]}", MARKET)


def test_a_span_the_question_or_title_gives_away_is_no_answer() -> None:
    assert answer_span("Was the Grainger Market indoor?", "Grainger Market", MARKET) is None
    question = "What is the first indoor market of this city?"
    assert answer_span(question, "Newcastle", MARKET, title="Newcastle") is None
    assert answer_span("What came after?", "but it was", MARKET) is None, "stopwords only"


def test_an_answer_the_passage_does_not_hold_is_dropped() -> None:
    assert answer_span("When was it opened?", "In the spring of 1999.", MARKET) is None
    assert answer_span("Who built it?", "a local builder", MARKET) is None, "no name"


def test_written_pairs_keep_one_per_question_and_answer_and_need_a_question() -> None:
    pairs = [
        QA("When was the Grainger Market opened?", "It opened in 1835."),
        QA("When did the Grainger Market open its doors?", "1835"),  # the same answer
        QA("When was the Grainger Market opened?", "In 1835"),  # the same question
        QA("The year it was built", "1808"),  # not a question
        QA("When was the Butcher Market built?", "It was built in 1808."),
    ]
    assert probe_pairs(MARKET, pairs) == [
        QA("When was the Grainger Market opened?", "1835"),
        QA("When was the Butcher Market built?", "1808"),
    ]


def test_cloze_questions_blank_names_numbers_and_dates_of_each_sentence_first() -> None:
    found = cloze_questions("Newcastle", MARKET, 3)
    assert [qa.answer for qa in found] == ["1835", "1808", "Grainger Market"]
    for qa in found:
        assert "___" in qa.question and qa.question.endswith("?")
        assert normalize(qa.answer) not in normalize(qa.question), "the blank is not given away"
        filled = qa.question.split('"')[1].replace("___", qa.answer)
        assert normalize(filled) in normalize(MARKET), "the window is the document's own text"
    assert cloze_questions("Newcastle", MARKET, 3) == found, "deterministic"


def test_a_document_without_names_numbers_or_terms_has_no_cloze_question() -> None:
    assert cloze_questions("A note", "Be kind to all and well met.", 5) == []
    assert cloze_questions("Newcastle", MARKET, 0) == []


def test_words_of_the_title_are_never_the_blank() -> None:
    found = cloze_questions("Grainger Market", MARKET, 10)
    assert found and all("grainger" not in normalize(qa.answer) for qa in found)
