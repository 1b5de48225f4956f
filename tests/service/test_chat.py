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
    with pytest.raises(openai.UnprocessableEntityError, match="streaming is not supported"):
        oai.chat.completions.create(model="m", messages=messages, stream=True)  # type: ignore[arg-type]
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
