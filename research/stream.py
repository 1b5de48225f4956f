"""``seal bench serve --hybrid-questions N``: one client asking hybrid-memory questions, the
batched engine with prompt lookup (``SEAL_CHAT_SPECULATIVE_TOKENS``) against without it.

Each question of the first passages of a SQuAD file is asked as a hybrid-memory chat asks it
(``service.domain.prompts.memory_messages``: the question's own passage and the next ones as
the ``SEAL_MEMORY_CHUNKS`` retrieved chunks, then ``Topic: <title>\\n<question>``), greedy,
on the base model and with a random tenant adapter; each setting answers the same chats in the
same run, one at a time. Printed: tokens/s and the mean tokens kept per pass for each
setting, its speed against no lookup, and how many replies differ from the ones decoded
without it (the target: none).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from research.data import load_passages
from research.serve import _adapters
from service.domain.prompts import memory_messages
from service.inference import AdapterRef, ChatRequest, ModelChatBackend
from service.settings import Settings


@dataclass
class StreamRow:
    speculate: int
    adapter: bool
    tokens: int
    seconds: float
    passes: int
    texts: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class StreamReport:
    questions: int
    max_tokens: int
    rows: list[StreamRow] = field(default_factory=list)


def hybrid_chats(data: Path, questions: int, max_tokens: int, chunks: int = 1) -> list[ChatRequest]:
    """The first ``questions`` questions of ``data``, each as hybrid memory would ask it with
    ``chunks`` passages shown, its own first."""
    passages = load_passages(data)
    chats: list[ChatRequest] = []
    for i, passage in enumerate(passages):
        shown = [passages[(i + k) % len(passages)] for k in range(max(1, chunks))]
        for qa in passage.questions:
            user = {"role": "user", "content": f"Topic: {passage.title}\n{qa.question}"}
            messages = memory_messages([(p.title, p.text) for p in shown], [user])
            chats.append(ChatRequest(messages=messages, adapter=None, max_tokens=max_tokens))
            if len(chats) == questions:
                return chats
    return chats


def run_stream_bench(
    settings: Settings,
    data: Path,
    *,
    questions: int = 8,
    max_tokens: int = 64,
    speculate: Sequence[int] = (0, 4, 8),
    on_phase: Callable[[str], None] = lambda _: None,
) -> StreamReport:
    chats = hybrid_chats(data, questions, max_tokens, settings.memory_chunks)
    report = StreamReport(questions=len(chats), max_tokens=max_tokens)
    backends = {
        n: ModelChatBackend(
            settings.model_copy(update={"chat_engine": "batched", "chat_speculative_tokens": n})
        )
        for n in speculate
    }
    for backend in backends.values():
        backend._load()
    host = next(iter(backends.values()))._batched.host  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory(prefix="seal-stream-") as tmp:
        ref: AdapterRef = _adapters(settings, host, 1, Path(tmp))[0]
        for adapter in (False, True):
            for n, backend in backends.items():
                on_phase(f"single stream, {'an adapter' if adapter else 'base'}, lookup {n}")
                engine = backend._batched
                assert engine is not None
                passes: list[int] = []
                engine.on_batch = passes.append
                row = StreamRow(speculate=n, adapter=adapter, tokens=0, seconds=0.0, passes=0)
                backend.complete(chats[0])  # warm-up
                passes.clear()
                for chat in chats:
                    request = ChatRequest(
                        messages=chat.messages,
                        adapter=ref if adapter else None,
                        max_tokens=max_tokens,
                    )
                    started = time.perf_counter()
                    result = backend.complete(request)
                    row.seconds += time.perf_counter() - started
                    row.tokens += result.completion_tokens
                    row.texts.append(result.text)
                row.passes = len(passes)
                report.rows.append(row)
    return report


def format_stream(report: StreamReport) -> str:
    lines = [
        f"single stream: {report.questions} hybrid-memory questions one at a time, greedy, up "
        f"to {report.max_tokens} tokens",
        "",
        "| model | lookup tokens | tokens/s | x no lookup | tokens per pass | replies that "
        "differ |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report.rows:
        base = next(r for r in report.rows if r.adapter == row.adapter and r.speculate == 0)
        ratio = row.tokens_per_s / base.tokens_per_s if base.tokens_per_s else 0.0
        differ = sum(a != b for a, b in zip(row.texts, base.texts, strict=True))
        # passes: the decoding steps after each prompt's prefill, which gives the first token
        per_pass = (row.tokens - len(row.texts)) / row.passes if row.passes else 0.0
        lines.append(
            f"| {'an adapter' if row.adapter else 'base'} | {row.speculate} | "
            f"{row.tokens_per_s:.1f} | {ratio:.2f}x | {per_pass:.2f} | {differ} of "
            f"{len(row.texts)} |"
        )
    return "\n".join(lines)
