"""The chat backend: the API's chat route generates through it.

The real backend loads the student model once per API process (lazily, on the first chat) and
answers with the tenant's adapter; tests may override :func:`get_chat_backend`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request

from service.settings import Settings

if TYPE_CHECKING:
    from seal.generation import Generation, ReplyStream
    from seal.serving import ChatEngine


@dataclass(frozen=True)
class AdapterRef:
    uri: str  # folder with adapter_config.json + adapter_model.safetensors
    checksum: str


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


class ChatStream(Protocol):
    """Text pieces of a reply as they are decoded, then its ``ChatResult`` (whose text the
    pieces add up to). ``close()`` ends the decoding early; it is safe from any thread, even
    while another one waits in ``next``."""

    def __iter__(self) -> Iterator[str | ChatResult]: ...

    def __next__(self) -> str | ChatResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ChatRequest:
    """What a chat asks of the backend: the conversation, the adapter (None: the base model)
    and how to decode (``temperature`` 0: greedy)."""

    messages: list[dict[str, str]]
    adapter: AdapterRef | None
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None


class ChatBackend(Protocol):
    def complete(self, request: ChatRequest) -> ChatResult: ...

    def stream(self, request: ChatRequest) -> ChatStream:
        """``complete``, streamed."""
        ...


class ModelChatBackend:
    """The student model with the tenant's adapter, loaded on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._engine: ChatEngine | None = None
        self._lock = threading.Lock()

    def _get_engine(self) -> ChatEngine:
        with self._lock:
            if self._engine is None:
                # Imported here: the API starts (and serves everything else) without torch loaded.
                from seal.lora import STUDENT, AdapterHost, LoraSpec
                from seal.modeling import load_model
                from seal.serving import ChatEngine

                s = self.settings
                loaded = load_model(
                    s.student_model, s.resolved_model_cache_dir, device=s.device, dtype=s.dtype
                )
                spec = LoraSpec(s.lora_rank, s.lora_alpha, s.lora_dropout, tuple(s.lora_targets))
                host = AdapterHost(loaded, {STUDENT: spec}, seed=s.seed)
                from service.metrics import observe_adapter, observe_batch

                self._engine = ChatEngine(
                    host,
                    STUDENT,
                    cache_size=s.adapter_cache_size,
                    on_adapter=observe_adapter,
                    on_batch=observe_batch,
                )
            return self._engine

    def _engine_call(self, request: ChatRequest) -> tuple[ChatEngine, dict[str, Any]]:
        """The engine and the arguments of its ``complete`` / ``stream``."""
        adapter = request.adapter
        return self._get_engine(), dict(
            messages=request.messages,
            adapter=(adapter.uri, adapter.checksum) if adapter else None,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=request.stop or (),
        )

    def complete(self, request: ChatRequest) -> ChatResult:
        engine, arguments = self._engine_call(request)
        return _result(engine.complete(**arguments))

    def stream(self, request: ChatRequest) -> ChatStream:
        engine, arguments = self._engine_call(request)
        return _ResultStream(engine.stream(**arguments))


def _result(generation: Generation) -> ChatResult:
    return ChatResult(
        text=generation.text,
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
        finish_reason=generation.finish_reason,
    )


class _ResultStream:
    """A ``ReplyStream`` whose last item is a ``ChatResult``."""

    def __init__(self, reply: ReplyStream):
        self._reply = reply

    def __iter__(self) -> _ResultStream:
        return self

    def __next__(self) -> str | ChatResult:
        item = next(self._reply)
        return item if isinstance(item, str) else _result(item)

    def close(self) -> None:
        self._reply.close()


_backend_lock = threading.Lock()


def get_chat_backend(request: Request) -> ChatBackend:
    """One backend per app, made on first use."""
    state = request.app.state
    with _backend_lock:
        backend = getattr(state, "chat_backend", None)
        if backend is None:
            backend = state.chat_backend = ModelChatBackend(state.settings)
    return backend
