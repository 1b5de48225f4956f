"""An external teacher: another SEAL instance's OpenAI-compatible chat endpoint, in a real
uvicorn process of its own (the tiny model, the embedded store), writes the self-edits."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session

from seal.generation import SampleConfig
from seal.knowledge import Teacher, write_probe_questions_many, write_self_edits_many
from seal.remote import RemoteTeacher, TeacherUnavailable
from seal.selfedit import Passage
from sealctl.stack import free_port
from service.store.models import DocumentStatus, JobKind, JobStatus, SelfEdit
from tests.conftest import ADMIN_KEY
from tests.factories import make_document, make_job, make_tenant
from tests.servers import RunningApi, embedded_api
from worker.jobs.teacher import run_teacher_round
from worker.jobs.update import run_update
from worker.runtime import Runtime

pytestmark = pytest.mark.slow

PASSAGES = [
    Passage("Zorblat Industries", "Zorblat Industries was founded by Marisol Quenby in 1931."),
    Passage("Vellmora", "Vellmora is a harbour town. Its mayor is Ada Thorne."),
]
SAMPLE = SampleConfig(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=7)


@dataclass
class Server:
    url: str
    key: str
    api: RunningApi

    def chat_requests(self) -> int:
        """Chat completions the server has answered so far (its access log)."""
        return self.api.requests("POST /v1/chat/completions")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Server]:
    with embedded_api(tmp_path_factory.mktemp("teacher-server"), tiny_model_dir) as api:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        r = httpx.post(f"{api.url}/v1/tenants", json={"name": "teacher"}, headers=admin)
        assert r.status_code == 201, r.text
        yield Server(url=f"{api.url}/v1", key=r.json()["api_key"], api=api)


def remote(server: Server, **changes: object) -> RemoteTeacher:
    options: dict = {"url": server.url, "model": "base", "api_key": server.key}
    return RemoteTeacher(**{**options, **changes})  # type: ignore[arg-type]


def test_another_instance_writes_k_seeded_self_edits_per_passage(
    server: Server, runtime: Runtime
) -> None:
    teacher = Teacher(remote=remote(server))
    before = server.chat_requests()
    done: list[tuple[int, int]] = []
    written = write_self_edits_many(
        runtime.teacher,
        PASSAGES,
        "self-qa",
        2,
        SAMPLE,
        teacher,
        on_batch=lambda d, t: done.append((d, t)),
    )
    assert [len(texts) for texts in written] == [2, 2]
    assert all(isinstance(t, str) and t for texts in written for t in texts)
    assert done == [(1, 2), (2, 2)]
    assert server.chat_requests() - before == 4  # one request per self-edit, n=1 each
    # each self-edit is the server's seeded reply: asked again, the same text
    again = write_self_edits_many(runtime.teacher, PASSAGES, "self-qa", 2, SAMPLE, teacher)
    assert again == written
    # probe questions come through the same endpoint
    before = server.chat_requests()
    write_probe_questions_many(runtime.teacher, PASSAGES[:1], 2, teacher)
    assert server.chat_requests() - before == 2


def test_an_update_job_learns_with_the_external_teachers_self_edits(
    server: Server, session: Session, runtime: Runtime
) -> None:
    external = runtime.settings.model_copy(
        update={
            "teacher_url": server.url,
            "teacher_model": "base",
            "teacher_api_key": SecretStr(server.key),
        }
    )
    runtime = Runtime(settings=external, sessions=runtime.sessions)
    tenant, _ = make_tenant(session)
    make_document(
        session,
        tenant,
        title=PASSAGES[0].title,
        text=PASSAGES[0].text,
        questions=[("Who founded Zorblat Industries?", "Marisol Quenby")],
    )
    job = make_job(session, tenant)
    session.commit()
    before = server.chat_requests()
    run_update(runtime, job.id)
    session.expire_all()
    assert job.status == JobStatus.succeeded, job.error
    edits = session.query(SelfEdit).filter_by(tenant_id=tenant.id).all()
    assert len(edits) == external.num_candidates
    assert all(e.teacher_version_id is None for e in edits)
    assert server.chat_requests() - before == external.num_candidates


def test_an_unreachable_teacher_fails_the_job_with_the_reason(
    session: Session, runtime: Runtime
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    settings = runtime.settings.model_copy(update={"teacher_url": dead, "teacher_retries": 1})
    runtime = Runtime(settings=settings, sessions=runtime.sessions)
    tenant, _ = make_tenant(session)
    document = make_document(session, tenant, text=PASSAGES[0].text)
    job = make_job(session, tenant)
    session.commit()
    with pytest.raises(TeacherUnavailable, match="did not answer after 2 tries"):
        run_update(runtime, job.id)
    session.expire_all()
    assert job.status == JobStatus.failed
    # the tenant is told what to do; the teacher's URL and the exception stay in the log
    assert job.error_code == "teacher_unavailable" and job.id in (job.error or "")
    assert dead not in (job.error or "") and "ConnectError" not in (job.error or "")
    assert document.status == DocumentStatus.pending  # nothing is lost


def test_a_refused_request_is_reported_at_once(server: Server, runtime: Runtime) -> None:
    before = server.chat_requests()
    wrong = Teacher(remote=remote(server, api_key="not-a-key", backoff_s=5.0))
    with pytest.raises(TeacherUnavailable, match="refused the request with HTTP 401"):
        write_self_edits_many(runtime.teacher, PASSAGES[:1], "self-qa", 1, SAMPLE, wrong)
    assert server.chat_requests() - before == 1  # not retried


def test_rest_em_refuses_an_external_teacher(session: Session, runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(update={"teacher_url": "http://teacher.example/v1"})
    runtime = Runtime(settings=settings, sessions=runtime.sessions)
    tenant, _ = make_tenant(session)
    job = make_job(session, tenant, kind=JobKind.teacher_train)
    session.commit()
    with pytest.raises(ValueError, match="whose weights this service cannot train"):
        run_teacher_round(runtime, job.id)
    session.expire_all()
    assert job.status == JobStatus.failed and job.error_code == "external_teacher"
    assert "external teacher" in (job.error or "")
