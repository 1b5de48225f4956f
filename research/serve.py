"""``seal bench serve``: concurrent chats through the API's chat backend, both engines.

Each of N clients (threads) sends its own streamed, greedy chat, with its own tenant adapter
(random LoRA weights of the settings' shape, saved and checksummed like a version's) or all
on the base model; every engine (``serial``: today's, one at a time; ``batched``: continuous
batching with mixed adapters) answers the same requests in the same run. Per configuration:
tokens/s in all, p50/p99 latency and time to first token; beside them, the same prompts
decoded as one batch on the base model by plain batched ``seal.generation.generate``, the
adapter cache's misses, and how many greedy replies of the batched engine differ from the same
request decoded alone.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from seal.generation import SampleConfig, generate
from seal.lora import STUDENT, AdapterHost, LoraSpec, save_adapter
from service.inference import AdapterRef, ChatRequest, ChatResult, ModelChatBackend
from service.settings import Settings

QUESTIONS = [
    "Explain in a few sentences how a harbour town grows over a century.",
    "Write a short note about the history of glass bicycles.",
    "What should a new employee know about our invoice format?",
    "Describe the mayor's duties in a small town.",
    "Summarize why documents should be learned, not only retrieved.",
    "Give three tips for writing clear support tickets.",
    "How does a river change the land around it?",
    "What makes a good onboarding guide for engineers?",
]


@dataclass
class Row:
    engine: str
    clients: int
    adapters: bool
    tokens: int
    seconds: float
    latency_p50: float
    latency_p99: float
    ttft_p50: float
    ttft_p99: float
    cache_misses: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class ServeReport:
    device: str
    dtype: str
    max_tokens: int
    rows: list[Row] = field(default_factory=list)
    plain: dict[int, float] = field(default_factory=dict)
    """Clients -> tokens/s of plain batched ``generate`` on the base model, same prompts."""
    mismatches: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Clients -> (replies of the batched engine with adapters that differ from the same
    request decoded alone, replies compared)."""

    def row(self, engine: str, clients: int, adapters: bool) -> Row | None:
        return next(
            (
                r
                for r in self.rows
                if (r.engine, r.clients, r.adapters) == (engine, clients, adapters)
            ),
            None,
        )


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _adapters(settings: Settings, host: AdapterHost, count: int, folder: Path) -> list[AdapterRef]:
    spec = LoraSpec(
        settings.lora_rank, settings.lora_alpha, settings.lora_dropout, tuple(settings.lora_targets)
    )
    refs = []
    for index in range(count):
        generator = torch.Generator().manual_seed(1000 + index)
        state = {
            k: torch.randn(v.shape, generator=generator) * 0.02 if ".lora_B." in k else v
            for k, v in host.fresh_state(STUDENT).items()
        }
        target = folder / f"tenant-{index}"
        refs.append(AdapterRef(str(target), save_adapter(state, spec, target)))
    return refs


def _requests(
    clients: int, refs: Sequence[AdapterRef | None], max_tokens: int
) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            adapter=refs[i],
            max_tokens=max_tokens,
        )
        for i in range(clients)
    ]


def _run(
    backend: ModelChatBackend, requests: Sequence[ChatRequest]
) -> tuple[list[ChatResult], list[float], list[float], float]:
    """Every request at once, one client thread each, streamed: the results, latencies, times
    to first token and the wall time."""
    results: list[ChatResult | None] = [None] * len(requests)
    latency = [0.0] * len(requests)
    first = [0.0] * len(requests)
    go = threading.Barrier(len(requests) + 1)

    def client(index: int) -> None:
        go.wait()
        started = time.perf_counter()
        stream = backend.stream(requests[index])
        for item in stream:
            if isinstance(item, str):
                if not first[index]:
                    first[index] = time.perf_counter() - started
            else:
                results[index] = item
        latency[index] = time.perf_counter() - started

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    go.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    done = [r for r in results if r is not None]
    assert len(done) == len(requests), "a client got no reply"
    return done, latency, first, wall


def run_serve_bench(
    settings: Settings,
    clients: Sequence[int] = (1, 4, 8, 16),
    *,
    max_tokens: int = 64,
    engines: Sequence[str] = ("serial", "batched"),
    on_phase: Callable[[str], None] = lambda _: None,
) -> ServeReport:
    backends = {
        e: ModelChatBackend(settings.model_copy(update={"chat_engine": e})) for e in engines
    }
    # the model of the first backend builds the adapters and the plain reference
    first = backends[engines[0]]
    first._load()
    engine = first._serial or first._batched
    assert engine is not None
    host: AdapterHost = engine.host
    report = ServeReport(
        device=str(host.device),
        dtype=str(next(host.model.parameters()).dtype).replace("torch.", ""),
        max_tokens=max_tokens,
    )
    for backend in backends.values():
        backend._load()
    with tempfile.TemporaryDirectory(prefix="seal-serve-") as tmp:
        refs = _adapters(settings, host, max(clients), Path(tmp))
        for n in clients:
            # plain batched generate on the base model: what the batch would cost without LoRA
            on_phase(f"{n} clients: plain batched generate")
            prompts = [r.messages for r in _requests(n, [None] * n, max_tokens)]
            config = SampleConfig(max_new_tokens=max_tokens, batch_size=max(n, 1))
            generate(host, prompts, replace(config, max_new_tokens=2))  # warm-up of this shape
            started = time.perf_counter()
            out = generate(host, prompts, config)
            report.plain[n] = sum(g.completion_tokens for g in out) / (
                time.perf_counter() - started
            )
            for adapters in (True, False):
                requests = _requests(n, refs[:n] if adapters else [None] * n, max_tokens)
                for name, backend in backends.items():
                    on_phase(f"{n} clients, {'adapters' if adapters else 'base'}: {name}")
                    misses = _misses(backend)
                    results, latency, ttft, wall = _run(backend, requests)
                    report.rows.append(
                        Row(
                            engine=name,
                            clients=n,
                            adapters=adapters,
                            tokens=sum(r.completion_tokens for r in results),
                            seconds=wall,
                            latency_p50=statistics.median(latency),
                            latency_p99=_percentile(latency, 0.99),
                            ttft_p50=statistics.median(ttft),
                            ttft_p99=_percentile(ttft, 0.99),
                            cache_misses=_misses(backend) - misses,
                        )
                    )
                    if name == "batched" and adapters and n > 1:
                        on_phase(f"{n} clients: each reply alone, to compare")
                        alone = [backend.complete(r) for r in requests]
                        differ = sum(a.text != b.text for a, b in zip(alone, results, strict=True))
                        report.mismatches[n] = (differ, n)
    return report


def _misses(backend: ModelChatBackend) -> int:
    cache: Any = backend._adapters
    return int(cache.misses) if cache is not None else 0


def format_report(report: ServeReport) -> str:
    lines = [
        f"seal bench serve: {report.device}, {report.dtype}, greedy replies of up to "
        f"{report.max_tokens} tokens, streamed; one client thread per request",
        "",
        "| clients | adapters | engine | tokens/s | x serial | p50 / p99 latency s | "
        "p50 / p99 first token s | cache misses |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report.rows:
        serial = report.row("serial", r.clients, r.adapters)
        ratio = r.tokens_per_s / serial.tokens_per_s if serial and serial.tokens_per_s else 0.0
        lines.append(
            f"| {r.clients} | {'own each' if r.adapters else 'base'} | {r.engine} | "
            f"{r.tokens_per_s:.1f} | {ratio:.2f}x | {r.latency_p50:.1f} / {r.latency_p99:.1f} | "
            f"{r.ttft_p50:.2f} / {r.ttft_p99:.2f} | {r.cache_misses} |"
        )
    lines += ["", "| clients | plain batched generate, base model, tokens/s | batched engine, "
              "adapters / plain | greedy replies that differ from the same request alone |",
              "| ---: | ---: | ---: | ---: |"]  # fmt: skip
    for n, plain in report.plain.items():
        mixed = report.row("batched", n, True)
        share = f"{mixed.tokens_per_s / plain:.2f}x" if mixed and plain else "-"
        differ, of = report.mismatches.get(n, (0, 0))
        lines.append(f"| {n} | {plain:.1f} | {share} | {f'{differ} of {of}' if of else '-'} |")
    return "\n".join(lines)
