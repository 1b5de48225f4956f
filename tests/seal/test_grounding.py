"""Self-edits checked against their document (seal.grounding) and the honest choice among
candidates (seal.knowledge.choose_candidate, split_probes)."""

from __future__ import annotations

import pytest

from seal.grading import Evaluation, Graded, Probe
from seal.grounding import ground, repeats_probe
from seal.knowledge import Candidate, choose_candidate, split_probes
from seal.selfedit import QA, parse_items, parse_qa
from seal.train import TrainResult

TITLE = "Zorblat Industries"
TEXT = (
    "Zorblat Industries was founded by Marisol Quenby in 1987 in Oslo. "
    "It makes 4,000 widgets a year."
)


def test_a_pair_whose_answer_is_not_in_the_document_is_dropped() -> None:
    text = (
        "Question: Who founded Zorblat Industries?\nAnswer: Marisol Quenby\n"
        "Question: When was Zorblat Industries founded?\nAnswer: It was founded in 1992."
    )
    result = ground(text, "self-qa", TITLE, TEXT)
    assert parse_qa(result.text) == [QA("Who founded Zorblat Industries?", "Marisol Quenby")]
    assert result.kept == 1 and result.dropped == {"ungrounded": 1}


def test_an_implication_with_a_name_or_number_the_document_never_gave_is_dropped() -> None:
    text = (
        "1. Zorblat Industries was founded by Marisol Quenby.\n"
        "2. The company was started in 1990 by John Smith.\n"
        "3. Zorblat's factory makes 4000 widgets every year.\n"
        "4. Its founder, Quenby, chose Bergen."
    )
    result = ground(text, "implications", TITLE, TEXT)
    assert parse_items(result.text, "implications") == [
        "Zorblat Industries was founded by Marisol Quenby.",
        "Zorblat's factory makes 4000 widgets every year.",
    ]
    assert result.dropped == {"ungrounded": 2}


def test_a_truncated_self_edit_is_dropped_or_loses_its_unfinished_item() -> None:
    text = "1. Zorblat Industries was founded in 1987.\n2. It makes 4,000 widg"
    dropped = ground(text, "rewrite", TITLE, TEXT, truncated=True)
    assert dropped.text == "" and dropped.kept == 0 and dropped.dropped == {"truncated": 2}
    trimmed = ground(text, "rewrite", TITLE, TEXT, truncated=True, on_truncated="trim")
    assert parse_items(trimmed.text, "rewrite") == ["Zorblat Industries was founded in 1987."]
    kept = ground(text, "rewrite", TITLE, TEXT, truncated=True, on_truncated="keep")
    assert kept.kept == 2
    assert ground(text, "rewrite", TITLE, TEXT).kept == 2, "a finished one is not cut"


def test_an_item_that_repeats_a_probe_is_dropped() -> None:
    probe = QA("Where was Zorblat Industries founded?", "Oslo")
    text = (
        "Question: Where was Zorblat Industries founded?\nAnswer: Oslo\n"
        "Question: In which city is Zorblat based?\nAnswer: It is based in Oslo.\n"
        "Question: Who founded Zorblat Industries?\nAnswer: Marisol Quenby"
    )
    result = ground(text, "self-qa", TITLE, TEXT, [probe])
    assert parse_qa(result.text) == [QA("Who founded Zorblat Industries?", "Marisol Quenby")]
    assert result.dropped == {"repeats_probe": 2}
    assert not repeats_probe(QA("How many widgets does it make?", "4,000"), [probe])


def _graded(*right: bool) -> Evaluation:
    probe = Probe(TITLE, QA("q?", "a"))
    return Evaluation([Graded(probe, "a" if ok else "x", ok) for ok in right])


def _candidate(right: tuple[bool, ...], *, plain: bool = False, loss: float = 1.0) -> Candidate:
    return Candidate(
        "" if plain else "a self-edit",
        [],
        evaluation=_graded(*right),
        trained=TrainResult(state={}, losses=[loss]),
        passage_alone=plain,
    )


def test_a_self_edit_that_ties_the_passage_does_not_replace_it() -> None:
    plain = _candidate((True, False, False, True), plain=True, loss=2.0)
    tie = _candidate((True, False, True, False), loss=0.1)
    assert choose_candidate([tie, plain], [0, 1]) is plain
    better = _candidate((True, True, False, False))
    assert choose_candidate([tie, better, plain], [0, 1]) is better
    # a margin of 2 asks for two more of the probes it is chosen on
    assert choose_candidate([better, plain], [0, 1], margin=2) is plain
    # what it answers on the probes it is not chosen on does not count
    assert choose_candidate([tie, plain], [2, 3]) is plain
    assert choose_candidate([tie, plain], []) is plain, "nothing to choose on"


def test_without_the_passage_alone_the_best_self_edit_is_chosen() -> None:
    low = _candidate((False, False))
    high = _candidate((True, False))
    assert choose_candidate([low, high], [0, 1]) is high
    with pytest.raises(ValueError, match="no candidates"):
        choose_candidate([], [0])


@pytest.mark.parametrize("n", [0, 1, 2, 5, 8])
def test_the_probes_are_split_into_two_disjoint_halves(n: int) -> None:
    chosen, judged = split_probes(n, seed=3)
    assert sorted(chosen + judged) == list(range(n)) and not set(chosen) & set(judged)
    assert len(judged) == n - n // 2 and len(chosen) == n // 2
    assert split_probes(n, seed=3) == (chosen, judged), "repeatable"
