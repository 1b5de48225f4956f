"""Hybrid memory through the API, on both stores: a document answers from memory as soon as it
is accepted, only in its own tenant's chats, until it is deleted; what the reply drew on; the
tenant's setting and the request's ``memory``; volatile documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from seal.questions import open_book_messages
from service.domain.memory import CHUNK_WORDS, chunk_text, search_terms
from service.settings import Settings
from service.store.models import DocumentStatus
from service.store.repositories import documents as document_repo
from service.store.repositories import memory as memory_repo
from service.store.repositories import tenants as tenant_repo
from tests.doubles import ReversingBackend
from tests.factories import auth, make_document, make_tenant

TITLE = "Atlantis"
TEXT = "Poseidonia is the capital of Atlantis. Its harbour holds forty ships."
QUESTION = "What is the capital of Atlantis?"


@pytest.fixture
def key(session: Session) -> str:
    return make_tenant(session)[1]


def _add(client: TestClient, key: str, title: str = TITLE, text: str = TEXT, **extra: Any) -> dict:
    response = client.post(
        "/v1/documents", json={"title": title, "text": text, **extra}, headers=auth(key)
    )
    assert response.status_code == 201, response.text
    return response.json()


def _chat(client: TestClient, key: str, question: str = QUESTION, **extra: Any) -> dict:
    body = {"model": "student", "messages": [{"role": "user", "content": question}], **extra}
    response = client.post("/v1/chat/completions", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def make_tenant_id(session: Session, key: str) -> str:
    tenant = tenant_repo.tenant_for_api_key(session, key=key)
    assert tenant is not None
    return tenant.id


def _prompt(backend: ReversingBackend) -> list[dict[str, str]]:
    """The messages the model was given in the last chat."""
    return backend.calls[-1]["messages"]


def test_a_document_answers_through_chat_as_soon_as_it_is_accepted(
    client: TestClient, key: str, chat_backend: ReversingBackend
) -> None:
    document = _add(client, key)
    assert (document["status"], document["volatile"]) == ("pending", False)  # no update yet

    reply = _chat(client, key)

    # the open-book prompt, exactly: the document in the system message, the question as sent
    assert _prompt(chat_backend) == open_book_messages([(TITLE, TEXT)], "", QUESTION)
    assert reply["memory"] == {
        "mode": "hybrid",
        "documents": [{"id": document["id"], "title": TITLE}],
    }


def test_another_tenants_chat_never_sees_a_document(
    client: TestClient, session: Session, chat_backend: ReversingBackend
) -> None:
    """Eight tenants, each with a document of the same words but its own capital."""
    capitals = [f"Capitalname{i}" for i in range(8)]
    keys = [make_tenant(session)[1] for _ in capitals]
    ids = [
        _add(client, k, text=f"{c} is the capital of Atlantis, a city with forty ships.")["id"]
        for k, c in zip(keys, capitals, strict=True)
    ]
    for i, k in enumerate(keys):
        reply = _chat(client, k, f"Which city is the capital of Atlantis, {capitals[i - 1]}?")
        shown = _prompt(chat_backend)[0]["content"]
        assert [c for c in capitals if c in shown] == [capitals[i]]
        assert [d["id"] for d in reply["memory"]["documents"]] == [ids[i]]


def test_a_deleted_document_is_gone_from_the_next_answer(
    client: TestClient, key: str, chat_backend: ReversingBackend
) -> None:
    for forget in (False, True):
        document = _add(client, key, text=f"{TEXT} Forget: {forget}.")
        assert _chat(client, key)["memory"]["documents"][0]["id"] == document["id"]
        url = f"/v1/documents/{document['id']}" + ("?forget=true" if forget else "")
        assert client.delete(url, headers=auth(key)).status_code == 200

        reply = _chat(client, key)

        assert reply["memory"] == {"mode": "hybrid", "documents": []}
        assert _prompt(chat_backend) == [{"role": "user", "content": QUESTION}]


def test_a_question_that_matches_nothing_falls_back_to_the_weights(
    client: TestClient, key: str, chat_backend: ReversingBackend
) -> None:
    _add(client, key)
    reply = _chat(client, key, "What is the weather like today?")  # "is", "the": no match
    assert reply["memory"] == {"mode": "hybrid", "documents": []}
    assert _prompt(chat_backend) == [{"role": "user", "content": "What is the weather like today?"}]


def test_the_reply_names_each_document_it_drew_on_once_best_first(
    client: TestClient, key: str, chat_backend: ReversingBackend, settings: Settings
) -> None:
    settings.memory_chunks = 3  # several chunks shown (the default shows one)
    long_text = " ".join(f"Sentence {i} is about the forty ships." for i in range(120))
    long = _add(client, key, title="Ships of Atlantis", text=long_text)  # several chunks
    short = _add(client, key)  # "Its harbour holds forty ships."
    _add(client, key, title="Lemuria", text="Mu was the capital of Lemuria.")

    reply = _chat(client, key, "How many ships are in the harbour?")

    named = reply["memory"]["documents"]
    assert sorted(d["id"] for d in named) == sorted([long["id"], short["id"]])  # once each
    shown = _prompt(chat_backend)[0]["content"]
    assert shown.count("Document: Ships of Atlantis") >= 2 and "Lemuria" not in shown
    # best first: in the order their first chunk is shown
    firsts = [shown.index(f"Document: {d['title']}\n") for d in named]
    assert firsts == sorted(firsts)


def test_memory_per_request_overrides_the_tenant(
    client: TestClient,
    key: str,
    session: Session,
    chat_backend: ReversingBackend,
    admin_headers: dict[str, str],
) -> None:
    _add(client, key)
    tenant_id = make_tenant_id(session, key)
    asked = [{"role": "user", "content": QUESTION}]

    # weights: the request exactly as without memory
    reply = _chat(client, key, memory="weights")
    assert reply["memory"] == {"mode": "weights", "documents": []}
    assert _prompt(chat_backend) == asked

    patched = client.patch(
        f"/v1/admin/tenants/{tenant_id}", json={"memory": "weights"}, headers=admin_headers
    )
    assert patched.status_code == 200 and patched.json()["memory"] == "weights"
    assert _chat(client, key)["memory"]["mode"] == "weights" and _prompt(chat_backend) == asked
    assert len(_chat(client, key, memory="hybrid")["memory"]["documents"]) == 1
    assert _prompt(chat_backend) != asked

    # null: back to the default, hybrid
    patched = client.patch(
        f"/v1/admin/tenants/{tenant_id}", json={"memory": None}, headers=admin_headers
    )
    assert patched.json()["memory"] == "hybrid"


def test_the_base_model_uses_no_memory_unless_asked(
    client: TestClient, key: str, chat_backend: ReversingBackend
) -> None:
    _add(client, key)
    assert _chat(client, key, model="base")["memory"] == {"mode": "weights", "documents": []}
    assert len(_prompt(chat_backend)) == 1
    assert _chat(client, key, model="base", memory="hybrid")["memory"]["mode"] == "hybrid"
    assert TEXT in _prompt(chat_backend)[0]["content"]


@pytest.mark.parametrize("value", ["open-book", "", "HYBRID", 1, True])
def test_an_invalid_memory_is_422(
    client: TestClient, key: str, admin_headers: dict[str, str], value: object
) -> None:
    body = {"model": "student", "messages": [{"role": "user", "content": "hi"}], "memory": value}
    response = client.post("/v1/chat/completions", json=body, headers=auth(key))
    assert response.status_code == 422 and "memory" in response.json()["error"]["message"]
    response = client.post(
        "/v1/tenants", json={"name": "invalid-memory", "memory": value}, headers=admin_headers
    )
    assert response.status_code == 422 and "memory" in response.json()["error"]["message"]


def test_a_tenant_is_created_with_its_memory_setting(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for name, body in (("plain", {}), ("closed", {"memory": "weights"})):
        response = client.post("/v1/tenants", json={"name": name, **body}, headers=admin_headers)
        assert response.status_code == 201, response.text
    tenants = client.get("/v1/tenants", headers=admin_headers).json()
    listed = {t["name"]: t["memory"] for t in tenants}
    assert listed == {"plain": "hybrid", "closed": "weights"}


@pytest.fixture
def oai(client: TestClient, key: str) -> Iterator[openai.OpenAI]:
    yield openai.OpenAI(
        base_url="http://testserver/v1", api_key=key, http_client=client, max_retries=0
    )


def test_the_openai_client_sets_memory_through_extra_body(
    client: TestClient, key: str, oai: openai.OpenAI, chat_backend: ReversingBackend
) -> None:
    document = _add(client, key)
    messages: Any = [{"role": "user", "content": QUESTION}]

    closed = oai.chat.completions.create(
        model="student", messages=messages, extra_body={"memory": "weights"}
    )
    assert closed.model_extra == {"memory": {"mode": "weights", "documents": []}}
    assert _prompt(chat_backend) == messages

    hybrid = oai.chat.completions.create(
        model="student", messages=messages, extra_body={"memory": "hybrid"}
    )
    assert hybrid.model_extra is not None
    assert hybrid.model_extra["memory"]["documents"] == [{"id": document["id"], "title": TITLE}]
    assert _prompt(chat_backend) == open_book_messages([(TITLE, TEXT)], "", QUESTION)

    with pytest.raises(openai.UnprocessableEntityError, match="memory"):
        oai.chat.completions.create(
            model="student", messages=messages, extra_body={"memory": "everything"}
        )

    # streamed: on the last chunk only
    for usage in (False, True):
        chunks = list(
            oai.chat.completions.create(
                model="student",
                messages=messages,
                stream=True,
                stream_options={"include_usage": usage},
            )
        )
        extras = [c.model_extra or {} for c in chunks]
        assert [bool(e.get("memory")) for e in extras] == [False] * (len(chunks) - 1) + [True]
        assert extras[-1]["memory"]["documents"][0]["id"] == document["id"]
        assert (chunks[-1].usage is not None) == usage


def test_a_chunk_that_does_not_fit_the_context_is_cut(
    client: TestClient, key: str, chat_backend: ReversingBackend
) -> None:
    words = [f"word{i}" for i in range(150)]
    _add(client, key, title="Words", text=" ".join(words))
    chat_backend.context = 60  # tokens (the double counts words): 50 for the prompt

    reply = _chat(client, key, "word1 word2", max_tokens=10)

    assert reply["memory"]["documents"][0]["title"] == "Words"
    prompt = _prompt(chat_backend)
    assert sum(len(m["content"].split()) for m in prompt) == 50  # every token of the budget
    shown = prompt[0]["content"]
    assert "word0 word1" in shown and "word149" not in shown

    # no room at all: the chat goes without memory, not as an error
    chat_backend.context = 12
    reply = _chat(client, key, "word1 word2", max_tokens=10)
    assert reply["memory"]["documents"] == [] and len(_prompt(chat_backend)) == 1


def test_a_volatile_document_is_answered_from_memory_and_never_claimed(
    client: TestClient, key: str, session: Session, chat_backend: ReversingBackend
) -> None:
    prices = _add(client, key, title="Prices", text="A coffee costs 3 euros.", volatile=True)
    assert (prices["status"], prices["volatile"], prices["superseded"]) == ("memory", True, [])
    learnable = _add(client, key)
    tenant_id = make_tenant_id(session, key)

    assert _chat(client, key, "How much does a coffee cost?")["memory"]["documents"] == [
        {"id": prices["id"], "title": "Prices"}
    ]
    claimed = document_repo.claim_pending_documents(session, tenant_id=tenant_id)
    assert [d.id for d in claimed] == [learnable["id"]]
    # even made pending by hand, its flag keeps it out of every claim
    volatile = document_repo.get_document(session, tenant_id=tenant_id, document_id=prices["id"])
    assert volatile is not None
    volatile.status = DocumentStatus.pending
    session.flush()
    assert document_repo.claim_pending_documents(session, tenant_id=tenant_id) == []


def test_a_new_text_under_the_same_title_supersedes_a_volatile_document(
    client: TestClient, key: str, chat_backend: ReversingBackend
) -> None:
    old = _add(client, key, title="Prices", text="A coffee costs 3 euros.", volatile=True)
    other = _add(client, key, title="Hours", text="The coffee shop opens at 8.", volatile=True)
    new = _add(client, key, title="Prices", text="A coffee costs 4 euros.", volatile=True)

    assert new["superseded"] == [old["id"]]
    assert client.get(f"/v1/documents/{old['id']}", headers=auth(key)).status_code == 404
    reply = _chat(client, key, "coffee costs euros")
    # the best match only (one chunk by default); the other volatile document stays listed
    assert [d["id"] for d in reply["memory"]["documents"]] == [new["id"]]
    assert client.get(f"/v1/documents/{other['id']}", headers=auth(key)).status_code == 200
    shown = _prompt(chat_backend)[0]["content"]
    assert "4 euros" in shown and "3 euros" not in shown


def test_a_stream_carries_memory_on_its_last_chunk(client: TestClient, key: str) -> None:
    document = _add(client, key)
    body = {"model": "student", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    response = client.post("/v1/chat/completions", json=body, headers=auth(key))
    events = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: {")
    ]
    assert [("memory" in e) for e in events] == [False] * (len(events) - 1) + [True]
    assert events[-1]["memory"]["documents"] == [{"id": document["id"], "title": TITLE}]


def test_retrieval_is_filtered_by_tenant_in_the_store(session: Session) -> None:
    """The repository itself, beside the API: the same words in two tenants."""
    mine, _ = make_tenant(session)
    theirs, _ = make_tenant(session)
    own = make_document(session, mine, title="Harbour", text="The harbour holds forty ships.")
    make_document(session, theirs, title="Harbour", text="The harbour holds forty ships!")
    found = memory_repo.search(session, tenant_id=mine.id, terms=["harbour", "ships"], limit=10)
    assert [f.document_id for f in found] == [own.id]
    assert memory_repo.search(session, tenant_id=mine.id, terms=[], limit=10) == []


def test_chunks_are_whole_sentences_of_at_most_chunk_words() -> None:
    sentence = "This sentence has exactly seven words."
    text = " ".join([sentence] * 100)  # 700 words
    chunks = chunk_text(text)
    assert all(len(c.split()) <= CHUNK_WORDS for c in chunks)
    assert all(c.startswith("This") and c.endswith("words.") for c in chunks)
    assert " ".join(chunks) == text
    long = " ".join(["word"] * (CHUNK_WORDS * 2 + 5))  # one sentence longer than two chunks
    assert [len(c.split()) for c in chunk_text(long)] == [CHUNK_WORDS, CHUNK_WORDS, 5]
    assert chunk_text("") == []


def test_search_terms_leave_out_stop_words_and_repeats() -> None:
    assert search_terms("Topic: Atlantis\nWhat is the capital of Atlantis?") == [
        "atlantis",
        "capital",
    ]
    assert search_terms("the of and") == []
