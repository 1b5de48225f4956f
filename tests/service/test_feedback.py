from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.store.models import ProbeSource, VersionStatus
from service.store.repositories import documents as document_repo
from service.store.repositories import feedback as feedback_repo
from service.store.repositories import learning as learning_repo
from tests.factories import auth, make_adapter_version, make_document, make_tenant


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


def test_question_answer_about_no_document_joins_the_retention_set(
    client: TestClient, session: Session
) -> None:
    tenant, key = make_tenant(session)
    payload = {"question": "Who founded Atlantis?", "answer": "Poseidon"}
    response = client.post("/v1/feedback", json=payload, headers=auth(key))
    assert response.status_code == 201, response.text
    probe_id = response.json()["probe_question_id"]
    assert probe_id is not None
    retention = document_repo.retention_probes(session, tenant_id=tenant.id, limit=10)
    [(title, probe)] = retention
    assert (title, probe.id, probe.document_id) == ("", probe_id, None)
    assert probe.source == ProbeSource.feedback
    assert (probe.question, probe.answer) == ("Who founded Atlantis?", "Poseidon")
    # another tenant's retention set does not get it
    other, _ = make_tenant(session)
    assert document_repo.retention_probes(session, tenant_id=other.id, limit=10) == []


def test_a_rating_is_kept_in_the_reward_history(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    version = make_adapter_version(session, tenant, status=VersionStatus.active)
    document = make_document(session, tenant)
    completion = feedback_repo.create_completion(
        session,
        tenant_id=tenant.id,
        model="student",
        adapter_version_id=version.id,
        messages=[{"role": "user", "content": "hi"}],
        output="ih",
        prompt_tokens=1,
        completion_tokens=1,
    )
    payloads = [
        {"rating": 4, "completion_id": completion.id, "document_id": document.id},
        {"rating": -1},
        {"question": "q?", "answer": "a"},  # no rating, no reward
    ]
    for payload in payloads:
        assert client.post("/v1/feedback", json=payload, headers=auth(key)).status_code == 201

    rows = learning_repo.list_rewards(session, tenant_id=tenant.id)
    assert [
        (r.reward.metric, r.reward.value, r.reward.baseline, r.adapter_version, r.format)
        for r in rows
    ] == [("rating", 4.0, None, 1, None), ("rating", -1.0, None, None, None)]
    assert [(r.reward.document_id, r.reward.self_edit_id) for r in rows] == [
        (document.id, None),
        (None, None),
    ]

    body = client.get("/v1/rewards?metric=rating", headers=auth(key)).json()
    assert [i["value"] for i in body["items"]] == [4.0, -1.0]
    assert body["summary"]["by_metric"] == {"rating": {"count": 2, "mean": 1.5}}
    assert body["summary"]["by_format"] == {}  # ratings are not rewards of self-edits
    # another tenant sees none of them
    _other, other_key = make_tenant(session)
    assert client.get("/v1/rewards", headers=auth(other_key)).json()["items"] == []


def test_a_rejected_feedback_keeps_no_reward(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    payload = {"rating": 5, "completion_id": "chatcmpl-missing"}
    assert client.post("/v1/feedback", json=payload, headers=auth(key)).status_code == 404
    assert learning_repo.list_rewards(session, tenant_id=tenant.id) == []
