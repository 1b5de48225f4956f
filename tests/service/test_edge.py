"""The edge of the API (service/edge.py): a request that may write is refused for its key
before a byte of its body is read and before a writer's session is opened, and for its size
from its Content-Length, or as it streams in, before the body is held."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.limits import (
    BODY_LIMITS,
    DOCUMENT_BODY_BYTES,
    MAX_PROBE_CHARS,
    MAX_QUESTIONS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    SMALL_BODY_BYTES,
)
from service.store.db import make_engine, make_sessionmaker
from tests.conftest import ADMIN_KEY
from tests.factories import auth, make_tenant

HUGE = 200 * 1024 * 1024
CHUNK = 64 * 1024


class Body:
    """A request body of ``size`` bytes, made as it is read; ``read`` counts what was."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.read < self.size:
            chunk = b" " * min(CHUNK, self.size - self.read)
            self.read += len(chunk)
            yield chunk


def _send(
    app: FastAPI, method: str, path: str, body: Body, key: str | None, *, length: bool
) -> httpx.Response:
    """``body`` to the app as a server would hand it over (a chunk each time the app asks),
    with its Content-Length or chunked."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if length:
        headers["Content-Length"] = str(body.size)

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.request(method, path, content=body, headers=headers)

    return asyncio.run(send())


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("key", [None, "seal-made-up"], ids=["no-key", "made-up-key"])
def test_a_huge_body_without_a_valid_key_is_401_before_it_is_read(
    app: FastAPI, key: str | None, length: bool
) -> None:
    body = Body(HUGE)
    response = _send(app, "POST", "/v1/documents", body, key, length=length)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = _error(response)
    assert error["type"] == "unauthorized"
    assert ("missing API key" if key is None else "invalid or revoked") in error["message"]
    assert body.read == 0


def test_a_made_up_key_on_any_write_is_401_and_a_valid_key_passes(
    client: TestClient, session: Session
) -> None:
    _tenant, key = make_tenant(session)
    writes = [
        ("DELETE", "/v1/documents/nope", None, 404),
        ("POST", "/v1/jobs/nope/cancel", None, 404),
        ("PUT", "/v1/documents", None, 405),
        ("PATCH", "/v1/admin/tenants/nope", {"update_schedule": None}, 404),
    ]
    for method, path, body, status in writes:
        where = f"{method} {path}"
        response = client.request(method, path, json=body, headers=auth("seal-made-up"))
        assert response.status_code == 401, where
        assert response.json()["error"]["message"] == "invalid or revoked API key", where
        # past the edge, the route answers for itself (the admin key passes it too)
        right = ADMIN_KEY if "/admin/" in path else key
        assert client.request(method, path, json=body, headers=auth(right)).status_code == status


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_an_over_limit_body_with_a_valid_key_is_413_before_it_is_held(
    app: FastAPI, session: Session, length: bool
) -> None:
    _tenant, key = make_tenant(session)
    body = Body(HUGE)
    response = _send(app, "POST", "/v1/documents", body, key, length=length)
    assert response.status_code == 413
    error = _error(response)
    assert error["type"] == "payload_too_large"
    assert f"{DOCUMENT_BODY_BYTES:,} bytes" in error["message"]
    # from the Content-Length nothing is read; streamed in, at most one chunk past the limit
    assert body.read == (0 if length else (DOCUMENT_BODY_BYTES // CHUNK + 1) * CHUNK)


def test_a_route_without_long_fields_takes_a_small_body(app: FastAPI, session: Session) -> None:
    _tenant, key = make_tenant(session)
    for length in (True, False):
        body = Body(SMALL_BODY_BYTES + 1)
        response = _send(app, "POST", "/v1/updates", body, key, length=length)
        assert response.status_code == 413
        assert f"{SMALL_BODY_BYTES:,} bytes" in _error(response)["message"]


def test_the_largest_valid_document_passes(client: TestClient, session: Session) -> None:
    """Every string at its longest, of characters ``json.dumps`` escapes: the limit is the
    largest valid body, not less."""
    _tenant, key = make_tenant(session)
    document = {
        "title": "é" * MAX_TITLE_CHARS,
        "text": "é" * MAX_TEXT_CHARS,
        "questions": [
            {"question": f"{i:04d}" + "é" * (MAX_PROBE_CHARS - 4), "answer": "ü" * MAX_PROBE_CHARS}
            for i in range(MAX_QUESTIONS)
        ],
    }
    content = json.dumps(document, indent=2)
    assert DOCUMENT_BODY_BYTES - 64 * 1024 < len(content) <= DOCUMENT_BODY_BYTES
    headers = {**auth(key), "Content-Type": "application/json"}
    response = client.post("/v1/documents", content=content, headers=headers)
    assert response.status_code == 201, response.text[:300]


def test_the_body_limits_name_routes_that_exist(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for method, path in BODY_LIMITS:
        assert "requestBody" in paths[path][method.lower()], f"{method} {path}"


def _counting(factory: Callable[[], Session], opened: list[int]) -> Callable[[], Session]:
    def open_session() -> Session:
        opened.append(1)
        return factory()

    return open_session


def test_a_made_up_key_never_opens_a_writers_session(app: FastAPI, session: Session) -> None:
    """On SQLite a writer's session begins with the write lock: a request must not queue for
    it, or hold it, before its key is known."""
    _tenant, key = make_tenant(session)
    opened: list[int] = []
    app.state.sessionmaker = _counting(app.state.sessionmaker, opened)
    document = b'{"title": "t", "text": "x"}'
    with TestClient(app) as client:
        for made_up in ("seal-made-up", "", ADMIN_KEY + "x"):
            headers = {"Authorization": f"Bearer {made_up}", "Content-Type": "application/json"}
            response = client.post("/v1/documents", content=document, headers=headers)
            assert response.status_code == 401
        assert opened == []
        headers = {**auth(key), "Content-Type": "application/json"}
        response = client.post("/v1/documents", content=document, headers=headers)
        assert response.status_code == 201, response.text
        assert opened == [1]


def test_an_unreachable_store_at_the_edge_is_503(app: FastAPI, tmp_path: Path) -> None:
    missing = make_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'seal.db'}")
    app.state.read_sessionmaker = make_sessionmaker(missing)
    response = _send(app, "POST", "/v1/documents", Body(HUGE), "seal-some-key", length=True)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert _error(response)["type"] == "service_unavailable"
    missing.dispose()


def test_reads_and_the_dashboard_are_not_behind_the_edge(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/documents").status_code == 401  # the route's own check
    # the dashboard signs in with a form and a cookie, never a bearer key
    response = client.post("/admin/login", data={"key": "wrong", "csrf": "x"})
    assert response.status_code == 403 and "expired" in response.text


def test_docs_give_the_body_limits() -> None:
    api = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    for limit in (*BODY_LIMITS.values(), SMALL_BODY_BYTES):
        assert f"{limit:,}" in api
