"""Continuous batching with mixed adapters: a reply decoded beside others is the reply decoded
alone, requests join and leave at token boundaries, and streaming, stop strings, max_tokens,
seeds and cancellation keep working."""

from __future__ import annotations

import threading
import time

import torch

from seal.batching import BatchEngine
from seal.generation import Generation, SampleConfig, generate
from seal.lora import AdapterHost, AdapterState
from tests.seal.teaching import speaking_host, teach
from tests.seal.test_serving import CHAT, REPLY

PROMPTS = [
    [{"role": "user", "content": "Where is the harbour of Vellmora?"}],
    [{"role": "user", "content": "Tell me, in many more words than the other prompt, about X."}],
    [{"role": "user", "content": "Who?"}],
    [{"role": "user", "content": "Name the mayor of a town that has a harbour, please."}],
]


def noisy(host: AdapterHost, seed: int) -> AdapterState:
    generator = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=generator) * 0.5 if ".lora_B." in k else v
        for k, v in host.fresh_state("student").items()
    }


def alone(host: AdapterHost, messages, state: AdapterState | None, **options) -> Generation:  # type: ignore[no-untyped-def]
    config = SampleConfig(max_new_tokens=options.pop("max_tokens"), **options)
    slot = "student" if state is not None else None
    return generate(host, [messages], config, slot=slot, state=state)[0]


def test_mixed_adapters_in_one_batch_write_what_each_writes_alone(tiny_host) -> None:
    states = [None, noisy(tiny_host, 1), noisy(tiny_host, 2), noisy(tiny_host, 1)]
    keys = [None, "a", "b", "a"]  # two rows share adapter a; one row is the base model
    expected = [alone(tiny_host, p, s, max_tokens=10) for p, s in zip(PROMPTS, states, strict=True)]
    assert len({g.text for g in expected}) > 2  # the adapters change what is written
    sizes: list[int] = []
    engine = BatchEngine(tiny_host, "student", on_batch=sizes.append)
    replies = [
        engine.submit(p, adapter=(k, s) if s is not None else None, max_tokens=10)
        for p, k, s in zip(PROMPTS, keys, states, strict=True)
    ]
    assert [r.result() for r in replies] == expected
    assert max(sizes) > 1  # they did share decoding steps


def test_requests_join_and_leave_the_running_batch(tiny_host) -> None:
    # the references first: the engine's thread owns the model while it decodes
    state = noisy(tiny_host, 3)
    expected_long = alone(tiny_host, PROMPTS[1], state, max_tokens=40)
    expected_short = [alone(tiny_host, p, None, max_tokens=3) for p in PROMPTS[2:]]
    expected_again = alone(tiny_host, PROMPTS[0], None, max_tokens=5)
    engine = BatchEngine(tiny_host, "student")
    long = engine.submit(PROMPTS[1], adapter=("a", state), max_tokens=40)
    first = next(long)  # the long reply is being decoded
    short = [engine.submit(p, adapter=None, max_tokens=3) for p in PROMPTS[2:]]
    assert [reply.result() for reply in short] == expected_short
    *pieces, generation = [first, *long]
    assert generation == expected_long
    assert "".join(pieces) == expected_long.text  # type: ignore[arg-type]
    # a request after the batch emptied starts a new one
    assert engine.submit(PROMPTS[0], adapter=None, max_tokens=5).result() == expected_again


def test_stop_strings_and_the_end_of_turn_end_a_reply(tiny_model_dir) -> None:
    host = speaking_host(tiny_model_dir)
    taught = teach(host, "student", CHAT, REPLY)
    engine = BatchEngine(host, "student")
    whole = engine.submit(CHAT, adapter=("t", taught), max_tokens=40).result()
    assert whole.text == REPLY and whole.finish_reason == "stop"
    assert whole.completion_tokens < 40  # it ended its turn
    reply = engine.submit(CHAT, adapter=("t", taught), max_tokens=40, stop=["Quenby"])
    *pieces, generation = list(reply)
    assert "".join(pieces) == "Marisol" == generation.text  # type: ignore[union-attr]
    assert isinstance(generation, Generation) and generation.finish_reason == "stop"


def test_a_seeded_sample_repeats_whatever_shares_its_steps(tiny_host) -> None:
    engine = BatchEngine(tiny_host, "student")
    options = dict(max_tokens=12, temperature=1.0, top_p=0.9, seed=5)
    solo = engine.submit(PROMPTS[0], adapter=None, **options).result()  # type: ignore[arg-type]
    crowd = [engine.submit(p, adapter=None, max_tokens=12, temperature=1.0) for p in PROMPTS[1:]]
    again = engine.submit(PROMPTS[0], adapter=None, **options).result()  # type: ignore[arg-type]
    assert again == solo and solo.completion_tokens == 12
    for reply in crowd:
        reply.result()


def test_closing_a_reply_cancels_it_and_the_others_go_on(tiny_host) -> None:
    expected = alone(tiny_host, PROMPTS[2], None, max_tokens=30)
    engine = BatchEngine(tiny_host, "student")
    doomed = engine.submit(PROMPTS[0], adapter=None, max_tokens=4000, temperature=1.0, seed=1)
    kept = engine.submit(PROMPTS[2], adapter=None, max_tokens=30)
    items: list[str | Generation] = []
    reader = threading.Thread(target=lambda: items.extend(doomed), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not items and time.monotonic() < deadline:
        time.sleep(0.01)
    doomed.close()
    reader.join(timeout=60)
    assert not reader.is_alive()
    generation = items[-1]
    assert isinstance(generation, Generation) and generation.completion_tokens < 4000
    assert kept.result() == expected


def test_a_request_that_fails_fails_alone(tiny_host) -> None:
    expected = alone(tiny_host, PROMPTS[0], None, max_tokens=6)
    engine = BatchEngine(tiny_host, "student")
    broken = {k: v[:1] for k, v in noisy(tiny_host, 4).items()}  # the wrong shape
    good = engine.submit(PROMPTS[0], adapter=None, max_tokens=6)
    bad = engine.submit(PROMPTS[1], adapter=("broken", broken), max_tokens=6)
    try:
        bad.result()
    except (RuntimeError, ValueError, IndexError, KeyError):
        pass
    else:
        raise AssertionError("a reply with a broken adapter did not fail")
    assert good.result() == expected


SAID = "Marisol Quenby founded Zorblat Industries in 1987, in the harbour town of Vellmora."
#: A hybrid-memory chat: the answer is a sentence of the document in the prompt.
OPEN_BOOK = [
    {"role": "system", "content": f"Answer from these documents.\n\nDocument: Zorblat\n{SAID}"},
    CHAT[-1],
]


def test_prompt_lookup_keeps_every_greedy_reply_and_takes_fewer_passes(
    tiny_model_dir, tiny_host
) -> None:
    host = speaking_host(tiny_model_dir)
    taught = teach(host, "student", OPEN_BOOK, SAID)
    copying = alone(host, OPEN_BOOK, taught, max_tokens=40)
    assert copying.text == SAID
    passes: list[int] = []
    engine = BatchEngine(host, "student", on_batch=passes.append, speculate=6)
    assert engine.submit(OPEN_BOOK, adapter=("t", taught), max_tokens=40).result() == copying
    assert len(passes) <= copying.completion_tokens // 2  # most passes kept several tokens
    # a stream sped up gives the same pieces, and max_tokens still holds
    *pieces, cut = list(engine.submit(OPEN_BOOK, adapter=("t", taught), max_tokens=7))
    assert cut == alone(host, OPEN_BOOK, taught, max_tokens=7)
    assert "".join(pieces) == cut.text and cut.completion_tokens == 7  # type: ignore[union-attr]

    # replies that copy little, from the base model and an adapter: the same, token for token
    state = noisy(tiny_host, 4)
    cases = [(p, s) for p in PROMPTS[:2] for s in (None, state)]
    expected = [alone(tiny_host, p, s, max_tokens=30) for p, s in cases]
    engine = BatchEngine(tiny_host, "student", speculate=6)
    for (messages, adapter), reply in zip(cases, expected, strict=True):
        key = ("a", adapter) if adapter is not None else None
        assert engine.submit(messages, adapter=key, max_tokens=30).result() == reply


def test_prompt_lookup_drafts_what_followed_the_last_tokens_earlier() -> None:
    from seal.batching import prompt_lookup

    assert prompt_lookup([5, 6, 7, 8, 9, 5, 6, 7], 3) == [8, 9, 5]
    assert prompt_lookup([5, 6, 7, 8, 1, 6, 7], 2) == [8, 1]  # the last two, not three
    assert prompt_lookup([1, 2, 3, 4], 3) == []  # the tail occurs nowhere earlier
    assert prompt_lookup([4, 4, 4], 5) == [4]  # the latest occurrence, to the end
    assert prompt_lookup([5, 6, 7, 5, 6], 0) == []
