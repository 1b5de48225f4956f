"""The chat's limits: the lengths of its messages and stop sequences (422 as it is parsed),
and its prompt against the model's context minus ``max_tokens`` (422 before it is queued
for decoding, streamed or not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.domain.prompts import check_prompt
from service.errors import InvalidRequest
from service.inference import ChatRequest, ModelChatBackend
from service.limits import (
    MAX_CHAT_CHARS,
    MAX_STOP_CHARS,
    MAX_STOPS,
    MAX_TEXT_PARTS,
    PROMPT_CHARS_PER_TOKEN,
)
from service.settings import Settings
from tests.doubles import CONTEXT_TOKENS, ReversingBackend
from tests.factories import auth, make_tenant
from tests.model_cache import CACHE
from tests.tiny import TINY
from tests.tiny import tiny_model_dir as tiny_model_dir  # the fixture


@pytest.fixture
def tenant_key(session: Session) -> str:
    return make_tenant(session)[1]


def _chat(client: TestClient, key: str, content: Any = "hello", **fields: Any) -> httpx.Response:
    body = {"model": "student", "messages": [{"role": "user", "content": content}], **fields}
    return client.post("/v1/chat/completions", json=body, headers=auth(key))


def _refused(response: httpx.Response, *parts: str) -> str:
    assert response.status_code == 422, response.text[:300]
    message: str = response.json()["error"]["message"]
    for part in parts:
        assert part in message
    return message


def test_stop_sequences_have_a_length_and_a_count(
    client: TestClient, tenant_key: str, chat_backend: ReversingBackend
) -> None:
    long = "x" * (MAX_STOP_CHARS + 1)
    for stop in (long, ["\n", long], ["a"] * (MAX_STOPS + 1)):
        _refused(_chat(client, tenant_key, stop=stop), "body.stop")
    longest = ["x" * MAX_STOP_CHARS] * MAX_STOPS
    assert _chat(client, tenant_key, stop=longest).status_code == 200
    assert chat_backend.calls[0]["stop"] == longest


def test_message_contents_have_limits(
    client: TestClient, tenant_key: str, chat_backend: ReversingBackend
) -> None:
    over = "x" * (MAX_CHAT_CHARS + 1)
    _refused(_chat(client, tenant_key, over), "body.messages.0.content")
    _refused(_chat(client, tenant_key, [{"type": "text", "text": over}]), "body.messages.0")
    parts = [{"type": "text", "text": "a "}] * (MAX_TEXT_PARTS + 1)
    _refused(_chat(client, tenant_key, parts), "body.messages.0.content")
    half = {"role": "user", "content": "x" * (MAX_CHAT_CHARS // 2 + 1)}
    response = client.post(
        "/v1/chat/completions",
        json={"model": "student", "messages": [half, half]},
        headers=auth(tenant_key),
    )
    _refused(response, "body.messages", f"{MAX_CHAT_CHARS + 2:,} characters")
    assert chat_backend.calls == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_prompt_longer_than_the_context_can_hold_is_refused_untokenized(
    client: TestClient,
    tenant_key: str,
    chat_backend: ReversingBackend,
    settings: Settings,
    stream: bool,
) -> None:
    """The 2,000,000-character prompt that took the API: refused by its characters, before
    it is tokenized or queued."""
    limit = CONTEXT_TOKENS - settings.chat_max_tokens
    chars = limit * PROMPT_CHARS_PER_TOKEN + 1
    message = _refused(
        _chat(client, tenant_key, "x" * chars, stream=stream),
        "body.messages",
        f"{chars:,} characters",
        f"limit of {limit:,} tokens",
        f"context of {CONTEXT_TOKENS:,} tokens minus max_tokens {settings.chat_max_tokens}",
    )
    assert "shorten" in message
    assert chat_backend.counted == [] and chat_backend.calls == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_prompt_over_the_tokens_max_tokens_leaves_is_refused(
    client: TestClient, tenant_key: str, chat_backend: ReversingBackend, stream: bool
) -> None:
    words = "w " * 4097  # the double's tokens are words
    _refused(
        _chat(client, tenant_key, words, max_tokens=4096, stream=stream),
        "body.messages",
        "4,097 tokens",
        "limit of 4,096 tokens",
    )
    assert chat_backend.calls == []  # never queued
    response = _chat(client, tenant_key, words, max_tokens=4095, stream=stream)
    assert response.status_code == 200, response.text[:300]
    assert len(chat_backend.calls) == 1


def test_max_tokens_that_leave_no_room_are_refused(
    client: TestClient, tenant_key: str, chat_backend: ReversingBackend
) -> None:
    chat_backend.context = 4096
    _refused(_chat(client, tenant_key, max_tokens=4096), "body.max_tokens", "4,096")
    assert chat_backend.calls == []


def test_the_real_backend_refuses_a_prompt_its_context_cannot_hold(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        model_cache_dir=CACHE,
        student_model=str(tiny_model_dir),
        dtype="float32",
    )
    backend = ModelChatBackend(settings)
    limit = TINY.max_position_embeddings - 8
    fits = [{"role": "user", "content": "harbour " * 100}]
    check_prompt(backend, ChatRequest(messages=fits, adapter=None, max_tokens=8))
    long = [{"role": "user", "content": "harbour " * 600}]  # about 4 characters a token
    with pytest.raises(InvalidRequest, match=f"tokens, more than the limit of {limit} tokens"):
        check_prompt(backend, ChatRequest(messages=long, adapter=None, max_tokens=8))
