import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from service.enqueue import UPDATE_TASK
from service.store.db import make_sessionmaker, session_scope
from service.store.models import (
    AdapterVersion,
    Document,
    DocumentStatus,
    Feedback,
    JobStatus,
    ProbeQuestion,
    ProbeSource,
    Reward,
    SelfEdit,
    Tenant,
    VersionStatus,
)
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from tests.factories import (
    auth,
    count_rows,
    make_adapter_version,
    make_document,
    make_job,
    make_reward,
    make_self_edit,
    make_teacher_version,
    make_tenant,
    queued_tasks,
    second_waits,
)

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


def test_delete_a_pending_document_with_what_was_derived_from_it(
    client: TestClient, session: Session
) -> None:
    tenant, key = make_tenant(session)
    document_id = client.post("/v1/documents", json=DOC, headers=auth(key)).json()["id"]
    kept = make_document(session, tenant, questions=[("Other?", "other")])
    feedback = client.post(
        "/v1/feedback",
        json={"document_id": document_id, "question": "Did it sink?", "answer": "yes"},
        headers=auth(key),
    ).json()
    document = session.get(Document, document_id)
    assert document is not None
    make_reward(session, make_self_edit(session, document), value=0.5)
    make_reward(session, make_self_edit(session, kept), value=0.25)
    assert count_rows(session, ProbeQuestion, document_id=document_id) == 2

    response = client.delete(f"/v1/documents/{document_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["title"], body["status"]) == (document_id, "Atlantis", "pending")
    assert body["learned_version"] is None

    session.expire_all()
    assert client.get(f"/v1/documents/{document_id}", headers=auth(key)).status_code == 404
    for model in (ProbeQuestion, SelfEdit, Reward):
        assert count_rows(session, model, document_id=document_id) == 0, model
    # the feedback stays (it is the tenant's own record), no longer linked to the document
    row = session.get(Feedback, feedback["id"])
    assert row is not None and row.document_id is None and row.probe_question_id is None
    # the other document and what came from it are untouched
    assert count_rows(session, ProbeQuestion, document_id=kept.id) == 1
    assert count_rows(session, Reward, document_id=kept.id) == 1
    # deleting again is a 404, and the same content can be added again as a new document
    again = client.delete(f"/v1/documents/{document_id}", headers=auth(key))
    assert again.status_code == 404
    assert document_id in again.json()["error"]["message"]
    readded = client.post("/v1/documents", json=DOC, headers=auth(key))
    assert readded.status_code == 201
    assert readded.json()["id"] != document_id


def test_delete_a_learned_document_names_the_version_that_learned_it(
    client: TestClient, session: Session
) -> None:
    tenant, key = make_tenant(session)
    version = make_adapter_version(session, tenant, status=VersionStatus.active)
    document = make_document(session, tenant, status=DocumentStatus.learned)
    document.learned_version_id = version.id
    session.flush()
    response = client.delete(f"/v1/documents/{document.id}", headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "learned"
    assert response.json()["learned_version"] == version.number
    # the adapter version keeps its weights: deleting a document retrains nothing
    session.expire_all()
    kept = session.get(AdapterVersion, version.id)
    assert kept is not None and kept.status == VersionStatus.active


def test_forget_deletes_a_learned_document_and_requests_a_rebuild(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    tenant, key = make_tenant(session)
    version = make_adapter_version(session, tenant, status=VersionStatus.active)
    first, second = (make_document(session, tenant, status=DocumentStatus.learned) for _ in "ab")
    pending = make_document(session, tenant)
    session.commit()

    response = client.delete(f"/v1/documents/{first.id}?forget=true", headers=auth(key))
    assert response.status_code == 200, response.text
    job_id = response.json()["rebuild_job_id"]
    assert job_id is not None and count_rows(session, Document, id=first.id) == 0
    job = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert (job["kind"], job["status"], job["params"]) == ("update", "queued", {"mode": "rebuild"})
    assert queued_tasks(broker) == [(UPDATE_TASK, {"job_id": job_id})]
    # a second deletion while the rebuild is open joins it
    again = client.delete(f"/v1/documents/{second.id}?forget=true", headers=auth(key))
    assert again.status_code == 200 and again.json()["rebuild_job_id"] == job_id
    assert len(queued_tasks(broker)) == 1
    # a document never learned has nothing to forget
    plain = client.delete(f"/v1/documents/{pending.id}?forget=true", headers=auth(key))
    assert plain.status_code == 200 and plain.json()["rebuild_job_id"] is None
    # until the rebuild runs, the version that learned them still serves
    session.expire_all()
    assert session.get(AdapterVersion, version.id).status == VersionStatus.active  # type: ignore[union-attr]


def test_forget_while_another_update_is_open_deletes_nothing(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    tenant, key = make_tenant(session)
    learned = make_document(session, tenant, status=DocumentStatus.learned)
    make_document(session, tenant, status=DocumentStatus.learning)
    job = make_job(session, tenant, status=JobStatus.running)
    session.commit()
    response = client.delete(f"/v1/documents/{learned.id}?forget=true", headers=auth(key))
    assert response.status_code == 409
    message = response.json()["error"]["message"]
    assert job.id in message and "request the rebuild once it has ended" in message
    session.expire_all()
    assert count_rows(session, Document, id=learned.id) == 1  # nothing was lost
    assert queued_tasks(broker) == []
    # without forget the deletion goes ahead, retraining nothing
    plain = client.delete(f"/v1/documents/{learned.id}", headers=auth(key))
    assert plain.status_code == 200 and plain.json()["rebuild_job_id"] is None


def test_delete_names_the_own_teacher_versions_trained_on_its_self_edits(
    client: TestClient, session: Session
) -> None:
    tenant, key = make_tenant(session)
    other_tenant, _ = make_tenant(session)
    document = make_document(session, tenant, status=DocumentStatus.learned)
    kept = make_document(session, tenant, status=DocumentStatus.learned)
    edit = make_self_edit(session, document, selected=True)
    other = make_self_edit(session, kept, selected=True)
    v1 = make_teacher_version(session, tenant=tenant, metrics={"self_edit_ids": [edit.id]})
    make_teacher_version(session, tenant=tenant, parent=v1, metrics={"self_edit_ids": [other.id]})
    make_teacher_version(session, tenant=tenant, metrics={"self_edit_ids": [other.id]})  # v3
    make_teacher_version(session, tenant=other_tenant, metrics={"self_edit_ids": [edit.id]})
    session.commit()

    response = client.delete(f"/v1/documents/{document.id}", headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.json()["teacher_versions"] == [1, 2]  # v1 trained on it, v2 from v1
    plain = client.delete(f"/v1/documents/{kept.id}", headers=auth(key))
    assert plain.json()["teacher_versions"] == [2, 3]


def test_a_document_being_learned_cannot_be_deleted(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    document = make_document(session, tenant, status=DocumentStatus.learning)
    job = make_job(session, tenant)
    response = client.delete(f"/v1/documents/{document.id}", headers=auth(key))
    assert response.status_code == 409
    message = response.json()["error"]["message"]
    assert job.id in message and f"/v1/jobs/{job.id}/cancel" in message
    assert count_rows(session, Document, id=document.id) == 1


def test_another_tenants_document_cannot_be_deleted(client: TestClient, session: Session) -> None:
    owner, _owner_key = make_tenant(session)
    _other, other_key = make_tenant(session)
    document = make_document(session, owner)
    response = client.delete(f"/v1/documents/{document.id}", headers=auth(other_key))
    assert response.status_code == 404
    assert count_rows(session, Document, id=document.id) == 1
    assert client.delete(f"/v1/documents/{document.id}").status_code == 401


def test_a_document_is_claimed_by_an_update_or_deleted_never_both(engine: Engine) -> None:
    """Two real transactions, committed, on each backend: an update's claim and a delete."""
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        tenant, _key = make_tenant(session)
        tenant_id = tenant.id
        document_id = make_document(session, tenant).id

    def delete_it() -> bool:
        # as the API deletes: a writer (on SQLite, BEGIN IMMEDIATE). A deferred transaction
        # whose DELETE cascades to the memory's FTS5 trigger is refused at once while another
        # holds the write lock, instead of waiting for it (see service.store.db)
        with session_scope(make_sessionmaker(engine, write=True)) as session:
            return document_repo.delete_document(
                session, tenant_id=tenant_id, document_id=document_id
            )

    def claim() -> list[str]:
        with session_scope(factory) as session:
            return [
                d.id for d in document_repo.claim_pending_documents(session, tenant_id=tenant_id)
            ]

    def claim_first(session: Session) -> None:
        claimed = document_repo.claim_pending_documents(session, tenant_id=tenant_id)
        assert [d.id for d in claimed] == [document_id]

    def delete_first(session: Session) -> None:
        assert document_repo.delete_document(session, tenant_id=tenant_id, document_id=document_id)

    try:
        # the update claims first: the delete waits for its transaction, then finds the
        # document learning and deletes nothing
        assert second_waits(factory, claim_first, delete_it) is False

        with session_scope(factory) as session:
            document = session.get(Document, document_id)
            assert document is not None and document.status == DocumentStatus.learning
            document.status = DocumentStatus.pending
        # the delete comes first: the claim waits, then finds no document
        assert second_waits(factory, delete_first, claim) == []
    finally:
        with session_scope(factory) as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))


def test_a_rebuild_records_a_document_or_sees_it_deleted_never_both(engine: Engine) -> None:
    """Two real transactions, committed, on each backend: the rebuild's final check (a write
    first, then the trained documents locked, as ``worker.update`` records a rebuild) and a
    delete."""
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        tenant, _key = make_tenant(session)
        tenant_id = tenant.id
        document_id = make_document(session, tenant, status=DocumentStatus.learned).id
        job_id = make_job(session, tenant, status=JobStatus.running).id

    def delete_it() -> bool:
        # a writer, as the API deletes (see the claim's test above)
        with session_scope(make_sessionmaker(engine, write=True)) as session:
            return document_repo.delete_document(
                session, tenant_id=tenant_id, document_id=document_id
            )

    def check(session: Session) -> set[str]:
        assert job_repo.hold_running_job(session, job_id=job_id, message="recording")
        return document_repo.lock_documents(session, document_ids=[document_id])

    def check_alone() -> set[str]:
        with session_scope(factory) as session:
            return check(session)

    def check_first(session: Session) -> None:
        assert check(session) == {document_id}

    def delete_first(session: Session) -> None:
        assert document_repo.delete_document(session, tenant_id=tenant_id, document_id=document_id)

    try:
        # the rebuild checks first: the delete waits until its version is recorded
        assert second_waits(factory, check_first, delete_it) is True

        with session_scope(factory) as session:
            document_id = make_document(
                session, session.get(Tenant, tenant_id), status=DocumentStatus.learned
            ).id
        # the delete comes first: the check waits, then finds the document gone
        assert second_waits(factory, delete_first, check_alone) == set()
    finally:
        with session_scope(factory) as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))


def test_the_list_shows_each_documents_probe_questions_and_their_source(
    client: TestClient, session: Session
) -> None:
    tenant, key = make_tenant(session)
    client.post("/v1/documents", json=DOC, headers=auth(key))
    bare = make_document(session, tenant, title="Vellmora", text="Vellmora has 40 bridges.")
    document_repo.add_probe_question(
        session,
        tenant_id=tenant.id,
        document_id=bare.id,
        question='What fills the blank in "Vellmora has ___ bridges."?',
        answer="40",
        source=ProbeSource.cloze,
    )
    session.commit()

    items = client.get("/v1/documents", headers=auth(key)).json()["items"]
    questions = {item["title"]: item["questions"] for item in items}
    assert [(q["answer"], q["source"]) for q in questions["Atlantis"]] == [
        ("Poseidonia", "document")
    ]
    assert [(q["answer"], q["source"]) for q in questions["Vellmora"]] == [("40", "cloze")]
    assert all("text" not in item for item in items), "the list stays light"


def test_a_question_sent_for_a_document_waiting_for_questions_makes_it_pending(
    client: TestClient, session: Session
) -> None:
    tenant, key = make_tenant(session)
    doc = make_document(session, tenant, title=DOC["title"], text=DOC["text"])
    document_repo.set_document_status(
        session,
        document_ids=[doc.id],
        status=DocumentStatus.needs_questions,
        error="no probe question could be found or written for it",
    )
    session.commit()
    listed = client.get("/v1/documents?status=needs_questions", headers=auth(key)).json()
    assert [d["id"] for d in listed["items"]] == [doc.id]

    response = client.post("/v1/documents", json=DOC, headers=auth(key))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == doc.id and body["status"] == "pending" and body["error"] is None
