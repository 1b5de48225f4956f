"""Test doubles of the *model* (never of Celery or the database)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from service.inference import AdapterRef, ChatResult


@dataclass
class ReversingBackend:
    """A deterministic stand-in for the chat model: answers with the words of the last user
    message in reverse order, cut to ``max_tokens`` words (one word = one token)."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def complete(
        self,
        *,
        messages: list[dict[str, str]],
        adapter: AdapterRef | None,
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int | None,
        stop: list[str] | None,
    ) -> ChatResult:
        self.calls.append(
            {
                "messages": messages,
                "adapter": adapter,
                "max_tokens": max_tokens,
                "temperature": temperature,
                "top_p": top_p,
                "seed": seed,
                "stop": stop,
            }
        )
        last = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        words = last.split()[::-1]
        out = words[:max_tokens]
        return ChatResult(
            text=" ".join(out),
            prompt_tokens=sum(len(m["content"].split()) for m in messages),
            completion_tokens=len(out),
            finish_reason="length" if len(words) > max_tokens else "stop",
        )

    def stream(self, **kwargs: Any) -> Iterator[str | ChatResult]:
        """The same reply, a word at a time (the first without a leading space)."""
        result = self.complete(**kwargs)
        self.calls[-1]["stream"] = True
        for i, word in enumerate(result.text.split()):
            yield word if i == 0 else f" {word}"
        yield result
