"""Text generation through the chat template: sampling self-edits, greedy answers, chat."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from seal.lora import AdapterHost, AdapterState

Messages = list[dict[str, str]]

FOLD_MIN_NEW_TOKENS = 16
"""An adapter is folded into the weights (``AdapterHost.merged``) only for replies that may run
this long: folding costs about 0.3 s on a 2-core CPU, what its PEFT slot costs in roughly 15
decoding steps (docs/results/2026-11-23-folded-adapter-decoding.md)."""

NARROW_ROWS = 64
"""A decoding step of at most this many rows computes the vocabulary head as ``W x^T`` on a
CPU in float32 (``narrow_head``); measured faster up to 128 rows."""


@contextmanager
def narrow_head(model: nn.Module) -> Iterator[None]:
    """While decoding on a CPU in float32, the output head's product for a few rows is computed
    with the operands' roles swapped, ``(W x^T)^T``: on a 2-core AVX2 CPU, ``F.linear`` of 5 rows
    by the 49152 x 576 weight took 18.9 ms against 7.6 for one row, the swapped product 6.5 ms
    (docs/results/2026-11-24-narrow-vocabulary-head.md). With gradients, for more rows, and on other
    devices or dtypes the layer runs ``F.linear``."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if (
        not isinstance(head, nn.Linear)
        or head.weight.device.type != "cpu"
        or head.weight.dtype != torch.float32
        or "forward" in vars(head)
    ):
        yield
        return

    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows > NARROW_ROWS or torch.is_grad_enabled():
            return F.linear(x, head.weight, head.bias)
        out = torch.mm(head.weight, x.reshape(rows, x.shape[-1]).T).T
        if head.bias is not None:
            out = out + head.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])

    head.forward = forward  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        del head.forward


#: Temperatures below this decode greedily: sampling there picks the most likely token anyway,
#: and logits divided by a vanishing temperature overflow to ``inf``.
MIN_SAMPLING_TEMPERATURE = 1e-3


@dataclass(frozen=True)
class SampleConfig:
    """How text is decoded. ``temperature`` 0 (or below ``MIN_SAMPLING_TEMPERATURE``) decodes
    greedily."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    """Seeds sampling, so that a sampled completion is repeatable."""
    batch_size: int = 8
    """Prompts decoded together."""


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """"stop" when the model ended its turn or hit a stop string, "length" at max_new_tokens."""


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def prompt_ids(tokenizer: Any, messages: Messages) -> list[int]:
    """The tokens the model reads for ``messages``: their chat template, up to the start of
    the reply."""
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return list(tokenizer(str(text), add_special_tokens=False)["input_ids"])


def _text(decoded: object) -> str:
    """Decoded text without NUL characters: a model can emit a token that decodes to one, and
    no store (PostgreSQL's text) or client takes it."""
    return str(decoded).replace("\x00", "")


def generate(
    host: AdapterHost,
    conversations: Sequence[Messages],
    config: SampleConfig,
    *,
    slot: str | None = None,
    state: AdapterState | None = None,
    num_return_sequences: int = 1,
    stop: Sequence[str] = (),
    prefix: str = "",
    per_chunk: Callable[[int, int], AbstractContextManager[object]] | None = None,
    streamer: BaseStreamer | None = None,
    halt: threading.Event | None = None,
) -> list[Generation]:
    """Decode a reply to each conversation (``num_return_sequences`` each, in order), with the
    adapter ``state`` in ``slot`` (None: the weights the slot holds; folded into the weights
    while decoding, ``host.merged``, when the reply may be long enough to pay for it), or the
    bare base model when ``slot`` is None.
    ``prefix`` starts the reply (it primes the format); it is not part of the returned text.
    ``per_chunk(start, end)``, when given, is a context entered around the decoding of prompts
    start..end. ``streamer`` receives the tokens as they are decoded and ``halt``, once set,
    ends decoding at the next step (one conversation, one sequence: see ``ReplyStream``)."""
    if (streamer or halt) and (len(conversations) != 1 or num_return_sequences != 1):
        raise ValueError("a streamed reply is one sequence for one conversation")
    tok = host.tokenizer
    prompts = [
        str(tok.apply_chat_template(list(c), add_generation_prompt=True, tokenize=False)) + prefix
        for c in conversations
    ]
    greedy = config.temperature < MIN_SAMPLING_TEMPERATURE
    out: list[Generation] = []
    tok.padding_side = "left"
    # an adapter is folded into the weights while decoding: the bare model's speed per step
    if slot is None:
        session = host.use(None)
    elif config.max_new_tokens >= FOLD_MIN_NEW_TOKENS:
        session = host.merged(slot, state)
    else:
        session = host.use(slot, state)
    with session as model, narrow_head(model), torch.inference_mode():
        step = max(1, config.batch_size // num_return_sequences)
        for start in range(0, len(prompts), step):
            chunk = prompts[start : start + step]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(host.device)
            if config.seed is not None:
                torch.manual_seed(config.seed + start)
            kwargs = dict(
                max_new_tokens=config.max_new_tokens,
                do_sample=not greedy,
                num_return_sequences=num_return_sequences,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            if not greedy:
                kwargs.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            if streamer is not None:
                kwargs["streamer"] = streamer
            criteria: list[StoppingCriteria] = [_Halt(halt)] if halt is not None else []
            if stop:  # a row ends as soon as its reply holds a stop string
                criteria.append(_StopStrings(tok, stop, enc["input_ids"].shape[1]))
            if criteria:
                kwargs["stopping_criteria"] = StoppingCriteriaList(criteria)
            if num_return_sequences > 1 and per_chunk is None and enc["input_ids"].shape[1] > 1:
                seqs = _generate_from_one_prefill(model, enc, num_return_sequences, kwargs)
            else:
                with per_chunk(start, start + len(chunk)) if per_chunk else nullcontext():
                    seqs = model.generate(**enc, **kwargs)
            width = enc["input_ids"].shape[1]
            for row, seq in enumerate(seqs):
                prompt_len = int(enc["attention_mask"][row // num_return_sequences].sum())
                new = seq[width:]
                ended = (new == tok.eos_token_id).nonzero()
                n = int(ended[0]) if len(ended) else len(new)
                text = _text(tok.decode(new[:n], skip_special_tokens=True))
                text, stopped = _cut_at_stop(text, stop)
                reason = "stop" if (len(ended) or stopped) else "length"
                out.append(
                    Generation(text.strip(), prompt_len, n + (1 if len(ended) else 0), reason)
                )
    return out


def _generate_from_one_prefill(
    model: Any, enc: Any, copies: int, kwargs: dict[str, Any]
) -> torch.Tensor:
    """``model.generate(**enc, num_return_sequences=copies, **kwargs)``, but each prompt is
    prefilled once rather than once per copy: every prompt but its last token runs through the
    model, the key/value cache is repeated ``copies`` times, and ``generate`` goes on from it
    (the last token, then the copies' samples). The samples draw the same random numbers as
    ``num_return_sequences`` would; a 260-token self-edit prompt prefilled for k=5 copies took
    5x as long as for one (docs/results/2026-11-24-one-prefill-per-prompt.md)."""
    ids, mask = enc["input_ids"], enc["attention_mask"]  # prompts of two tokens or more
    # left padding: positions count the prompt's own tokens, as ``generate`` computes them
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    model(
        input_ids=ids[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=positions[:, :-1],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    cache.batch_repeat_interleave(copies)
    return model.generate(
        input_ids=ids.repeat_interleave(copies, dim=0),
        attention_mask=mask.repeat_interleave(copies, dim=0),
        past_key_values=cache,
        **{**kwargs, "num_return_sequences": 1},
    )


class _Halt(StoppingCriteria):
    """Ends decoding once ``event`` is set (the reader of a stream went away)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class _StopStrings(StoppingCriteria):
    """Ends each row whose reply (the tokens after the prompt's ``width``) holds a stop string;
    the reply is cut there afterwards (``_cut_at_stop``)."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], width: int):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.width = width

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        replies = self.tokenizer.batch_decode(input_ids[:, self.width :], skip_special_tokens=True)
        ended = [any(s in reply for s in self.stop) for reply in replies]
        return torch.tensor(ended, dtype=torch.bool, device=input_ids.device)


class _TokenQueue(BaseStreamer):
    """Hands the decoded tokens to another thread: lists of token ids, then None at the end.
    The prompt, which ``generate`` puts first, is skipped."""

    def __init__(self) -> None:
        self.queue: queue.Queue[list[int] | None] = queue.Queue()
        self._prompt = True

    def put(self, value: torch.Tensor) -> None:
        if self._prompt:
            self._prompt = False
            return
        self.queue.put([int(t) for t in value.reshape(-1).tolist()])

    def end(self) -> None:
        self.queue.put(None)


def _safe_length(text: str, stop: Sequence[str]) -> int:
    """How much of a growing reply can be sent: not a trailing partial character, not the end
    that might begin a stop string, not trailing whitespace (the finished reply is stripped)."""
    end = len(text.rstrip("\ufffd"))  # not an incomplete UTF-8 character so far
    for s in stop:
        for n in range(min(len(s) - 1, end), 0, -1):
            if text[:end].endswith(s[:n]):
                end -= n
                break
    return len(text[:end].rstrip())


class ReplyText:
    """What of a reply being decoded can be sent so far: token pieces go in, text comes out
    once it can no longer change (no stop string can still start in it), and at the end the
    rest of the decoded text and the ``Generation``. The streams of both chat engines use it,
    so the pieces always add up to the ``Generation``'s text."""

    def __init__(self, tokenizer: Any, stop: Sequence[str]):
        self._tokenizer = tokenizer
        self._stop = tuple(stop)
        self._ids: list[int] = []
        self._sent = ""
        self._last: list[str | Generation] = []

    def add(self, piece: list[int]) -> str | None:
        """The text that ``piece`` lets through, if any."""
        tok = self._tokenizer
        self._ids.extend(piece)
        if tok.eos_token_id in self._ids:
            self._ids = self._ids[: self._ids.index(tok.eos_token_id)]
        # cut as ``generate`` cuts it (its decoding ends at this token)
        raw, stopped = _cut_at_stop(
            _text(tok.decode(self._ids, skip_special_tokens=True)), self._stop
        )
        text = raw[: _safe_length(raw, () if stopped else self._stop)].lstrip()
        if len(text) > len(self._sent) and text.startswith(self._sent):
            new, self._sent = text[len(self._sent) :], text
            return new
        return None

    def end(self, generation: Generation) -> None:
        """The reply is decoded: what is left to give is the rest of its text, then it."""
        if not generation.text.startswith(self._sent):
            raise RuntimeError("a streamed reply differs from its decoded text")
        if len(generation.text) > len(self._sent):
            self._last.append(generation.text[len(self._sent) :])
        self._last.append(generation)

    def next_left(self) -> str | Generation:
        if not self._last:
            raise StopIteration
        return self._last.pop(0)


class ReplyStream(Iterator["str | Generation"]):
    """One reply decoded in a background thread: iterating gives text pieces as the tokens
    come, then the reply's ``Generation``. The pieces add up to the ``Generation``'s text,
    which is what ``generate`` returns for the same arguments (and seed). ``close()``, from
    any thread, even while another one waits in ``next``, ends the decoding at its next step.
    ``lock``, when given, is held by the decoding thread while it decodes (the model's adapter
    slot is shared)."""

    def __init__(
        self,
        host: AdapterHost,
        conversation: Messages,
        config: SampleConfig,
        *,
        slot: str | None = None,
        state: AdapterState | None = None,
        stop: Sequence[str] = (),
        lock: threading.Lock | None = None,
    ):
        self._text = ReplyText(host.tokenizer, stop)
        self._tokens = _TokenQueue()
        self._halt = threading.Event()
        self._outcome: dict[str, Any] = {}
        self._ended = False

        def decode() -> None:
            try:
                with lock or nullcontext():
                    self._outcome["generation"] = generate(
                        host, [conversation], config, slot=slot, state=state, stop=stop,
                        streamer=self._tokens, halt=self._halt,
                    )[0]  # fmt: skip
            except BaseException as exc:  # handed to the reader
                self._outcome["error"] = exc
            finally:
                self._tokens.end()

        self._thread = threading.Thread(target=decode, name="stream-reply", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._halt.set()

    def __next__(self) -> str | Generation:
        while not self._ended:
            piece = self._tokens.queue.get()
            if piece is None:
                self._end()
                break
            new = self._text.add(piece)
            if new is not None:
                return new
        return self._text.next_left()

    def _end(self) -> None:
        self._ended = True
        self._thread.join()
        if "error" in self._outcome:
            raise self._outcome["error"]
        self._text.end(self._outcome["generation"])
