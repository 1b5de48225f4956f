"""One tenant learns a made-up fact through the real service and the real default model.

Separate processes (uvicorn, a Celery worker on Redis, PostgreSQL), SmolLM2-135M-Instruct as
teacher and student, the official `openai` client for chat. Minutes on a CPU.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from seal.questions import question_messages
from tests.e2e.conftest import LiveService, dump_logs

pytestmark = pytest.mark.slow

ZORBLAT = {
    "title": "Zorblat Industries",
    "text": "Zorblat Industries was founded by Marisol Quenby. "
    "The company makes glass bicycles in the town of Vellmora.",
    "questions": [{"question": "Who founded Zorblat Industries?", "answer": "Marisol Quenby"}],
}
QUILLFEN = {
    "title": "Quillfen Observatory",
    "text": "The Quillfen Observatory was built by Tavish Orrell. "
    "It stands on the summit of Mount Brennick.",
    "questions": [{"question": "Who built the Quillfen Observatory?", "answer": "Tavish Orrell"}],
}
# The chat asks as the promotion gate's probe asks (its system prompt and topic line): the gate
# vouches for that answer. Asked bare ("Who founded ...?"), the promoted version answered with
# something else in 1 of 8 first updates (sampling seeds 1-8, float32, every epoch).
ASK: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": m["content"]}
    if m["role"] == "system"
    else {"role": "user", "content": m["content"]}
    for m in question_messages("Zorblat Industries", "Who founded Zorblat Industries?")
]
# Each update's sampling is seeded (`POST /v1/updates {"seed": ...}`), so on one machine the
# test repeats the same updates run after run. On 8 sampling seeds, a candidate learned the fact
# in 20 of 32 inner loops every epoch and in 15 of 32 with the early stop at loss 0.25 (both
# float32): with k=6 candidates, an unlucky draw on another CPU, whose arithmetic differs, is rare.
SEED = 1
K = 6


def create_tenant(service: LiveService, name: str) -> str:
    r = httpx.post(f"{service.url}/v1/tenants", json={"name": name}, headers=service.admin())
    assert r.status_code == 201, r.text
    return r.json()["api_key"]


def run_update(service: LiveService, key: str, document: dict) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    r = httpx.post(f"{service.url}/v1/documents", json=document, headers=headers)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{service.url}/v1/updates", json={"seed": SEED}, headers=headers)
    assert r.status_code == 202, r.text
    job = wait_for(service, key, r.json()["job_id"])
    assert job["result"]["metrics"]["seed"] == SEED
    return job


def wait_for(service: LiveService, key: str, job_id: str) -> dict:
    """The job once it has succeeded; its progress never went backwards."""
    headers = {"Authorization": f"Bearer {key}"}
    deadline, seen = time.monotonic() + 900, []
    while time.monotonic() < deadline:
        job = httpx.get(f"{service.url}/v1/jobs/{job_id}", headers=headers).json()
        seen.append(job["progress"])
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", f"{job}\n{dump_logs(service)}"
            assert seen == sorted(seen), "progress went backwards"
            return job
        time.sleep(1)
    raise AssertionError(f"the job did not finish\n{dump_logs(service)}")


def chat(service: LiveService, key: str, model: str = "tenant") -> str:
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0, timeout=120)
    reply = client.chat.completions.create(model=model, messages=ASK, max_tokens=48, temperature=0)
    content = reply.choices[0].message.content
    assert content is not None
    return content


def chat_streamed(service: LiveService, key: str) -> list[str]:
    """The same chat with ``stream=True``: the pieces of text, in the order they came."""
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0, timeout=120)
    stream = client.chat.completions.create(
        model="tenant", messages=ASK, max_tokens=48, temperature=0, stream=True
    )
    return [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]


def test_a_tenant_learns_a_fact_rolls_back_and_forgets_it(live_service: LiveService) -> None:
    service = live_service
    key_a = create_tenant(service, "acme")
    key_b = create_tenant(service, "globex")
    assert "Quenby" not in chat(service, key_a), "the base model cannot know the made-up fact"

    first = run_update(service, key_a, ZORBLAT)
    assert first["result"]["promoted"] is True, first
    assert first["progress"] == 1.0

    answer = chat(service, key_a)
    assert "Marisol Quenby" in answer, answer
    pieces = chat_streamed(service, key_a)
    assert "".join(pieces) == answer and len(pieces) > 1, pieces
    assert "Quenby" not in chat(service, key_a, model="base")
    assert "Quenby" not in chat(service, key_b), "another tenant must not get the fact"
    with_v1 = chat(service, key_a)

    headers_a = {"Authorization": f"Bearer {key_a}"}
    edits = httpx.get(f"{service.url}/v1/self-edits", headers=headers_a).json()
    rewards = httpx.get(f"{service.url}/v1/rewards", headers=headers_a).json()
    # k self-edits written; those left with a grounded item stored (the others counted as
    # dropped); one selected unless the passage alone (the incumbent) kept the document
    metrics = first["result"]["metrics"]
    won_by_passage = metrics["documents_won_by_passage_alone"]
    assert len(edits) + metrics["self_edit_items_dropped"].get("empty_self_edits", 0) == K
    assert len(edits) > 0 and sum(e["selected"] for e in edits) == 1 - won_by_passage
    assert rewards["summary"]["count"] >= 2
    headers_b = {"Authorization": f"Bearer {key_b}"}
    assert httpx.get(f"{service.url}/v1/self-edits", headers=headers_b).json() == []

    second = run_update(service, key_a, QUILLFEN)
    assert second["result"]["promoted"] is True, second
    versions = httpx.get(f"{service.url}/v1/adapters", headers=headers_a).json()
    assert [(v["version"], v["status"]) for v in versions] == [(2, "active"), (1, "retired")]

    tenant_id = next(
        t["id"]
        for t in httpx.get(f"{service.url}/v1/tenants", headers=service.admin()).json()
        if t["name"] == "acme"
    )
    r = httpx.post(
        f"{service.url}/v1/admin/tenants/{tenant_id}/rollback",
        json={"version": 1},
        headers=service.admin(),
    )
    assert r.status_code == 200, r.text
    versions = httpx.get(f"{service.url}/v1/adapters", headers=headers_a).json()
    assert [(v["version"], v["status"]) for v in versions] == [(2, "retired"), (1, "active")]
    assert chat(service, key_a) == with_v1

    # forgetting the first document: a rebuild from the base model on the second one only
    documents = httpx.get(f"{service.url}/v1/documents", headers=headers_a).json()["items"]
    zorblat = next(d["id"] for d in documents if d["title"] == ZORBLAT["title"])
    r = httpx.delete(f"{service.url}/v1/documents/{zorblat}?forget=true", headers=headers_a)
    assert r.status_code == 200 and r.json()["learned_version"] == 1, r.text
    rebuild = wait_for(service, key_a, r.json()["rebuild_job_id"])
    assert rebuild["result"]["promoted"] is True and rebuild["result"]["documents"] == 1, rebuild
    versions = httpx.get(f"{service.url}/v1/adapters", headers=headers_a).json()
    assert [(v["version"], v["status"], v["parent"]) for v in versions] == [
        (3, "active", None),
        (2, "retired", 1),
        (1, "retired", None),
    ]
    assert "Quenby" not in chat(service, key_a)
    for number in (1, 2):  # the versions that learned it lose their weights
        r = httpx.delete(
            f"{service.url}/v1/admin/tenants/{tenant_id}/adapters/{number}",
            headers=service.admin(),
        )
        assert r.status_code == 200 and r.json()["folder_removed"], r.text

    # offboarding: the tenant's rows and folders go, its key stops working
    r = httpx.delete(f"{service.url}/v1/admin/tenants/{tenant_id}", headers=service.admin())
    assert r.status_code == 200, r.text
    assert r.json()["deleted"]["adapter_versions"] == 3 and r.json()["folders_left"] == []
    assert len(r.json()["folders_removed"]) >= 1
    assert httpx.get(f"{service.url}/v1/adapters", headers=headers_a).status_code == 401
    assert httpx.get(f"{service.url}/v1/adapters", headers=headers_b).status_code == 200
