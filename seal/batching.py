"""Continuous batching of chat replies with mixed adapters (as S-LoRA and Punica serve LoRA).

One decoding thread owns the model. Requests join the running batch at a token boundary:
each is prefilled alone (its prompt through the model with its own adapter), its key/value
cache is left-padded to the batch's and stacked onto it, and from then on every decoding step
is one forward pass of the whole batch, each row with its own LoRA delta: per LoRA layer, the
rows' A and B matrices are gathered into two batched products
(``seal.adapter_stack.AdapterStack``), the bare base model's rows getting none. A batch whose
rows all have the same adapter (a single chat, above all) runs with that adapter folded into
the weights instead. A request leaves at the step its reply ends (its end of turn, a stop
string, ``max_tokens``, or ``cancel``) and its rows of the cache go with it.

A reply is sampled from its own seeded generator, so what it writes does not depend on the
requests it shares steps with, up to floating-point summation order in batched kernels (how
often that flips a greedy token is measured by ``seal bench serve``).

A greedy reply decoded alone may be sped up by prompt lookup (``speculate`` tokens): the
tokens that followed the last few tokens where they occur earlier in the prompt or the reply
are proposed as a draft, one forward pass checks them all, and the reply keeps the draft's
tokens the model would have chosen itself, then the model's own next token. A reply that
copies from its prompt (hybrid memory puts the documents there) gets several tokens a pass.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from seal.adapter_stack import NO_ADAPTER, AdapterStack
from seal.generation import (
    MIN_SAMPLING_TEMPERATURE,
    Generation,
    Messages,
    ReplyText,
    _cut_at_stop,
    _text,
    narrow_head,
    prompt_ids,
)
from seal.lora import AdapterHost, AdapterState


@dataclass
class _Request:
    prompt: list[int]
    key: Hashable | None
    """What identifies the adapter (its checksum); None for the base model."""
    state: AdapterState | None
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    out: queue.Queue[list[int] | Generation | BaseException | None] = field(
        default_factory=queue.Queue
    )
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    ended: bool = False


class BatchEngine:
    """Serves replies for many requests at once over an :class:`AdapterHost` whose ``slot``
    has the adapters' shape. ``submit`` returns a :class:`BatchedReply` at once; the replies
    are decoded by one background thread, at most ``max_batch`` at a time (others wait their
    turn, first come first served). ``on_batch(size)`` hears of every decoding step's batch."""

    def __init__(
        self,
        host: AdapterHost,
        slot: str,
        *,
        max_batch: int = 16,
        on_batch: Callable[[int], None] | None = None,
        speculate: int = 0,
    ):
        self.host = host
        self.slot = slot
        self.max_batch = max(1, max_batch)
        self.speculate = max(0, speculate)
        self.on_batch = on_batch
        self._waiting: queue.Queue[_Request] = queue.Queue()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="batch-engine", daemon=True)
        self._started = False
        self._start_lock = threading.Lock()
        # the running batch: its requests (one row each), their key/value cache and mask
        self._rows: list[_Request] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None
        self._next: torch.Tensor | None = None  # each row's token to feed next
        self._stack: AdapterStack | None = None
        self._stack_keys: list[Hashable | None] = []
        self._held: ExitStack | None = None
        self._held_for: tuple[Hashable | None, ...] | None = None

    # -- the callers' side ---------------------------------------------------------------
    def submit(
        self,
        messages: Messages,
        *,
        adapter: tuple[Hashable, AdapterState] | None,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> BatchedReply:
        """Queue a reply to ``messages``; ``adapter`` is (its key, its weights), or None for
        the base model."""
        tok = self.host.tokenizer
        prompt = prompt_ids(tok, messages)
        key, state = adapter if adapter is not None else (None, None)
        request = _Request(
            prompt=prompt,
            key=key,
            state=state,
            max_new_tokens=max(1, max_tokens),
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=tuple(s for s in stop if s),
        )
        self._ensure_started()
        self._waiting.put(request)
        self._wake.set()
        return BatchedReply(request, tok)

    def _ensure_started(self) -> None:
        with self._start_lock:
            if not self._started:
                self._thread.start()
                self._started = True

    # -- the decoding thread -------------------------------------------------------------
    def _loop(self) -> None:
        model = self.host.model
        while True:
            self._wake.wait()
            self._wake.clear()
            # a busy period: the model is the engine's (its PEFT slots off, the head narrowed)
            # until no request is left
            with self.host.use(None), narrow_head(model), torch.inference_mode():
                self._admit()
                while self._rows:
                    try:
                        self._step()
                    except BaseException as exc:  # every reply in the batch fails with it
                        for request in self._rows:
                            self._finish(request, error=exc)
                        self._reset()
                    self._admit()
                self._release()

    def _admit(self) -> None:
        while len(self._rows) < self.max_batch:
            try:
                request = self._waiting.get_nowait()
            except queue.Empty:
                return
            if request.cancelled.is_set():
                self._finish(request)
                continue
            try:
                self._prefill(request)
            except BaseException as exc:  # this reply fails; the batch goes on
                self._finish(request, error=exc)

    def _adapters(self, requests: Sequence[_Request]) -> AdapterStack | None:
        """The stacked adapters of ``requests`` (one per distinct key), rebuilt only when the
        set of keys changes."""
        keys = list(dict.fromkeys(r.key for r in requests if r.key is not None))
        if not keys:
            return None
        if self._stack is None or self._stack_keys != keys:
            states = {r.key: r.state for r in requests if r.key is not None}
            self._stack = AdapterStack(self.host, self.slot, [states[k] for k in keys])
            self._stack_keys = keys
        return self._stack

    def _owner(self, request: _Request) -> int:
        return NO_ADAPTER if request.key is None else self._stack_keys.index(request.key)

    def _hold(self, requests: Sequence[_Request]) -> None:
        """Keep the batch's adapters applied for as long as its rows stay the same, so that a
        step costs no re-stacking: folded into the weights when every row has the same one,
        else their hooks registered and their weights gathered per row."""
        keys = tuple(dict.fromkeys(r.key for r in requests if r.key is not None))
        owners = tuple(r.key for r in requests)
        if self._held_for == owners:
            return
        self._release()
        self._held_for = owners
        if not keys:
            return
        if len(keys) == 1 and None not in owners:
            # one adapter for every row (a single chat, above all): folded into the weights,
            # a step costs what the bare model's does instead of a product beside every layer
            held = ExitStack()
            held.enter_context(self.host.folded(self.slot, requests[0].state))
            self._held = held
            return
        stack = self._adapters(requests)
        assert stack is not None
        spans = [(self._owner(r), row, row + 1) for row, r in enumerate(requests)]
        held = ExitStack()
        held.enter_context(stack.applied("rows", spans))
        self._held = held

    def _release(self) -> None:
        if self._held is not None:
            self._held.close()
        self._held, self._held_for = None, None

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """The last position's logits of each row, with whatever adapters are applied."""
        return self.host.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1, :]

    def _prefill(self, request: _Request) -> None:
        device = self.host.device
        ids = torch.tensor([request.prompt], device=device)
        mask = torch.ones_like(ids)
        positions = torch.arange(ids.shape[1], device=device)[None, :]
        cache = DynamicCache(config=self.host.model.config)
        self._release()  # the batch's adapters are not this prompt's
        if request.key is None:
            logits = self._forward(ids, mask, positions, cache)
        else:
            own = AdapterStack(self.host, self.slot, [request.state])
            with own.applied("rows", [(0, 0, 1)]):
                logits = self._forward(ids, mask, positions, cache)
        if request.seed is not None:
            request.generator = torch.Generator(device=device).manual_seed(request.seed)
        token = self._sample([request], logits)[0]
        self._join(request, cache, mask)
        self._emit(request, token)

    def _join(self, request: _Request, cache: DynamicCache, mask: torch.Tensor) -> None:
        """Stack the new row onto the batch, left-padding whichever is shorter."""
        if self._cache is None or self._mask is None:
            self._rows, self._cache, self._mask = [request], cache, mask
            return
        old, new = self._mask.shape[1], mask.shape[1]
        width = max(old, new)
        layers = []
        mine: Any
        theirs: Any
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            values = torch.cat([_left_pad(mine.values, width), _left_pad(theirs.values, width)])
            layers.append((keys, values))
        self._cache = DynamicCache(ddp_cache_data=layers, config=self.host.model.config)
        self._mask = torch.cat([_left_pad(self._mask, width, dim=1), _left_pad(mask, width, dim=1)])
        self._rows.append(request)

    def _step(self) -> None:
        assert self._cache is not None and self._mask is not None
        rows = self._rows
        if self.speculate and len(rows) == 1 and rows[0].temperature < MIN_SAMPLING_TEMPERATURE:
            request = rows[0]
            room = request.max_new_tokens - len(request.generated) - 1
            draft = prompt_lookup([*request.prompt, *request.generated], min(self.speculate, room))
            if draft:
                self._step_with_draft(request, draft)
                return
        device = self.host.device
        ids = torch.tensor([[r.generated[-1]] for r in rows], device=device)
        positions = self._mask.sum(dim=1, keepdim=True) - 0  # the count of real tokens so far
        mask = torch.cat(
            [self._mask, torch.ones((len(rows), 1), dtype=self._mask.dtype, device=device)], dim=1
        )
        if self.on_batch is not None:
            self.on_batch(len(rows))
        self._hold(rows)
        logits = self._forward(ids, mask, positions, self._cache)
        self._mask = mask
        tokens = self._sample(rows, logits)
        for request, token in zip(rows, tokens, strict=True):
            self._emit(request, token)
        self._drop_ended()

    def _step_with_draft(self, request: _Request, draft: list[int]) -> None:
        """One pass over the reply's last token and ``draft``: the draft's tokens the model
        would choose greedily are kept, then its own next token; the cache keeps only what
        was kept."""
        assert self._cache is not None and self._mask is not None
        device = self.host.device
        ids = torch.tensor([[request.generated[-1], *draft]], device=device)
        count = ids.shape[1]
        start = int(self._mask.sum())  # the real tokens so far: the first new one's position
        positions = torch.arange(start, start + count, device=device)[None, :]
        width = self._mask.shape[1]
        ones = torch.ones((1, count), dtype=self._mask.dtype, device=device)
        mask = torch.cat([self._mask, ones], dim=1)
        if self.on_batch is not None:
            self.on_batch(1)
        self._hold([request])
        logits = self.host.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
            logits_to_keep=count,
        ).logits[0]
        chosen = [int(t) for t in logits.float().argmax(dim=-1)]
        kept = 0
        while kept < len(draft) and draft[kept] == chosen[kept]:
            kept += 1
        keep = width + 1 + kept  # the reply's last token and the draft's kept ones
        layer: Any
        for layer in self._cache.layers:
            layer.keys = layer.keys[:, :, :keep]
            layer.values = layer.values[:, :, :keep]
        self._mask = mask[:, :keep]
        for token in chosen[: kept + 1]:
            self._emit(request, token)
            if request.ended:
                break
        self._drop_ended()

    def _sample(self, requests: Sequence[_Request], logits: torch.Tensor) -> list[int]:
        """Each row's next token: greedy below MIN_SAMPLING_TEMPERATURE, else sampled from its
        request's own generator (nucleus ``top_p``)."""
        tokens: list[int] = []
        for request, row in zip(requests, logits.float(), strict=True):
            if request.temperature < MIN_SAMPLING_TEMPERATURE:
                tokens.append(int(row.argmax()))
                continue
            probs = torch.softmax(row / request.temperature, dim=-1)
            if request.top_p < 1.0:
                ordered, order = probs.sort(descending=True)
                keep = ordered.cumsum(-1) - ordered < request.top_p  # at least the first
                probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
            choice = torch.multinomial(probs, 1, generator=request.generator)
            tokens.append(int(choice))
        return tokens

    def _emit(self, request: _Request, token: int) -> None:
        """Add a token to a reply and end it where it ends."""
        tok = self.host.tokenizer
        request.generated.append(token)
        if token == tok.eos_token_id:
            request.ended = True
            return
        request.out.put([token])
        if request.cancelled.is_set() or len(request.generated) >= request.max_new_tokens:
            request.ended = True
        elif request.stop:
            text = _text(tok.decode(request.generated, skip_special_tokens=True))
            request.ended = any(s in text for s in request.stop)

    def _drop_ended(self) -> None:
        keep = [i for i, r in enumerate(self._rows) if not r.ended]
        if len(keep) == len(self._rows):
            return
        for request in self._rows:
            if request.ended:
                self._finish(request)
        if not keep:
            self._reset()
            return
        assert self._cache is not None and self._mask is not None
        index = torch.tensor(keep, device=self._mask.device)
        self._cache.batch_select_indices(index)
        mask = self._mask.index_select(0, index)
        # columns no remaining row uses (all padding) go too
        first = int(mask.any(dim=0).int().argmax())
        if first:
            layer: Any
            for layer in self._cache.layers:
                layer.keys = layer.keys[:, :, first:]
                layer.values = layer.values[:, :, first:]
            mask = mask[:, first:]
        self._mask = mask
        self._rows = [self._rows[i] for i in keep]

    def _reset(self) -> None:
        self._release()
        self._rows, self._cache, self._mask = [], None, None

    def _finish(self, request: _Request, error: BaseException | None = None) -> None:
        request.ended = True
        if error is not None:
            request.out.put(error)
            return
        request.out.put(_generation(self.host.tokenizer, request))


def prompt_lookup(
    tokens: Sequence[int], count: int, *, longest: int = 3, shortest: int = 2
) -> list[int]:
    """A draft of at most ``count`` tokens: what followed the latest earlier occurrence of the
    last ``longest`` tokens of ``tokens`` (then of fewer, down to ``shortest``); none where
    they occur nowhere earlier (prompt lookup decoding, Saxena 2023)."""
    if count <= 0:
        return []
    end = len(tokens)
    for size in range(min(longest, end - 1), shortest - 1, -1):
        tail = list(tokens[end - size :])
        for start in range(end - size - 1, -1, -1):
            if tokens[start] == tail[0] and list(tokens[start : start + size]) == tail:
                return list(tokens[start + size : min(start + size + count, end)])
    return []


def _left_pad(tensor: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _generation(tokenizer: Any, request: _Request) -> Generation:
    """The reply as ``seal.generation.generate`` reports one."""
    new = request.generated
    eos = tokenizer.eos_token_id
    n = new.index(eos) if eos in new else len(new)
    text, stopped = _cut_at_stop(
        _text(tokenizer.decode(new[:n], skip_special_tokens=True)), request.stop
    )
    ended = eos in new
    reason = "stop" if (ended or stopped) else "length"
    return Generation(text.strip(), len(request.prompt), n + (1 if ended else 0), reason)


class BatchedReply(Iterator["str | Generation"]):
    """A reply being decoded by a :class:`BatchEngine`: iterating gives text pieces as its
    tokens come, then its ``Generation`` (as ``seal.generation.ReplyStream`` does);
    ``result()`` waits for the whole of it; ``close()`` cancels it at the next step."""

    def __init__(self, request: _Request, tokenizer: Any):
        self._request = request
        self._text = ReplyText(tokenizer, request.stop)
        self._ended = False

    def close(self) -> None:
        self._request.cancelled.set()

    def result(self) -> Generation:
        last: str | Generation | None = None
        for item in self:
            last = item
        assert isinstance(last, Generation)
        return last

    def __next__(self) -> str | Generation:
        while not self._ended:
            item = self._request.out.get()
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            if isinstance(item, Generation):
                self._ended = True
                self._text.end(item)
                break
            if item is None:
                continue
            new = self._text.add(item)
            if new is not None:
                return new
        return self._text.next_left()
