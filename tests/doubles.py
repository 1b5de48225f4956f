"""Test doubles of the *model* (never of Celery or the database)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from seal import knowledge
from seal.grading import Evaluation, Graded
from service.inference import ChatRequest, ChatResult


def grade_probes(
    monkeypatch: pytest.MonkeyPatch, *, before: bool, self_edits: bool, passage: bool
) -> None:
    """Decide the probes' verdicts instead of the model: the baseline (one state graded
    alone), every self-edit candidate, and the passage-alone candidate (graded last beside
    them) answer all their probes right or all wrong. Everything else (sampling, training,
    the bookkeeping) runs for real."""

    def grade(host, states, probes, max_new_tokens, *, slot=None):  # type: ignore[no-untyped-def]
        verdicts = [before] if len(states) == 1 else [self_edits] * (len(states) - 1) + [passage]
        return [
            Evaluation([Graded(p, p.qa.answer if ok else "I do not know", ok) for p in probes])
            for ok in verdicts
        ]

    monkeypatch.setattr(knowledge, "evaluate_many", grade)


#: The context of :class:`ReversingBackend`, as SmolLM2's.
CONTEXT_TOKENS = 8192


def _words(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"].split()) for m in messages)


@dataclass
class ReversingBackend:
    """A deterministic stand-in for the chat model: answers with the words of the last user
    message in reverse order, cut to ``max_tokens`` words (one word = one token). ``counted``
    has the prompts it tokenized (their lengths), ``calls`` the requests it answered."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    counted: list[int] = field(default_factory=list)
    context: int = CONTEXT_TOKENS

    def context_tokens(self) -> int:
        return self.context

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        self.counted.append(_words(messages))
        return self.counted[-1]

    def complete(self, request: ChatRequest) -> ChatResult:
        self.calls.append(asdict(request) | {"adapter": request.adapter})
        last = next(m["content"] for m in reversed(request.messages) if m["role"] == "user")
        words = last.split()[::-1]
        out = words[: request.max_tokens]
        return ChatResult(
            text=" ".join(out),
            prompt_tokens=_words(request.messages),
            completion_tokens=len(out),
            finish_reason="length" if len(words) > request.max_tokens else "stop",
        )

    def stream(self, request: ChatRequest) -> Iterator[str | ChatResult]:
        """The same reply, a word at a time (the first without a leading space)."""
        result = self.complete(request)
        self.calls[-1]["stream"] = True
        for i, word in enumerate(result.text.split()):
            yield word if i == 0 else f" {word}"
        yield result
