import sqlite3

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.store.repositories import documents as document_repo
from tests.factories import auth, make_tenant


def test_healthz_checks_the_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/chat/completions" in paths
    assert "/v1/documents" in paths


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_a_busy_store_is_a_503_to_retry_and_changes_nothing(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tenant, key = make_tenant(session)
    session.commit()

    create_document = document_repo.create_document

    def locked(session: object, **kwargs: object) -> None:
        # the row is written (flushed), then the store fails as SQLite does when a writer is in
        # the way of a transaction that read first: the request's transaction must roll back
        create_document(session, **kwargs)  # type: ignore[arg-type]
        raise OperationalError(
            "INSERT INTO documents ...", {}, sqlite3.OperationalError("database is locked")
        )

    monkeypatch.setattr(document_repo, "create_document", locked)
    response = client.post(
        "/v1/documents", json={"title": "Busy", "text": "Some text."}, headers=auth(key)
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    error = response.json()["error"]
    assert error["type"] == "service_unavailable" and "retry" in error["message"]
    monkeypatch.undo()
    # the failed attempt left nothing behind: retried as the 503 asks, the same document is
    # new (201, not the 200 of content already stored) and the only one
    retried = client.post(
        "/v1/documents", json={"title": "Busy", "text": "Some text."}, headers=auth(key)
    )
    assert retried.status_code == 201, retried.text
    listed = client.get("/v1/documents", headers=auth(key)).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == retried.json()["id"]
