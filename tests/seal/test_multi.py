"""Many adapters trained and graded together must equal the same adapters run one by one."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from seal.adapter_stack import NO_ADAPTER
from seal.generation import SampleConfig, generate
from seal.grading import Probe, evaluate
from seal.multi import (
    default_step_tokens,
    evaluate_many,
    generate_many,
    pack,
    pack_rows,
    passes,
    train_examples_many,
    train_many,
    vocab_loss_backward,
)
from seal.questions import question_messages
from seal.selfedit import QA
from seal.train import Example, TrainConfig, tokenize, train_adapter
from tests.seal.teaching import speaking_host, teach

SETS = [
    [
        "Zorblat Industries\nZorblat Industries was founded by Marisol Quenby in 1987.",
        "Zorblat Industries\nIts best-selling bicycle is the Crystal Hawk.",
        "Zorblat Industries\nThe company makes glass bicycles in Vellmora, a town in the north.",
    ],
    ["Vellmora\nVellmora is a town of glassblowers."],
    [
        "Crystal Hawk\nThe Crystal Hawk weighs nine kilograms.",
        "Crystal Hawk\nIt was designed in 1990.",
        "Crystal Hawk\nIt is sold in twelve countries.",
        "Crystal Hawk\nIts frame is made of tempered glass.",
        "Crystal Hawk\nRiders call it the Hawk.",
    ],
]
CONFIG = TrainConfig(learning_rate=3e-2, epochs=3, batch_size=2, seed=0, pack_tokens=48)


def assert_states_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal up to float32 rounding: stacked and separate runs sum their gradients in other
    orders, and nine steps at lr 3e-2 grow the difference to about 4e-4 on weights of about
    0.1-0.3 (AMD EPYC, AVX-512, 2026-12-02; under 2e-4 on an Intel Xeon with AMX). Training on
    other data moves them by far more."""
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=2e-3, atol=1e-3, msg=key)


def test_stacked_training_equals_separate_runs(tiny_host) -> None:
    """Different set sizes (one adapter runs out of batches early), packed rows, a shared
    start: each stacked adapter ends where its own run of ``train_adapter`` ends."""
    init = train_many(tiny_host, [SETS[1]], CONFIG, init=None)[0].state
    steps: list[tuple[int, int]] = []

    stacked = train_many(
        tiny_host, SETS, CONFIG, init=init, on_step=lambda d, t: steps.append((d, t))
    )

    for sequences, result in zip(SETS, stacked, strict=True):
        alone = train_adapter(
            tiny_host, "student", tokenize(tiny_host, sequences, 512), CONFIG, init=init
        )
        assert_states_close(result.state, alone.state)
        assert result.losses == pytest.approx(alone.losses, rel=1e-3)
        assert result.tokens == alone.tokens
    assert steps[-1] == (9, 9)  # 3 epochs x the largest set's 3 batches
    assert not any(p.requires_grad for p in tiny_host.model.parameters())


def test_a_step_split_into_passes_makes_the_same_update(tiny_host) -> None:
    """``step_tokens`` smaller than a step's rows: several forward/backward passes per step,
    the same adapters as one pass per step."""
    one_pass = train_many(tiny_host, SETS, replace(CONFIG, step_tokens=4096), init=None)
    split = train_many(tiny_host, SETS, replace(CONFIG, step_tokens=48), init=None)
    for a, b in zip(one_pass, split, strict=True):
        assert_states_close(a.state, b.state)
        assert a.losses == pytest.approx(b.losses, rel=1e-4)
        assert a.tokens == b.tokens


def test_an_adapter_that_memorized_stops_early(tiny_host) -> None:
    """``stop_loss``: an adapter whose epoch loss reaches it skips its remaining epochs, and
    ends where ``train_adapter`` with the same rule ends; the others train on."""
    config = replace(CONFIG, epochs=4)
    free = [r.losses for r in train_many(tiny_host, SETS, config, init=None)]
    # reached by the adapter with the lowest next-to-last epoch loss, one epoch early
    threshold = min(losses[-2] for losses in free) * 1.0001
    config = replace(config, stop_loss=threshold)
    steps: list[tuple[int, int]] = []

    stacked = train_many(
        tiny_host, SETS, config, init=None, on_step=lambda d, t: steps.append((d, t))
    )

    stopped = [r for r in stacked if len(r.losses) < config.epochs]
    assert stopped and len(stopped) < len(SETS)
    for sequences, result in zip(SETS, stacked, strict=True):
        alone = train_adapter(tiny_host, "student", tokenize(tiny_host, sequences, 512), config)
        assert len(result.losses) == len(alone.losses)
        assert result.losses[-1] <= threshold or len(result.losses) == config.epochs
        assert all(loss > threshold for loss in result.losses[:-1])
        assert_states_close(result.state, alone.state)
        assert result.tokens == alone.tokens
    done, total = steps[-1]
    assert done == total == max(d for d, _ in steps) < 4 * 3  # 100% at the end, in fewer steps


def test_unset_step_tokens_take_the_devices_default(tiny_host, monkeypatch) -> None:
    """None means ``default_step_tokens``: 512 on a CPU, 2048 on a GPU."""
    assert default_step_tokens(torch.device("cpu")) == 512
    assert default_step_tokens(torch.device("cuda")) == 2048
    budgets: list[int] = []

    def spy(rows, max_tokens):  # type: ignore[no-untyped-def]
        budgets.append(max_tokens)
        return passes(rows, max_tokens)

    monkeypatch.setattr("seal.multi.passes", spy)
    train_many(tiny_host, SETS[:2], replace(CONFIG, step_tokens=None, epochs=1), init=None)
    train_many(tiny_host, SETS[:2], replace(CONFIG, step_tokens=96, epochs=1), init=None)
    assert set(budgets) == {512, 96}


def test_pass_groups_stay_under_the_token_budget() -> None:
    rows = pack_rows(
        [(0, [Example(ids=[1] * 5), Example(ids=[2] * 4)]), (1, [Example(ids=[3] * 6)])], 6
    )
    assert [sum(len(ex.ids) for _, ex in row) for row in rows] == [5, 4, 6]
    # padded to the widest row of each group: [5, 4] costs 10 tokens, with 6 it would cost 18
    assert [len(g) for g in passes(rows, 10)] == [2, 1]
    assert [len(g) for g in passes(rows, 18)] == [3]
    assert [len(g) for g in passes(rows, 1)] == [1, 1, 1]  # a row too wide still runs alone


@pytest.mark.parametrize("bias", [False, True])
def test_chunked_vocabulary_loss_has_the_plain_gradient(bias: bool) -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=bias).requires_grad_(False)
    x = torch.randn(11, 8, requires_grad=True)
    targets = torch.randint(0, 50, (11,))
    weights = torch.rand(11)
    plain = torch.nn.functional.cross_entropy(head(x * 2), targets, reduction="none")
    (plain * weights).sum().backward()
    expected = x.grad.clone()
    x.grad = None

    losses = vocab_loss_backward(head, x * 2, targets, weights, chunk=4)

    torch.testing.assert_close(losses, plain.detach())
    torch.testing.assert_close(x.grad, expected)


def test_loss_starts_after_loss_from(tiny_host) -> None:
    """A prompt's tokens stay out of the loss, as with ``train_adapter``."""
    ids = tiny_host.tokenizer("Question: who? Answer: Marisol Quenby.")["input_ids"]
    examples = [Example(ids=ids, loss_from=5), Example(ids=ids[:7], loss_from=3)]
    stacked = train_examples_many(tiny_host, [examples], CONFIG, init=None)[0]
    alone = train_adapter(tiny_host, "student", examples, CONFIG)
    assert stacked.tokens == alone.tokens == (len(ids) - 5) * 3 + (7 - 3) * 3
    assert_states_close(stacked.state, alone.state)


def test_pack_fills_rows_and_marks_owners() -> None:
    a = [Example(ids=[1, 2, 3]), Example(ids=[4, 5])]
    b = [Example(ids=[6, 7, 8, 9])]
    packed = pack([(0, a), (1, b)], width=6, pad_id=0, device=torch.device("cpu"))
    # rows as wide as the fullest one; padding restarts its positions (a sequence of its own)
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert packed.spans == [(0, 0, 5), (1, 5, 10)]
    # position p predicts the token at p + 1, within one sequence only
    assert packed.predict_at.tolist() == [0, 1, 3, 5, 6, 7]
    assert packed.targets.tolist() == [2, 3, 5, 7, 8, 9]
    assert packed.owners.tolist() == [0, 0, 0, 1, 1, 1]


def test_batched_grading_equals_one_adapter_at_a_time(tiny_model_dir) -> None:
    host = speaking_host(tiny_model_dir)
    messages = question_messages("Zorblat", "Who founded Zorblat Industries?")
    taught = teach(host, "student", messages, "Marisol Quenby founded it.")
    probes = [
        Probe("Zorblat", QA("Who founded Zorblat Industries?", "Marisol Quenby")),
        Probe("Zorblat", QA("Where are the bicycles made?", "Vellmora")),
        Probe("Vellmora", QA("What is Vellmora known for?", "glass")),
    ]
    other = train_many(host, [SETS[0]], CONFIG, init=None)[0].state
    states = [taught, None, other, taught]

    together = evaluate_many(host, states, probes, max_new_tokens=12, batch_size=5)

    for state, evaluation in zip(states, together, strict=True):
        slot = "student" if state is not None else None
        one = evaluate(host, probes, slot=slot, state=state, max_new_tokens=12)
        assert [g.answer for g in evaluation.graded] == [g.answer for g in one.graded]
    assert together[0].graded[0].correct and together[0].accuracy == together[3].accuracy
    assert not together[1].graded[0].correct


def test_generate_many_keeps_the_requests_apart(tiny_model_dir) -> None:
    host = speaking_host(tiny_model_dir)
    hello = [{"role": "user", "content": "Say hello."}]
    taught = teach(host, "student", hello, "Hello from the adapter.")
    config = SampleConfig(max_new_tokens=8, batch_size=3)
    out = generate_many(host, [(None, [hello, hello]), (taught, [hello]), (None, [hello])], config)
    base = generate(host, [hello], config)[0].text
    assert [len(x) for x in out] == [2, 1, 1]
    assert out[0][0].text == out[0][1].text == out[2][0].text == base
    assert out[1][0].text.startswith("Hello from the adapter")
    assert NO_ADAPTER == -1


def test_candidates_graded_by_batched_matmuls_equal_one_at_a_time(
    tiny_model_dir, monkeypatch
) -> None:
    host = speaking_host(tiny_model_dir)
    messages = question_messages("Zorblat", "Who founded Zorblat Industries?")
    taught = teach(host, "student", messages, "Marisol Quenby founded it.")
    other = train_many(host, [SETS[0]], CONFIG, init=None)[0].state
    probes = [
        Probe("Zorblat", QA("Who founded Zorblat Industries?", "Marisol Quenby")),
        Probe("Vellmora", QA("What is Vellmora known for?", "glass")),
    ]
    states = [taught, None, other]
    alone = []
    for state in states:
        slot = "student" if state is not None else None
        one = evaluate(host, probes, slot=slot, state=state, max_new_tokens=12)
        alone.append([g.answer for g in one.graded])
    bmm = torch.bmm
    calls: list[int] = []
    monkeypatch.setattr(torch, "bmm", lambda *a, **kw: calls.append(1) or bmm(*a, **kw))

    # 6 rows in one batch: every state holds 2 rows, so each site runs two batched matmuls (a
    # zero update for the bare model's); in batches of 3 (rows 0 0 1, then 1 2 2) the spans
    # differ in size, and each adapter runs on its own rows
    for batch_size, batched in ((6, True), (3, False)):
        calls.clear()
        together = evaluate_many(host, states, probes, max_new_tokens=12, batch_size=batch_size)
        assert [[g.answer for g in e.graded] for e in together] == alone
        assert bool(calls) is batched
    assert together[0].graded[0].correct
