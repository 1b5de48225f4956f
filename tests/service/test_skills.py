"""Skills through the API: creating one from examples (and the job that learns it), the limits,
adding examples, deleting, isolation between tenants, chat with ``"model": "skill:<name>"``
and the admin's rollback of a skill. Versions are made through the repository, as a skill job
would record them."""

from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from seal.skills.tasks import Demo, SkillTask
from seal.skills.ttt import SkillScale, prompt_messages
from service.domain import skills as skill_domain
from service.domain.errors import Conflict
from service.enqueue import SKILL_TASK, task_for
from service.inference import AdapterRef
from service.settings import Settings
from service.store.db import make_sessionmaker, session_scope
from service.store.models import (
    Completion,
    Job,
    JobKind,
    JobStatus,
    Skill,
    SkillExample,
    SkillSelfEdit,
    SkillVersion,
    TeacherDomain,
    Tenant,
    VersionStatus,
)
from service.store.repositories import jobs as job_repo
from service.store.repositories import skills as skill_repo
from service.store.repositories import teachers as teacher_repo
from tests.doubles import ReversingBackend
from tests.factories import (
    auth,
    count_rows,
    make_adapter_version,
    make_skill,
    make_skill_version,
    make_teacher_version,
    make_tenant,
    queued_tasks,
    second_waits,
)

EXAMPLES = [
    {"input": "red green blue", "output": "blue green red"},
    {"input": "one two", "output": "two one"},
    {"input": [[0, 1], [2, 3]], "output": [[3, 2], [1, 0]]},
]


def _create(client: TestClient, key: str, **body: object) -> dict:
    response = client.post(
        "/v1/skills", json={"name": "reverse", "examples": EXAMPLES, **body}, headers=auth(key)
    )
    assert response.status_code == 201, response.text
    return response.json()


def _finish(session: Session, job_id: str) -> None:
    job_repo.finish_job(session, job_id=job_id, status=JobStatus.succeeded)
    session.commit()


def test_create_a_skill_and_the_job_that_learns_it(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    _tenant, key = make_tenant(session)
    body = _create(client, key, description="Reverses the order of words or cells.")
    skill, job = body["skill"], body["job"]
    assert (skill["name"], skill["examples"], skill["active_version"]) == ("reverse", 3, None)
    assert skill["description"] == "Reverses the order of words or cells."
    assert (job["kind"], job["status"], job["skill_id"]) == ("skill", "queued", skill["id"])
    assert skill["job"]["id"] == job["id"]
    # sent after the commit, by the name the worker registers
    assert queued_tasks(broker) == [(SKILL_TASK, {"job_id": job["id"]})]
    assert SKILL_TASK == "seal.skill" == task_for(JobKind.skill)

    examples = client.get(f"/v1/skills/{skill['id']}/examples", headers=auth(key)).json()
    assert [(e["input"], e["output"]) for e in examples] == [
        ("red green blue", "blue green red"),
        ("one two", "two one"),
        ("01\n23", "32\n10"),  # a grid is kept as its rows of digits
    ]
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth(key)).json()["skill_id"] == skill["id"]


def test_a_repeated_example_is_stored_once(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    body = _create(client, key, examples=[*EXAMPLES, EXAMPLES[0]])
    assert body["skill"]["examples"] == 3
    assert count_rows(session, SkillExample, skill_id=body["skill"]["id"]) == 3


def test_every_limit_is_a_422_that_says_what_is_wrong(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    _tenant, key = make_tenant(session)
    pair = {"input": "a", "output": "b"}
    many = [{"input": f"in {i}", "output": f"out {i}"} for i in range(65)]
    cases = [
        ({"name": "x", "examples": [pair]}, "body.examples: List should have at least 2 items"),
        ({"name": "x", "examples": many}, "body.examples: List should have at most 64 items"),
        ({"name": "x", "examples": [pair, pair]}, "at least 2 different examples"),
        (
            {"name": "x", "examples": [pair, {"input": "a" * 4001, "output": "b"}]},
            "body.examples.1.input: String should have at most 4000 characters",
        ),
        (
            {"name": "x", "examples": [pair, {"input": "  ", "output": "b"}]},
            "body.examples.1.input: String should have at least 1 character",
        ),
        (
            {"name": "x", "examples": [pair, {"input": "a", "output": "b" * 4001}]},
            "body.examples.1.output: String should have at most 4000 characters",
        ),
        (
            {"name": "x", "examples": [pair, {"input": "a"}]},
            "body.examples.1.output: Field required",
        ),
        ({"name": "x", "examples": [pair], "extra": 1}, "body.extra: Extra inputs"),
        (
            {"name": "x", "description": "d" * 2001, "examples": [pair, pair]},
            "body.description: String should have at most 2000 characters",
        ),
        ({"examples": [pair, pair]}, "body.name: Field required"),
        ({"name": "a" * 65, "examples": EXAMPLES}, "body.name: String should have at most 64"),
    ]
    for name in ("Reverse", "-x", "_x", "with space", "", "x/y", "é"):
        cases.append(({"name": name, "examples": EXAMPLES}, "body.name: String should match"))
    grids = [
        ([[1, 2], [3]], "the same non-zero length"),
        ([[1, 10]], "cells are integers 0-9"),
        ([[1, -1]], "cells are integers 0-9"),
        ([[True, 0]], "cells are integers 0-9"),
        ([["1"]], "cells are integers 0-9"),
        ([[1.5]], "cells are integers 0-9"),
        ([], "the same non-zero length"),
        ([[]], "the same non-zero length"),
        ([1, 2], "a list of rows"),
        ([[0] * 31], "at most 30 rows of 30 cells"),
        ([[0]] * 31, "at most 30 rows of 30 cells"),
    ]
    for grid, message in grids:
        example = {"input": grid, "output": [[0]]}
        cases.append(({"name": "x", "examples": [pair, example]}, message))
    for payload, message in cases:
        response = client.post("/v1/skills", json=payload, headers=auth(key))
        assert response.status_code == 422, (payload, response.text)
        assert message in response.json()["error"]["message"], (payload, response.json())
        assert response.json()["error"]["type"] == "invalid_request"
    assert count_rows(session, Skill) == 0 and queued_tasks(broker) == []


def test_names_that_are_allowed(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    for name in ("a", "0", "invoice-lines", "v1.2_x", "a" * 64):
        assert _create(client, key, name=name)["skill"]["name"] == name


def test_a_taken_name_is_a_conflict_within_a_tenant_only(
    client: TestClient, session: Session
) -> None:
    _tenant, key = make_tenant(session)
    _other, other_key = make_tenant(session)
    first = _create(client, key)
    again = client.post(
        "/v1/skills", json={"name": "reverse", "examples": EXAMPLES}, headers=auth(key)
    )
    assert again.status_code == 409, again.text
    assert "'reverse' already exists" in again.json()["error"]["message"]
    assert _create(client, other_key)["skill"]["id"] != first["skill"]["id"]


def test_list_and_get_skills_with_their_versions(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    learned = make_skill(session, tenant, name="learned")
    v1 = make_skill_version(session, learned, status=VersionStatus.active)
    config = {"data_generation": {"use_basic_augmentations": True}, "training": {"lr": 1e-4}}
    make_skill_version(
        session, learned, parent=v1, status=VersionStatus.active, config=config,
        metrics={"loo_accuracy": 1.0},
    )  # fmt: skip
    make_skill_version(session, learned, status=VersionStatus.rejected)
    session.commit()
    queued = _create(client, key, name="queued")["skill"]

    listed = client.get("/v1/skills", headers=auth(key)).json()
    assert [(s["name"], s["examples"], s["active_version"]) for s in listed] == [
        ("learned", 2, 2),
        ("queued", 3, None),
    ]
    assert listed[0]["job"] is None and listed[1]["job"]["status"] == "queued"
    assert listed[1]["id"] == queued["id"]

    detail = client.get(f"/v1/skills/{learned.id}", headers=auth(key)).json()
    versions = [(v["version"], v["status"], v["parent"]) for v in detail["versions"]]
    assert versions == [(3, "rejected", None), (2, "active", 1), (1, "retired", None)]
    assert detail["versions"][1]["config"] == config
    assert detail["versions"][1]["metrics"] == {"loo_accuracy": 1.0}
    assert detail["versions"][1]["checksum"] == "sha256:skill"
    assert detail["versions"][1]["promoted_at"] is not None
    assert client.get(f"/v1/skills/{queued['id']}", headers=auth(key)).json()["versions"] == []
    assert client.get("/v1/skills/nope", headers=auth(key)).status_code == 404


def test_add_examples_learns_a_new_version(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    _tenant, key = make_tenant(session)
    body = _create(client, key)
    skill_id, first_job = body["skill"]["id"], body["job"]["id"]
    url = f"/v1/skills/{skill_id}/examples"
    new = {"input": "up down", "output": "down up"}

    # while its job is queued (then running), nothing is added
    busy = client.post(url, json={"examples": [new]}, headers=auth(key))
    assert busy.status_code == 409, busy.text
    assert f"being learned by job {first_job}" in busy.json()["error"]["message"]
    job_repo.start_job(session, job_id=first_job)
    session.commit()
    assert client.post(url, json={"examples": [new]}, headers=auth(key)).status_code == 409
    assert count_rows(session, SkillExample, skill_id=skill_id) == 3
    _finish(session, first_job)

    response = client.post(url, json={"examples": [EXAMPLES[0], new, new]}, headers=auth(key))
    assert response.status_code == 202, response.text
    skill, job = response.json()["skill"], response.json()["job"]
    assert (skill["examples"], job["status"], job["kind"]) == (4, "queued", "skill")
    assert skill["updated_at"] > body["skill"]["updated_at"]
    sent = {(name, kwargs["job_id"]) for name, kwargs in queued_tasks(broker)}
    assert sent == {(SKILL_TASK, first_job), (SKILL_TASK, job["id"])}
    inputs = [e["input"] for e in client.get(url, headers=auth(key)).json()]
    assert inputs == ["red green blue", "one two", "01\n23", "up down"]  # oldest first

    _finish(session, job["id"])
    known = client.post(url, json={"examples": [new]}, headers=auth(key))
    assert known.status_code == 409 and "nothing to learn" in known.json()["error"]["message"]
    assert len(queued_tasks(broker)) == 2
    ragged = [{"input": [[1], [1, 2]], "output": "x"}]
    payloads: list[dict[str, object]] = [{"examples": []}, {"examples": ragged}]
    for payload in payloads:
        assert client.post(url, json=payload, headers=auth(key)).status_code == 422


def test_a_skill_keeps_at_most_200_examples(client: TestClient, session: Session) -> None:
    tenant, key = make_tenant(session)
    skill = make_skill(session, tenant, examples=[(f"in {i}", f"out {i}") for i in range(190)])
    session.commit()
    batch = [{"input": f"new {i}", "output": str(i)} for i in range(11)]
    url = f"/v1/skills/{skill.id}/examples"
    response = client.post(url, json={"examples": batch}, headers=auth(key))
    assert response.status_code == 422, response.text
    assert "at most 200 examples" in response.json()["error"]["message"]
    assert "has 190 and 11 of these are new" in response.json()["error"]["message"]
    assert count_rows(session, Job, skill_id=skill.id) == 0
    # ten more fit, and a repeated one does not count
    response = client.post(url, json={"examples": [*batch[:10], batch[0]]}, headers=auth(key))
    assert response.status_code == 202, response.text
    assert response.json()["skill"]["examples"] == 200


def test_delete_a_skill_with_its_versions_and_their_folders(
    client: TestClient,
    session: Session,
    settings: Settings,
    tmp_path: Path,
    chat_backend: ReversingBackend,
) -> None:
    tenant, key = make_tenant(session)
    skill = make_skill(session, tenant, name="reverse")
    own = skill_domain.skill_folder(settings, tenant.id, skill.id)
    # two versions in the skill's folder (and a half-written one), one elsewhere in the
    # adapter folder, one outside it
    inside = [own / "1", own / "2", own / ".3.partial", settings.resolved_adapter_dir / "old"]
    outside = tmp_path / "elsewhere"
    for folder in [*inside, outside]:
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
    v1 = make_skill_version(session, skill, artifact_uri=str(inside[0]))
    make_skill_version(session, skill, parent=v1, artifact_uri=str(inside[1]))
    make_skill_version(session, skill, artifact_uri=str(inside[3]), status=VersionStatus.retired)
    make_skill_version(session, skill, artifact_uri=str(outside), status=VersionStatus.active)
    skill_repo.add_skill_self_edit(session, skill=skill, text="{}", config=None, error="no keys")
    job, _ = skill_repo.create_skill_job(session, skill=skill)
    keep = make_skill(session, tenant, name="keep")
    session.commit()
    skill_id, keep_id, job_id = skill.id, keep.id, job.id
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "skill:reverse", "messages": [{"role": "user", "content": "a b"}]},
        headers=auth(key),
    )
    assert chat.status_code == 200, chat.text

    response = client.delete(f"/v1/skills/{skill_id}", headers=auth(key))
    assert response.status_code == 204 and response.content == b""
    assert not own.exists() and not any(folder.exists() for folder in inside)
    assert outside.exists()  # not in the adapter folder: left alone
    session.expire_all()
    for model in (SkillExample, SkillVersion, SkillSelfEdit, Job):
        assert count_rows(session, model, skill_id=skill_id) == 0, model
    assert session.get(Job, job_id) is None
    completion = session.get(Completion, chat.json()["id"])
    assert completion is not None and completion.skill_version_id is None  # stays, unlinked
    assert client.get(f"/v1/skills/{skill_id}", headers=auth(key)).status_code == 404
    assert client.delete(f"/v1/skills/{skill_id}", headers=auth(key)).status_code == 404
    assert [s["name"] for s in client.get("/v1/skills", headers=auth(key)).json()] == ["keep"]
    assert count_rows(session, SkillExample, skill_id=keep_id) == 2


def test_skills_are_isolated_between_tenants(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    owner, owner_key = make_tenant(session)
    other, other_key = make_tenant(session)
    skill = make_skill(session, owner, name="private")
    make_skill_version(session, skill, status=VersionStatus.active)
    session.commit()
    theirs = auth(other_key)
    new = {"examples": [{"input": "x", "output": "y"}]}
    responses = [
        client.get(f"/v1/skills/{skill.id}", headers=theirs),
        client.delete(f"/v1/skills/{skill.id}", headers=theirs),
        client.get(f"/v1/skills/{skill.id}/examples", headers=theirs),
        client.post(f"/v1/skills/{skill.id}/examples", json=new, headers=theirs),
        client.post(
            "/v1/chat/completions",
            json={"model": "skill:private", "messages": [{"role": "user", "content": "x"}]},
            headers=theirs,
        ),
        client.post(
            f"/v1/admin/tenants/{other.id}/skills/{skill.id}/rollback",
            json={"version": 0},
            headers=admin_headers,
        ),
    ]
    for response in responses:
        assert response.status_code == 404, (response.request.url, response.text)
        assert response.json()["error"]["type"] == "not_found"
    assert client.get("/v1/skills", headers=theirs).json() == []
    # nothing of it changed
    assert client.get(f"/v1/skills/{skill.id}", headers=auth(owner_key)).status_code == 200
    session.expire_all()
    assert count_rows(session, SkillExample, skill_id=skill.id) == 2
    active = skill_repo.active_skill_version(session, skill_id=skill.id)
    assert active is not None and active.number == 1


def _reverse_skill(session: Session, tenant: Tenant) -> tuple[Skill, SkillVersion]:
    skill = make_skill(session, tenant, name="reverse", description="Reverse the words.")
    version = make_skill_version(
        session, skill, artifact_uri="/adapters/skills/reverse/1", status=VersionStatus.active
    )
    return skill, version


def test_chat_with_a_skill_uses_its_version_alone_and_its_examples(
    client: TestClient, session: Session, chat_backend: ReversingBackend
) -> None:
    tenant, key = make_tenant(session)
    adapter = make_adapter_version(session, tenant, status=VersionStatus.active)
    _skill, version = _reverse_skill(session, tenant)
    session.commit()
    messages = [
        {"role": "system", "content": "Ignored: the skill's prompt replaces it."},
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": "left middle right"},
    ]
    response = client.post(
        "/v1/chat/completions",
        json={"model": "skill:reverse", "messages": messages, "max_tokens": 8},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "skill:reverse"
    assert response.json()["choices"][0]["message"]["content"] == "right middle left"

    [call] = chat_backend.calls
    assert call["adapter"] == AdapterRef(uri="/adapters/skills/reverse/1", checksum="sha256:skill")
    demos = (Demo("one two", "two one"), Demo("a b c", "c b a"))
    task = SkillTask(name="reverse", demos=demos, description="Reverse the words.")
    assert call["messages"] == prompt_messages(task, demos, "left middle right")
    assert call["max_tokens"] == 8
    stored = session.get(Completion, response.json()["id"])
    assert stored is not None
    assert (stored.skill_version_id, stored.adapter_version_id) == (version.id, None)
    assert stored.messages == call["messages"]

    # any other model name still gets the tenant's adapter
    plain = client.post(
        "/v1/chat/completions",
        json={"model": "student", "messages": [{"role": "user", "content": "hi"}]},
        headers=auth(key),
    )
    assert plain.status_code == 200
    assert chat_backend.calls[1]["adapter"] == AdapterRef(uri="/adapters/x", checksum="sha256:abc")
    recorded = session.get(Completion, plain.json()["id"])
    assert recorded is not None and recorded.adapter_version_id == adapter.id


def test_a_streamed_chat_with_a_skill(
    client: TestClient, session: Session, chat_backend: ReversingBackend
) -> None:
    tenant, key = make_tenant(session)
    _skill, version = _reverse_skill(session, tenant)
    session.commit()
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "skill:reverse",
            "messages": [{"role": "user", "content": "x y"}],
            "stream": True,
        },
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    assert response.text.endswith("data: [DONE]\n\n")
    assert chat_backend.calls[0]["adapter"].uri == "/adapters/skills/reverse/1"
    stored = session.scalars(select(Completion)).one()
    assert (stored.output, stored.skill_version_id) == ("y x", version.id)


def test_chat_with_a_skill_it_cannot_answer(
    client: TestClient, session: Session, chat_backend: ReversingBackend
) -> None:
    _, key = make_tenant(session)
    created = _create(client, key)  # its job is queued: no version yet
    skill = session.get(Skill, created["skill"]["id"])
    assert skill is not None

    def chat(model: str, messages: list[dict[str, str]] | None = None) -> dict:
        response = client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": messages or [{"role": "user", "content": "x"}]},
            headers=auth(key),
        )
        return {"status": response.status_code, **response.json()["error"]}

    unknown = chat("skill:nope")
    assert (unknown["status"], unknown["message"]) == (404, "no skill named 'nope'")
    assert chat("skill:")["status"] == 404
    waiting = chat("skill:reverse")
    assert waiting["status"] == 409
    assert f"its job {created['job']['id']} is queued" in waiting["message"]

    make_skill_version(session, skill, status=VersionStatus.active)
    session.commit()
    no_user = chat("skill:reverse", [{"role": "system", "content": "only a system message"}])
    assert no_user["status"] == 422 and "needs a user message" in no_user["message"]
    skill_repo.promote_skill_version(session, skill_id=skill.id, version=None)  # the admin took it
    session.commit()
    assert chat("skill:reverse")["status"] == 409
    assert chat_backend.calls == []
    assert session.scalar(select(Completion.id)) is None


def test_the_context_is_the_newest_examples_that_fit(session: Session, settings: Settings) -> None:
    tenant, _key = make_tenant(session)
    long = [(f"{i} " + "x" * 300, f"{i} " + "y" * 100) for i in range(5)]  # ~405 chars each
    skill = make_skill(session, tenant, name="long", examples=long)
    make_skill_version(session, skill, status=VersionStatus.active)
    prompt = skill_domain.skill_prompt(session, settings, tenant, "long", "query")
    # the default scale's 512 characters hold one of them: the newest
    assert SkillScale().max_seq_len == 512
    demos = (Demo(*long[4]),)
    assert prompt.messages == prompt_messages(SkillTask("long", demos), demos, "query")
    huge = skill_domain.skill_prompt(session, settings, tenant, "long", "q" * 512)
    assert huge.messages == prompt_messages(SkillTask("long", ()), (), "q" * 512)
    # at the paper's scale (8192 tokens) all five fit
    paper = settings.model_copy(update={"skill_scale": "paper"})
    every = skill_domain.skill_prompt(session, paper, tenant, "long", "query")
    all_five = tuple(Demo(*pair) for pair in long)
    assert every.messages == prompt_messages(SkillTask("long", all_five), all_five, "query")


def _three_versions(session: Session, skill: Skill) -> None:
    """v1 retired, v2 active (child of v1), v3 rejected (child of v2), v4 without weights."""
    v1 = make_skill_version(session, skill, status=VersionStatus.active)
    v2 = make_skill_version(session, skill, parent=v1, status=VersionStatus.active)
    make_skill_version(session, skill, parent=v2, status=VersionStatus.rejected)
    make_skill_version(session, skill, artifact_uri=None)


@pytest.mark.parametrize("number", [1, 0])
def test_admin_rolls_a_skill_back(
    client: TestClient, session: Session, admin_headers: dict[str, str], number: int
) -> None:
    tenant, _key = make_tenant(session)
    skill = make_skill(session, tenant)
    _three_versions(session, skill)
    session.commit()
    url = f"/v1/admin/tenants/{tenant.id}/skills/{skill.id}/rollback"
    response = client.post(url, json={"version": number}, headers=admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["previous"]["version"] == 2 and body["previous"]["status"] == "retired"
    if number:
        assert (body["active"]["version"], body["active"]["status"]) == (1, "active")
    else:
        assert body["active"] is None
    session.expire_all()
    active = skill_repo.active_skill_version(session, skill_id=skill.id)
    assert (active.number if active else 0) == number


def test_skill_rollback_errors(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    tenant, key = make_tenant(session)
    skill = make_skill(session, tenant)
    _three_versions(session, skill)
    session.commit()
    url = f"/v1/admin/tenants/{tenant.id}/skills/{skill.id}/rollback"

    def rollback(version: object, target: str = url, headers: dict[str, str] = admin_headers):
        return client.post(target, json={"version": version}, headers=headers)

    rejected = rollback(3)
    assert rejected.status_code == 409 and "rejected" in rejected.json()["error"]["message"]
    weightless = rollback(4)
    assert weightless.status_code == 410 and "no artifact" in weightless.json()["error"]["message"]
    assert rollback(9).status_code == 404
    assert rollback(-1).status_code == 422
    assert rollback(1, headers=auth(key)).status_code == 401
    assert rollback(1, f"/v1/admin/tenants/nope/skills/{skill.id}/rollback").status_code == 404
    assert rollback(1, f"/v1/admin/tenants/{tenant.id}/skills/nope/rollback").status_code == 404
    session.expire_all()
    active = skill_repo.active_skill_version(session, skill_id=skill.id)
    assert active is not None and active.number == 2  # unchanged


def test_admin_rolls_back_the_teacher_of_skills_apart_from_the_documents_one(
    client: TestClient, session: Session, admin_headers: dict[str, str]
) -> None:
    documents = make_teacher_version(session, artifact_uri="/t/d1", status=VersionStatus.active)
    skills = [
        teacher_repo.create_teacher_version(
            session, tenant_id=None, parent_id=None, artifact_uri=f"/t/s{n}", domain=domain
        )
        for n, domain in ((1, TeacherDomain.skills), (2, TeacherDomain.skills))
    ]
    teacher_repo.promote_teacher_version(session, version=skills[1])
    session.commit()
    url = "/v1/admin/teachers/rollback"
    response = client.post(url, json={"version": 1, "domain": "skills"}, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert (response.json()["active"]["version"], response.json()["previous"]["version"]) == (1, 2)
    session.expire_all()
    active = teacher_repo.active_teacher_version(
        session, tenant_id=None, domain=TeacherDomain.skills
    )
    assert active is not None and active.id == skills[0].id
    assert teacher_repo.active_teacher_version(session, tenant_id=None) == documents
    missing = client.post(url, json={"version": 2, "domain": "documents"}, headers=admin_headers)
    assert missing.status_code == 404 and "of documents" in missing.json()["error"]["message"]
    bad = client.post(url, json={"version": 1, "domain": "grids"}, headers=admin_headers)
    assert bad.status_code == 422


def test_two_requests_adding_examples_at_once_learn_once(engine: Engine) -> None:
    """Two real transactions, committed, on each backend: the second request waits for the
    first (SQLite: its write lock; PostgreSQL: the open-job index), then finds the job the
    first opened and saves nothing."""
    factory = make_sessionmaker(engine, write=True)
    with session_scope(factory) as session:
        tenant, _key = make_tenant(session)
        tenant_id, skill_id = tenant.id, make_skill(session, tenant).id

    def add(session: Session, pair: tuple[str, str]) -> str:
        owner = session.get(Tenant, tenant_id)
        assert owner is not None
        return skill_domain.add_examples(session, owner, skill_id, [pair]).job.id

    def second() -> str:
        try:
            with session_scope(factory) as session:
                return add(session, ("p", "q"))
        except Conflict as exc:
            return exc.message

    try:
        opened: list[str] = []
        refused = second_waits(factory, lambda s: opened.append(add(s, ("x", "y"))), second)
        assert f"being learned by job {opened[0]}" in refused
        with session_scope(factory) as session:
            examples = skill_repo.list_examples(session, skill_id=skill_id)
            assert [e.input for e in examples] == ["one two", "a b c", "x"]
            assert count_rows(session, Job, skill_id=skill_id) == 1
    finally:
        with session_scope(factory) as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))
