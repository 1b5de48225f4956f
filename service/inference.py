"""The chat backend: the API's chat route generates through it.

The real backend loads the student model once per API process (lazily, on the first chat) and
answers with the tenant's adapter; tests may override :func:`get_chat_backend`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request

from service.artifacts import artifacts
from service.metrics import observe_adapter, observe_batch
from service.settings import Settings

if TYPE_CHECKING:
    from seal.batching import BatchedReply, BatchEngine
    from seal.generation import Generation, ReplyStream
    from seal.serving import AdapterCache, ChatEngine


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
    def context_tokens(self) -> int:
        """The most tokens the model attends to, prompt and reply together."""
        ...

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """How many tokens the model reads for ``messages``, its chat template included (None:
        the backend cannot tell); counted in the caller's thread."""
        ...

    def complete(self, request: ChatRequest) -> ChatResult: ...

    def stream(self, request: ChatRequest) -> ChatStream:
        """``complete``, streamed."""
        ...


class ModelChatBackend:
    """The student model with the tenant's adapter, loaded on first use. ``SEAL_CHAT_ENGINE``
    picks how concurrent chats are decoded: ``serial`` (``seal.serving.ChatEngine``) or
    ``batched`` (``seal.batching.BatchEngine``); either way adapters come from one cache by
    checksum, loaded in the request's thread, never the decoding one."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._serial: ChatEngine | None = None
        self._batched: BatchEngine | None = None
        self._adapters: AdapterCache | None = None
        self._context = 0
        self._prompt_ids: Callable[[list[dict[str, str]]], list[int]] | None = None
        self._lock = threading.Lock()

    def _load(self) -> AdapterCache:
        """Load the model and make the engine once; the adapter cache."""
        with self._lock:
            if self._adapters is None:
                # Imported here: the API starts (and serves everything else) without torch loaded.
                from seal.batching import BatchEngine
                from seal.generation import prompt_ids
                from seal.lora import STUDENT, AdapterHost, LoraSpec
                from seal.modeling import context_length, load_model
                from seal.serving import AdapterCache, ChatEngine

                s = self.settings
                loaded = load_model(
                    s.student_model, s.resolved_model_cache_dir, device=s.device, dtype=s.dtype
                )
                spec = LoraSpec(s.lora_rank, s.lora_alpha, s.lora_dropout, tuple(s.lora_targets))
                host = AdapterHost(loaded, {STUDENT: spec}, seed=s.seed)
                self._context = context_length(loaded.model)
                self._prompt_ids = functools.partial(prompt_ids, host.tokenizer)
                cache = AdapterCache(
                    s.adapter_cache_size, on_lookup=observe_adapter, locate=artifacts(s).local
                )
                if s.chat_engine == "batched":
                    self._batched = BatchEngine(
                        host,
                        STUDENT,
                        max_batch=s.chat_max_batch,
                        on_batch=observe_batch,
                        speculate=s.chat_speculative_tokens,
                    )
                else:
                    self._serial = ChatEngine(host, STUDENT, on_batch=observe_batch, adapters=cache)
                self._adapters = cache
            return self._adapters

    def context_tokens(self) -> int:
        self._load()
        return self._context

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        self._load()
        assert self._prompt_ids is not None
        return len(self._prompt_ids(messages))

    def _options(self, request: ChatRequest) -> dict[str, Any]:
        return dict(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=request.stop or (),
        )

    def _submit(self, request: ChatRequest, adapters: AdapterCache) -> BatchedReply:
        assert self._batched is not None
        ref, weights = request.adapter, None
        if ref is not None:  # loaded here, in the request's thread: the batch goes on
            weights = (ref.checksum or ref.uri, adapters.get(ref.uri, ref.checksum))
        return self._batched.submit(request.messages, adapter=weights, **self._options(request))

    def _ref(self, request: ChatRequest) -> tuple[str, str] | None:
        ref = request.adapter
        return (ref.uri, ref.checksum) if ref else None

    def complete(self, request: ChatRequest) -> ChatResult:
        adapters = self._load()
        if self._serial is not None:
            options = self._options(request)
            return _result(
                self._serial.complete(request.messages, adapter=self._ref(request), **options)
            )
        return _result(self._submit(request, adapters).result())

    def stream(self, request: ChatRequest) -> ChatStream:
        adapters = self._load()
        if self._serial is not None:
            options = self._options(request)
            return _ResultStream(
                self._serial.stream(request.messages, adapter=self._ref(request), **options)
            )
        return _ResultStream(self._submit(request, adapters))


def _result(generation: Generation) -> ChatResult:
    return ChatResult(
        text=generation.text,
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
        finish_reason=generation.finish_reason,
    )


class _ResultStream:
    """A reply stream whose last item is a ``ChatResult``."""

    def __init__(self, reply: ReplyStream | BatchedReply):
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
