"""The `auto` format policy."""

from __future__ import annotations

import random
from collections import Counter

from seal.selfedit import FORMATS, choose_format


def test_a_format_never_tried_comes_first() -> None:
    rng = random.Random(0)
    assert choose_format({}, rng) == FORMATS[0]
    tried = {"implications": [0.1], "implications-long": [0.0]}
    assert choose_format(tried, rng) == "rewrite"


def test_the_best_mean_reward_wins_without_exploration() -> None:
    rewards = {"implications": [0.0, 0.1], "implications-long": [0.0], "rewrite": [-0.2],
               "self-qa": [0.4, 0.2]}  # fmt: skip
    assert choose_format(rewards, random.Random(0), explore=0.0) == "self-qa"


def test_exploration_tries_the_others_now_and_then() -> None:
    rewards = {f: [0.5 if f == "self-qa" else 0.0] for f in FORMATS}
    picks = Counter(choose_format(rewards, random.Random(i), explore=0.2) for i in range(500))
    assert 0.7 < picks["self-qa"] / 500 < 0.9
    assert set(picks) == set(FORMATS), "every other format is tried sometimes"


def test_auto_can_choose_the_passage_alone_when_self_edits_teach_no_more() -> None:
    over_passage = {f: [-0.1, 0.0] for f in FORMATS}
    assert choose_format(over_passage, random.Random(0), explore=0.0, passage=0.0) == "passage"
    tie = {f: [0.0] for f in FORMATS}
    assert choose_format(tie, random.Random(0), explore=0.0, passage=0.0) == "passage"
    better = {**over_passage, "rewrite": [0.2, 0.1]}
    assert choose_format(better, random.Random(0), explore=0.0, passage=0.0) == "rewrite"
    picks = Counter(
        choose_format(over_passage, random.Random(i), explore=0.2, passage=0.0) for i in range(300)
    )
    assert set(picks) == {"passage", *FORMATS}, "the formats are still explored"
