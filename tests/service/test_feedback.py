from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.store.models import ProbeSource
from service.store.repositories import documents as document_repo
from service.store.repositories import feedback as feedback_repo
from tests.factories import auth, make_document, make_tenant


def test_rating_alone_is_feedback(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    response = client.post("/v1/feedback", json={"rating": -1}, headers=auth(key))
    assert response.status_code == 201, response.text
    assert response.json()["rating"] == -1
    assert response.json()["probe_question_id"] is None


def test_question_answer_about_a_document_becomes_a_probe_question(
    client: TestClient, session: Session
) -> None:
    tenant, key = make_tenant(session)
    document = make_document(session, tenant)
    payload = {
        "question": "Capital of Atlantis?",
        "answer": "Poseidonia",
        "document_id": document.id,
        "rating": 5,
    }
    response = client.post("/v1/feedback", json=payload, headers=auth(key))
    assert response.status_code == 201, response.text
    body = response.json()
    probes = document_repo.probe_questions_for_documents(session, document_ids=[document.id])
    [probe] = probes[document.id]
    assert probe.id == body["probe_question_id"]
    assert probe.source == ProbeSource.feedback
    assert (probe.question, probe.answer) == ("Capital of Atlantis?", "Poseidonia")


def test_feedback_names_a_completion(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    completion = feedback_repo.create_completion(
        session,
        tenant_id=tenant.id,
        model="student",
        adapter_version_id=None,
        messages=[{"role": "user", "content": "hi"}],
        output="ih",
        prompt_tokens=1,
        completion_tokens=1,
    )
    response = client.post(
        "/v1/feedback", json={"rating": 1, "completion_id": completion.id}, headers=auth(key)
    )
    assert response.status_code == 201
    assert response.json()["completion_id"] == completion.id


def test_feedback_validation(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    cases = [
        ({}, "question and answer, a rating"),
        ({"question": "q?"}, "question and answer must be given together"),
        ({"answer": "a"}, "question and answer must be given together"),
        ({"rating": 6}, "body.rating"),
        ({"rating": -2}, "body.rating"),
        ({"rating": 1, "colour": "red"}, "body.colour"),
    ]
    for payload, message in cases:
        response = client.post("/v1/feedback", json=payload, headers=auth(key))
        assert response.status_code == 422, payload
        assert message in response.json()["error"]["message"], response.json()


def test_unknown_or_foreign_references_are_404(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    other, _other_key = make_tenant(session)
    foreign_document = make_document(session, other)
    foreign_completion = feedback_repo.create_completion(
        session,
        tenant_id=other.id,
        model="student",
        adapter_version_id=None,
        messages=[],
        output="",
        prompt_tokens=0,
        completion_tokens=0,
    )
    for payload in (
        {"rating": 1, "document_id": "missing"},
        {"rating": 1, "document_id": foreign_document.id},
        {"rating": 1, "completion_id": "chatcmpl-missing"},
        {"rating": 1, "completion_id": foreign_completion.id},
    ):
        response = client.post("/v1/feedback", json=payload, headers=auth(key))
        assert response.status_code == 404, payload
