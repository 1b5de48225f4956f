"""Answering chats with a tenant's adapter: one base model, recently used adapters cached."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from seal.generation import Generation, Messages, ReplyStream, SampleConfig, generate
from seal.lora import AdapterHost, AdapterState, load_adapter


class AdapterCache:
    """Adapter weights by checksum (a version's weights never change, so a rollback serves the
    earlier version's exact weights at once), the ``size`` most recently used kept in memory.
    Thread-safe; ``on_lookup(hit, seconds)`` hears of every lookup (the seconds its weights
    took to load when it missed); ``locate(uri, checksum)`` names the local folder of a URI
    (the service's artifact store; default: the URI is the folder)."""

    def __init__(
        self,
        size: int = 8,
        *,
        on_lookup: Callable[[bool, float], None] | None = None,
        locate: Callable[[str, str], Path] | None = None,
    ) -> None:
        self.size = size
        self.on_lookup = on_lookup
        self.locate = locate or (lambda uri, _checksum: Path(uri))
        self._cache: OrderedDict[str, AdapterState] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, uri: str, checksum: str) -> AdapterState:
        key = checksum or uri
        with self._lock:
            state = self._cache.get(key)
        hit, started = state is not None, time.perf_counter()
        if state is None:  # loaded outside the lock: a slow load holds up no other lookup
            folder = self.locate(uri, checksum)
            state = load_adapter(folder, expected_checksum=checksum or None)
        with self._lock:
            self.hits, self.misses = self.hits + hit, self.misses + (not hit)
            self._cache[key] = state
            self._cache.move_to_end(key)
            while len(self._cache) > max(self.size, 0):
                self._cache.popitem(last=False)
        if self.on_lookup is not None:
            self.on_lookup(hit, time.perf_counter() - started)
        return state

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._cache)


class ChatEngine:
    """Thread-safe chat generation over an :class:`AdapterHost` with one student slot.

    Adapters are cached by checksum (a version's weights never change), so a rollback serves
    the earlier version's exact weights at once; generation is serialized by a lock, as the
    model's adapter slot is shared.
    """

    def __init__(
        self,
        host: AdapterHost,
        slot: str,
        *,
        cache_size: int = 8,
        on_adapter: Callable[[bool, float], None] | None = None,
        on_batch: Callable[[int], None] | None = None,
        adapters: AdapterCache | None = None,
    ):
        """``on_adapter(hit, seconds)`` hears of every adapter lookup (whether it was cached;
        the seconds its weights took to load when not), ``on_batch(size)`` of every
        generation's batch: what a service's metrics count. ``adapters``: a cache to share
        (else one of ``cache_size``)."""
        self.host = host
        self.slot = slot
        self.adapters = adapters or AdapterCache(cache_size, on_lookup=on_adapter)
        self.on_batch = on_batch
        self._lock = threading.Lock()

    def _adapter(self, uri: str, checksum: str) -> AdapterState:
        return self.adapters.get(uri, checksum)

    def _batch(self, size: int) -> None:
        if self.on_batch is not None:
            self.on_batch(size)

    def _slot(self, adapter: tuple[str, str] | None) -> tuple[str | None, AdapterState | None]:
        """The slot and weights that serve ``adapter`` (none for the base model); hold the
        lock."""
        state = self._adapter(*adapter) if adapter else None
        return (self.slot if state is not None else None), state

    def complete(
        self,
        messages: Messages,
        *,
        adapter: tuple[str, str] | None,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> Generation:
        """One reply; ``adapter`` is (folder, checksum), or None for the base model."""
        config = SampleConfig(
            max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed
        )
        with self._lock:
            slot, state = self._slot(adapter)
            self._batch(1)  # one request at a time: generation holds the lock
            return generate(self.host, [messages], config, slot=slot, state=state, stop=stop)[0]

    def stream(
        self,
        messages: Messages,
        *,
        adapter: tuple[str, str] | None,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> ReplyStream:
        """``complete``, streamed: text pieces as they are decoded, then the ``Generation``
        (``ReplyStream``). The adapter is loaded before the first piece, so a bad adapter
        fails here rather than halfway through a reply."""
        config = SampleConfig(
            max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed
        )
        with self._lock:
            slot, state = self._slot(adapter)
        self._batch(1)
        return ReplyStream(
            self.host, messages, config, slot=slot, state=state, stop=stop, lock=self._lock
        )
