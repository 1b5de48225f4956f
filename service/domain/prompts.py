"""A chat prompt's limit: the room the model's context leaves once the reply's
``max_tokens`` are set aside. Checked in the request's thread, before the request is queued
for the decoding thread every tenant shares; what the messages leave of it is hybrid memory's
budget (:func:`with_memory`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from seal.questions import open_book_messages
from service.domain.errors import InvalidRequest
from service.limits import PROMPT_CHARS_PER_TOKEN
from service.store.repositories.memory import Found

if TYPE_CHECKING:
    from service.inference import ChatBackend, ChatRequest

#: How a backend that cannot count tokens has memory's prompt measured: a token per this many
#: characters (English runs about 4).
MEMORY_CHARS_PER_TOKEN = 2


def check_prompt(backend: ChatBackend, chat: ChatRequest) -> None:
    """Refuse (422) a prompt the model's context cannot hold with ``chat.max_tokens`` to
    spare: first by its characters, without tokenizing it (more than
    :data:`~service.limits.PROMPT_CHARS_PER_TOKEN` a token of the room left), then by the
    exact count of the tokens the model would see, its chat template included, where the
    backend tokenizes."""
    context = backend.context_tokens()
    limit = context - chat.max_tokens
    if limit <= 0:
        raise InvalidRequest(
            f"body.max_tokens: {chat.max_tokens:,} leaves no room for a prompt in the model's "
            f"context of {context:,} tokens"
        )
    why = (
        f"the limit is the model's context of {context:,} tokens minus max_tokens "
        f"{chat.max_tokens}: shorten the messages or lower max_tokens"
    )
    chars = sum(len(message["content"]) for message in chat.messages)
    if chars > limit * PROMPT_CHARS_PER_TOKEN:
        raise InvalidRequest(
            f"body.messages: the prompt is {chars:,} characters, more than the limit of "
            f"{limit:,} tokens can hold ({limit * PROMPT_CHARS_PER_TOKEN:,} characters at "
            f"{PROMPT_CHARS_PER_TOKEN} a token); {why}"
        )
    tokens = backend.prompt_tokens(chat.messages)
    if tokens is not None and tokens > limit:
        raise InvalidRequest(
            f"body.messages: the prompt is {tokens:,} tokens, more than the limit of "
            f"{limit:,} tokens; {why}"
        )


def memory_messages(
    documents: Sequence[tuple[str, str]], messages: list[dict[str, str]]
) -> list[dict[str, str]]:
    """The conversation with ``documents`` (title, text) shown first: the open-book prompt's
    system message (:func:`seal.questions.open_book_messages`, the prompt the open-book teacher
    asks with), then the messages as they came. A chat of one user message gets exactly the
    open-book prompt."""
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    system = open_book_messages(documents, "", question)[0]
    return [system, *messages]


def with_memory(
    backend: ChatBackend, chat: ChatRequest, found: Sequence[Found]
) -> tuple[ChatRequest, list[Found]]:
    """The chat with as many of the chunks ``found`` (best first) as the model's context holds
    beside its messages and ``max_tokens``, and the chunks it shows. The chunk that does not
    fit whole is cut to the words that do, and the ones after it are left out; with no room
    at all the chat goes as it came (the weights alone). Call after :func:`check_prompt`."""
    limit = backend.context_tokens() - chat.max_tokens
    shown: list[Found] = []
    for chunk in found:
        if _tokens(backend, chat, [*shown, chunk]) <= limit:
            shown.append(chunk)
            continue
        words = chunk.text.split()
        low, high = 0, len(words) - 1  # the most words that fit lie in [low, high]
        while low < high:
            mid = (low + high + 1) // 2
            cut = replace(chunk, text=" ".join(words[:mid]))
            if _tokens(backend, chat, [*shown, cut]) <= limit:
                low = mid
            else:
                high = mid - 1
        if low:
            shown.append(replace(chunk, text=" ".join(words[:low])))
        break
    if not shown:
        return chat, []
    return replace(chat, messages=_shown(chat, shown)), shown


def _shown(chat: ChatRequest, found: Sequence[Found]) -> list[dict[str, str]]:
    return memory_messages([(f.title, f.text) for f in found], chat.messages)


def _tokens(backend: ChatBackend, chat: ChatRequest, found: Sequence[Found]) -> int:
    """The prompt's tokens with ``found`` shown; a backend that cannot count is taken at
    :data:`MEMORY_CHARS_PER_TOKEN` (fewer characters a token than English has: it errs on the
    short side)."""
    messages = _shown(chat, found)
    tokens = backend.prompt_tokens(messages)
    if tokens is None:
        return -(-sum(len(m["content"]) for m in messages) // MEMORY_CHARS_PER_TOKEN)
    return tokens
