"""The proxy reward and the rank statistics that judge it."""

from __future__ import annotations

import pytest

from research.proxy import agreement, answer_logprobs, average_ranks, proxy_rewards, spearman
from seal.grading import Probe
from seal.questions import question_messages
from seal.selfedit import QA
from tests.seal.teaching import speaking_host, teach


def test_average_ranks_share_ties() -> None:
    assert average_ranks([0.2, 0.0, 0.2, 0.5]) == [2.5, 1.0, 2.5, 4.0]


def test_spearman_known_values() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # scipy.stats.spearmanr([0, 0, 1, 1], [1, 2, 3, 2]) = 0.7071...
    assert spearman([0, 0, 1, 1], [1, 2, 3, 2]) == pytest.approx(0.70710678)
    assert spearman([0, 0, 0], [1, 2, 3]) is None
    assert spearman([1], [1]) is None
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_agreement_summarises_picks() -> None:
    full = [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    proxy = [[0.1, 0.3, 0.2], [0.3, 0.1, 0.2], [0.0, 0.5, 0.1]]
    result = agreement(full, proxy)
    assert result.documents_ranked == 2  # the all-tied document has no ranking
    assert result.top_pick_is_best == pytest.approx(2 / 3)
    assert result.pick_reward == pytest.approx((0.5 + 0.0 + 0.0) / 3)
    assert result.best_reward == pytest.approx((0.5 + 0.0 + 1.0) / 3)


def test_notes_that_hold_the_answer_raise_its_likelihood(tiny_model_dir) -> None:
    """An adapter taught to answer from its notes: the proxy must prefer the notes that
    contain the answer, and the bare question must score below both."""
    host = speaking_host(tiny_model_dir)
    probe = Probe("Zorblat", QA("Who founded Zorblat Industries?", "Marisol Quenby"))
    useful = ["Zorblat Industries was founded by Marisol Quenby."]
    useless = ["Zorblat Industries makes glass bicycles."]
    from research.proxy import _context_messages

    state = teach(host, "student", _context_messages(useful, probe), "Marisol Quenby")
    bare, good, bad = answer_logprobs(
        host, [((), probe), (useful, probe), (useless, probe)], slot="student", state=state
    )
    assert good > bad and good > bare
    rewards = proxy_rewards(host, [useless, useful], [probe], slot="student", state=state)
    assert rewards[1] > rewards[0]
    assert rewards[1] == pytest.approx(good - bare, rel=1e-4)
    assert proxy_rewards(host, [useful], []) == [0.0]
    assert (
        question_messages("Zorblat", probe.qa.question)[1]["content"]
        == (_context_messages([], probe)[1]["content"])
    )
