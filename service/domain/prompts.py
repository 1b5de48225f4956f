"""A chat prompt's limit: the room the model's context leaves once the reply's
``max_tokens`` are set aside. Checked in the request's thread, before the request is queued
for the decoding thread every tenant shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.domain.errors import InvalidRequest
from service.limits import PROMPT_CHARS_PER_TOKEN

if TYPE_CHECKING:
    from service.inference import ChatBackend, ChatRequest


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
