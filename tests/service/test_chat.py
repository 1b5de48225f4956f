import json
from collections.abc import Iterator

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.inference import AdapterRef
from service.store.models import Completion, VersionStatus
from tests.doubles import ReversingBackend
from tests.factories import auth, make_adapter_version, make_tenant

STREAMED = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "capital the is what"},
]


@pytest.fixture
def tenant_key(session: Session) -> str:
    return make_tenant(session)[1]


@pytest.fixture
def oai(client: TestClient, tenant_key: str) -> Iterator[openai.OpenAI]:
    """The official client, talking to the app through the test client's transport."""
    yield openai.OpenAI(
        base_url="http://testserver/v1", api_key=tenant_key, http_client=client, max_retries=0
    )


def test_openai_client_gets_a_chat_completion(
    oai: openai.OpenAI, chat_backend: ReversingBackend, session: Session
) -> None:
    completion = oai.chat.completions.create(
        model="student",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "capital the is what"},
        ],
        max_tokens=16,
        seed=7,
        stop=["\n"],
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "student"
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "what is the capital"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 4

    [call] = chat_backend.calls
    assert call["adapter"] is None  # no active adapter yet: the base model
    assert (call["max_tokens"], call["temperature"], call["seed"], call["stop"]) == (
        16, 0.0, 7, ["\n"],
    )  # fmt: skip
    stored = session.scalars(select(Completion).where(Completion.id == completion.id)).one()
    assert stored.output == "what is the capital"
    assert stored.messages[1] == {"role": "user", "content": "capital the is what"}


def test_active_adapter_serves_unless_base_is_asked_for(
    oai: openai.OpenAI, chat_backend: ReversingBackend, session: Session, tenant_key: str
) -> None:
    from service.store.repositories import tenants as tenant_repo

    tenant = tenant_repo.tenant_for_api_key(session, key=tenant_key)
    assert tenant is not None
    version = make_adapter_version(
        session, tenant, status=VersionStatus.active, artifact_uri="/adapters/t/1"
    )
    messages = [{"role": "user", "content": "hello"}]
    oai.chat.completions.create(model="my-model", messages=messages)  # type: ignore[arg-type]
    oai.chat.completions.create(model="base", messages=messages)  # type: ignore[arg-type]
    assert chat_backend.calls[0]["adapter"] == AdapterRef(
        uri="/adapters/t/1", checksum="sha256:abc"
    )
    assert chat_backend.calls[1]["adapter"] is None
    rows = session.scalars(select(Completion).where(Completion.tenant_id == tenant.id)).all()
    assert {r.model: r.adapter_version_id for r in rows} == {"my-model": version.id, "base": None}


def test_max_tokens_cuts_with_finish_reason_length(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="student",
        messages=[{"role": "user", "content": "a b c d e"}],
        max_completion_tokens=2,
    )
    assert completion.choices[0].message.content == "e d"
    assert completion.choices[0].finish_reason == "length"


def test_unsupported_options_are_422(oai: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "hello"}]
    with pytest.raises(openai.UnprocessableEntityError, match="only n=1"):
        oai.chat.completions.create(model="m", messages=messages, n=2)  # type: ignore[arg-type]
    with pytest.raises(openai.UnprocessableEntityError, match="messages"):
        oai.chat.completions.create(model="m", messages=[])


def test_chat_needs_a_valid_key(client: TestClient) -> None:
    bad = openai.OpenAI(
        base_url="http://testserver/v1", api_key="seal-wrong", http_client=client, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError, match="invalid"):
        bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_content_parts_and_developer_role(
    client: TestClient, tenant_key: str, chat_backend: ReversingBackend
) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "student",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "one two"}]},
            ],
            "user": "ignored-field",
        },
        headers=auth(tenant_key),
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "two one"
    assert chat_backend.calls[0]["messages"][0]["role"] == "system"


def test_a_streamed_completion_with_the_openai_client(
    oai: openai.OpenAI, chat_backend: ReversingBackend, session: Session
) -> None:
    stream = oai.chat.completions.create(
        model="student",
        messages=STREAMED,  # type: ignore[arg-type]
        max_tokens=16,
        seed=7,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["what", " is", " the", " capital"]  # one event per piece, in order
    [finish] = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == "stop"
    # the usage comes last, alone, as OpenAI sends it
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])

    [call] = chat_backend.calls
    assert call["stream"] and (call["max_tokens"], call["seed"]) == (16, 7)
    # recorded under the id the chunks carried, so feedback can refer to it
    stored = session.scalars(select(Completion).where(Completion.id == chunks[0].id)).one()
    assert stored.output == "what is the capital"
    assert stored.completion_tokens == 4
    feedback = oai.post(
        "/feedback", body={"completion_id": chunks[0].id, "rating": 1}, cast_to=object
    )
    assert isinstance(feedback, dict) and feedback["completion_id"] == chunks[0].id


def test_a_stream_ends_with_done_and_a_length_cut(client: TestClient, tenant_key: str) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "student",
            "messages": [{"role": "user", "content": "a b c d e"}],
            "max_tokens": 2,
            "stream": True,
        },
        headers=auth(tenant_key),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "e d"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in c for c in chunks)  # not asked for


def test_a_stream_that_cannot_start_is_an_error_response(
    client: TestClient, session: Session, tenant_key: str, chat_backend: ReversingBackend
) -> None:
    def broken(request: object) -> Iterator[str]:
        raise FileNotFoundError("adapter folder /gone is missing")
        yield ""

    chat_backend.stream = broken  # type: ignore[method-assign]
    with pytest.raises(FileNotFoundError, match="/gone"):
        client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            headers=auth(tenant_key),
        )
    assert session.scalar(select(Completion.id)) is None


def test_an_error_halfway_through_a_stream_is_its_last_event(
    client: TestClient, session: Session, tenant_key: str, chat_backend: ReversingBackend
) -> None:
    closed: list[bool] = []

    def failing(request: object) -> Iterator[str]:
        try:
            yield "Marisol"
            raise RuntimeError("the decoding thread died")
        finally:
            closed.append(True)

    chat_backend.stream = failing  # type: ignore[method-assign]
    response = client.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers=auth(tenant_key),
    )
    assert response.status_code == 200  # the response had started
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "Marisol"
    error = json.loads(events[-1])["error"]
    completion_id = json.loads(events[1])["id"]
    # the client is told what to quote, never the exception's text (that goes to the log)
    assert error["type"] == "server_error" and completion_id in error["message"]
    assert "decoding thread" not in error["message"]
    assert "[DONE]" not in events and closed == [True]
    assert session.scalar(select(Completion.id)) is None  # an unfinished reply is not recorded
