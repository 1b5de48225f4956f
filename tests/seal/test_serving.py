"""Chat with a tenant's adapter: saved adapters served exactly, cached, thread-safe."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from seal.generation import Generation, SampleConfig, _safe_length, generate
from seal.lora import AdapterHost, AdapterState, save_adapter
from seal.questions import question_messages
from seal.serving import ChatEngine
from tests.seal.teaching import speaking_host, teach
from tests.tiny import SPEC

CHAT = question_messages("Zorblat Industries", "Who founded Zorblat Industries?")
REPLY = "Marisol Quenby founded it."


def noisy(host: AdapterHost, seed: int) -> AdapterState:
    """A fresh adapter with random B matrices: a cheap adapter that changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=generator) * 0.5 if ".lora_B." in k else v
        for k, v in host.fresh_state("student").items()
    }


def saved(state: AdapterState, folder: Path) -> tuple[str, str]:
    return str(folder), save_adapter(state, SPEC, folder)


@pytest.fixture
def taught(tiny_model_dir: Path, tmp_path: Path) -> tuple[AdapterHost, tuple[str, str]]:
    host = speaking_host(tiny_model_dir)
    return host, saved(teach(host, "student", CHAT, REPLY), tmp_path / "taught")


def test_the_adapter_is_served_and_the_base_model_without_it(taught) -> None:
    host, adapter = taught
    engine = ChatEngine(host, "student")
    with_adapter = engine.complete(CHAT, adapter=adapter, max_tokens=16)
    assert with_adapter.text == REPLY and with_adapter.finish_reason == "stop"
    base = engine.complete(CHAT, adapter=None, max_tokens=16)
    assert base.text != REPLY
    assert engine.complete(CHAT, adapter=adapter, max_tokens=16) == with_adapter
    assert engine.complete(CHAT, adapter=None, max_tokens=16) == base
    stopped = engine.complete(CHAT, adapter=adapter, max_tokens=16, stop=["Quenby"])
    assert (stopped.text, stopped.finish_reason) == ("Marisol", "stop")
    # decoding ended at the stop string rather than at the end of the reply
    assert stopped.completion_tokens < with_adapter.completion_tokens


def test_sampling_with_a_seed_repeats(tiny_host, tmp_path: Path) -> None:
    engine = ChatEngine(tiny_host, "student")
    adapter = saved(noisy(tiny_host, 0), tmp_path / "a")
    kwargs = dict(adapter=adapter, max_tokens=6, temperature=1.0, top_p=0.9, seed=3)
    first = engine.complete(CHAT, **kwargs)
    assert engine.complete(CHAT, **kwargs).text.encode() == first.text.encode()
    assert engine.complete(CHAT, **{**kwargs, "seed": 4}).text != first.text


def test_recently_used_adapters_stay_cached(tiny_host, tmp_path: Path) -> None:
    engine = ChatEngine(tiny_host, "student", cache_size=2)
    a, b, c = (saved(noisy(tiny_host, i), tmp_path / name) for i, name in enumerate("abc"))
    expected = {
        name: engine.complete(CHAT, adapter=adapter, max_tokens=3).text
        for name, adapter in zip("abc", (a, b, c), strict=True)
    }
    assert len(set(expected.values())) == 3
    assert engine.adapters.keys() == [b[1], c[1]]

    engine.complete(CHAT, adapter=b, max_tokens=3)  # b is now the most recent
    for uri, _ in (a, b, c):
        shutil.rmtree(uri)
    # b and c are served from memory, in their exact weights; a was evicted and is gone.
    assert engine.complete(CHAT, adapter=c, max_tokens=3).text == expected["c"]
    assert engine.complete(CHAT, adapter=b, max_tokens=3).text == expected["b"]
    with pytest.raises(FileNotFoundError):
        engine.complete(CHAT, adapter=a, max_tokens=3)
    assert engine.adapters.keys() == [c[1], b[1]]


def test_the_engine_reports_cache_hits_misses_and_batches(tiny_host, tmp_path: Path) -> None:
    lookups: list[tuple[bool, float]] = []
    batches: list[int] = []
    engine = ChatEngine(
        tiny_host,
        "student",
        cache_size=1,
        on_adapter=lambda hit, seconds: lookups.append((hit, seconds)),
        on_batch=batches.append,
    )
    a, b = (saved(noisy(tiny_host, i), tmp_path / name) for i, name in enumerate("ab"))
    for adapter in (a, a, b, a, None):
        engine.complete(CHAT, adapter=adapter, max_tokens=2)
    list(engine.stream(CHAT, adapter=b, max_tokens=2))
    # a loaded, a cached, b loaded (a evicted), a loaded again; the base model looks up none
    assert [hit for hit, _ in lookups] == [False, True, False, False, False]
    assert all(seconds >= 0 for _, seconds in lookups)
    assert batches == [1] * 6  # one request per generation: the engine serializes them


def test_a_wrong_checksum_is_refused(tiny_host, tmp_path: Path) -> None:
    engine = ChatEngine(tiny_host, "student")
    uri, digest = saved(noisy(tiny_host, 0), tmp_path / "a")
    with pytest.raises(ValueError, match="checksum"):
        engine.complete(CHAT, adapter=(uri, "0" * 64), max_tokens=2)
    engine.complete(CHAT, adapter=(uri, digest), max_tokens=2)
    with pytest.raises(ValueError, match="checksum"):  # a cached copy does not vouch for it
        engine.complete(CHAT, adapter=(uri, "f" * 64), max_tokens=2)
    assert engine.adapters.keys() == [digest]


def test_concurrent_chats_equal_sequential_ones(tiny_host, tmp_path: Path) -> None:
    engine = ChatEngine(tiny_host, "student", cache_size=2)
    adapters = [None, *(saved(noisy(tiny_host, i), tmp_path / str(i)) for i in range(3))]
    chats = [
        [{"role": "user", "content": f"Question number {i}: who founded Zorblat Industries?"}]
        for i in range(8)
    ]
    jobs = [(chat, adapters[i % 4]) for i, chat in enumerate(chats)]
    sequential = [engine.complete(chat, adapter=a, max_tokens=4) for chat, a in jobs]
    assert len({g.text for g in sequential}) >= 4, "the adapters must matter"

    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(
            pool.map(lambda job: engine.complete(job[0], adapter=job[1], max_tokens=4), jobs)
        )
    assert concurrent == sequential


def test_a_cache_of_size_zero_still_serves(tiny_host, tmp_path: Path) -> None:
    engine = ChatEngine(tiny_host, "student", cache_size=0)
    adapter = saved(noisy(tiny_host, 0), tmp_path / "a")
    assert engine.complete(CHAT, adapter=adapter, max_tokens=2).completion_tokens == 2
    assert engine.adapters.keys() == []


def _streamed(engine: ChatEngine, **kwargs: object) -> tuple[list[str], Generation]:
    items = list(engine.stream(CHAT, **kwargs))  # type: ignore[arg-type]
    *pieces, last = items
    assert all(isinstance(p, str) and p for p in pieces)
    assert isinstance(last, Generation)
    return pieces, last  # type: ignore[return-value]


def test_a_streamed_reply_adds_up_to_the_complete_one(taught) -> None:
    host, adapter = taught
    engine = ChatEngine(host, "student")
    for options in (
        dict(adapter=adapter, max_tokens=16),
        dict(adapter=None, max_tokens=16),
        dict(adapter=adapter, max_tokens=16, stop=["Quenby"]),
        dict(adapter=adapter, max_tokens=3),
    ):
        pieces, generation = _streamed(engine, **options)
        assert generation == engine.complete(CHAT, **options), options  # type: ignore[arg-type]
        assert "".join(pieces) == generation.text, options
    pieces, _ = _streamed(engine, adapter=adapter, max_tokens=16)
    assert "".join(pieces) == REPLY and len(pieces) > 2  # a piece per token or so
    pieces, generation = _streamed(engine, adapter=adapter, max_tokens=16, stop=["Quenby"])
    assert "".join(pieces) == "Marisol" and generation.finish_reason == "stop"


def test_a_streamed_sample_repeats_with_its_seed(tiny_host, tmp_path: Path) -> None:
    engine = ChatEngine(tiny_host, "student")
    adapter = saved(noisy(tiny_host, 0), tmp_path / "a")
    options = dict(adapter=adapter, max_tokens=12, temperature=1.0, top_p=0.9, seed=3)
    pieces, generation = _streamed(engine, **options)
    assert generation == engine.complete(CHAT, **options)  # type: ignore[arg-type]
    assert "".join(pieces) == generation.text and generation.completion_tokens == 12


def test_closing_a_stream_stops_decoding_and_frees_the_model(tiny_host) -> None:
    engine = ChatEngine(tiny_host, "student")
    stream = engine.stream(CHAT, adapter=None, max_tokens=4000, temperature=1.0, seed=1)
    items: list[str | Generation] = []
    reader = threading.Thread(target=lambda: items.extend(stream), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not items and time.monotonic() < deadline:
        time.sleep(0.01)
    assert items, "no piece came"
    stream.close()  # from another thread than the reader's, which waits in next()
    reader.join(timeout=60)
    assert not reader.is_alive()
    *pieces, generation = items
    assert isinstance(generation, Generation) and generation.completion_tokens < 4000
    assert "".join(pieces) == generation.text  # type: ignore[arg-type]
    assert engine.complete(CHAT, adapter=None, max_tokens=2).completion_tokens == 2


def test_halt_ends_decoding_at_the_next_step(tiny_host) -> None:
    halt = threading.Event()
    halt.set()
    [generation] = generate(tiny_host, [CHAT], SampleConfig(max_new_tokens=50), halt=halt)
    assert generation.completion_tokens == 1
    with pytest.raises(ValueError, match="one sequence"):
        generate(tiny_host, [CHAT, CHAT], SampleConfig(max_new_tokens=2), halt=halt)


@pytest.mark.parametrize(
    ("text", "stop", "sendable"),
    [
        ("Marisol Qu", ["Quenby"], "Marisol"),  # might be the start of a stop string
        ("Marisol Q", ["Quenby", "Qx"], "Marisol"),
        ("Marisol Quen", ["Quenby"], "Marisol"),
        ("Marisol", ["Quenby"], "Marisol"),
        ("Marisol ", [], "Marisol"),  # trailing whitespace waits: the reply is stripped
        ("caf\ufffd", [], "caf"),  # half a UTF-8 character so far
        ("", ["x"], ""),
    ],
)
def test_what_of_a_growing_reply_can_be_sent(text: str, stop: list[str], sendable: str) -> None:
    assert text[: _safe_length(text, stop)] == sendable
