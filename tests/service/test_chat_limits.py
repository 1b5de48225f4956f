"""The chat's limits: the lengths of its messages and stop sequences (422 as it is parsed)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.limits import (
    MAX_CHAT_CHARS,
    MAX_STOP_CHARS,
    MAX_STOPS,
    MAX_TEXT_PARTS,
)
from tests.doubles import ReversingBackend
from tests.factories import auth, make_tenant


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
