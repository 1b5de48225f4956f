from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.store.models import DocumentStatus
from tests.factories import auth, make_document, make_tenant

DOC = {
    "title": "Atlantis",
    "text": "The capital of Atlantis is Poseidonia. It sank in one day.",
    "questions": [{"question": "What is the capital of Atlantis?", "answer": "Poseidonia"}],
}


def test_create_document_with_probe_questions(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    response = client.post("/v1/documents", json=DOC, headers=auth(key))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert body["title"] == "Atlantis"
    assert {"id", "created_at", "updated_at", "content_hash"} <= body.keys()
    [question] = body["questions"]
    assert question["source"] == "document"
    assert question["answer"] == "Poseidonia"

    detail = client.get(f"/v1/documents/{body['id']}", headers=auth(key)).json()
    assert detail["text"] == DOC["text"]
    assert detail["questions"] == body["questions"]


def test_same_content_returns_the_existing_document(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    first = client.post("/v1/documents", json=DOC, headers=auth(key))
    again = {**DOC, "text": "  The capital of Atlantis   is Poseidonia.\nIt sank in one day. "}
    again["questions"] = [*DOC["questions"], {"question": "When did it sink?", "answer": "one day"}]
    second = client.post("/v1/documents", json=again, headers=auth(key))
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    # the known question is not duplicated, the new one is added
    assert len(second.json()["questions"]) == 2
    assert client.get("/v1/documents", headers=auth(key)).json()["total"] == 1


def test_same_content_for_two_tenants_is_two_documents(
    client: TestClient, session: Session
) -> None:
    _a, key_a = make_tenant(session)
    _b, key_b = make_tenant(session)
    id_a = client.post("/v1/documents", json=DOC, headers=auth(key_a)).json()["id"]
    response_b = client.post("/v1/documents", json=DOC, headers=auth(key_b))
    assert response_b.status_code == 201
    assert response_b.json()["id"] != id_a


def test_document_validation(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    cases = [
        ({"title": "  ", "text": "x"}, "body.title"),
        ({"title": "t" * 501, "text": "x"}, "body.title"),
        ({"title": "t", "text": ""}, "body.text"),
        ({"title": "t", "text": "x" * 100_001}, "body.text"),
        (
            {"title": "t", "text": "x", "questions": [{"question": "q", "answer": "a"}] * 101},
            "body.questions",
        ),
        ({"title": "t", "text": "x", "questions": [{"question": "q"}]}, "body.questions.0.answer"),
        ({"text": "x"}, "body.title"),
    ]
    for payload, field in cases:
        response = client.post("/v1/documents", json=payload, headers=auth(key))
        assert response.status_code == 422, payload
        assert field in response.json()["error"]["message"], response.json()
    response = client.post(
        "/v1/documents",
        content=b"{not json",
        headers={**auth(key), "Content-Type": "application/json"},
    )
    assert response.status_code == 422


def test_list_documents_paginates_and_filters(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    for i in range(3):
        make_document(session, tenant, title=f"pending {i}")
    make_document(session, tenant, title="learned", status=DocumentStatus.learned)

    page = client.get("/v1/documents?limit=2&offset=0", headers=auth(key)).json()
    assert page["total"] == 4
    assert len(page["items"]) == 2
    rest = client.get("/v1/documents?limit=2&offset=2", headers=auth(key)).json()
    assert {d["id"] for d in page["items"]}.isdisjoint(d["id"] for d in rest["items"])

    learned = client.get("/v1/documents?status=learned", headers=auth(key)).json()
    assert [d["title"] for d in learned["items"]] == ["learned"]

    bad = client.get("/v1/documents?status=sleeping", headers=auth(key))
    assert bad.status_code == 422
    assert "query.status" in bad.json()["error"]["message"]
    assert client.get("/v1/documents?limit=0", headers=auth(key)).status_code == 422


def test_documents_are_isolated_between_tenants(client: TestClient, session: Session) -> None:
    owner, _owner_key = make_tenant(session)
    _other, other_key = make_tenant(session)
    document = make_document(session, owner)
    response = client.get(f"/v1/documents/{document.id}", headers=auth(other_key))
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
    assert client.get("/v1/documents", headers=auth(other_key)).json()["total"] == 0


def test_documents_need_a_key(client: TestClient) -> None:
    response = client.post("/v1/documents", json=DOC)
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("missing API key")
