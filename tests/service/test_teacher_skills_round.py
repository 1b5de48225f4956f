"""A tenant's teacher round of the skills domain through the API: its own job, beside a
documents round."""

import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.enqueue import TEACHER_ROUND_TASK
from service.store.models import JobKind
from service.store.repositories import jobs as job_repo
from tests.factories import auth, make_tenant
from tests.service.test_updates_and_jobs import queued_tasks

ROUNDS = "/v1/teacher/rounds"


def test_a_skills_round_is_a_job_of_its_own_domain(
    client: TestClient, session: Session, broker: redis.Redis
) -> None:
    _tenant, key = make_tenant(session)
    documents = client.post(ROUNDS, headers=auth(key)).json()
    skills = client.post(ROUNDS, headers=auth(key), json={"domain": "skills"})
    assert skills.status_code == 202, skills.text
    assert skills.json()["job_id"] != documents["job_id"]  # an open documents round is no answer
    again = client.post(ROUNDS, headers=auth(key), json={"domain": "skills"}).json()
    assert again["job_id"] == skills.json()["job_id"]
    assert client.post(ROUNDS, headers=auth(key), json={}).json() == documents
    job = job_repo.get_job(session, job_id=skills.json()["job_id"])
    assert job is not None
    assert (job.kind, job.params) == (JobKind.teacher_train, {"domain": "skills"})
    sent = sorted(kwargs["job_id"] for name, kwargs in queued_tasks(broker))
    assert sent == sorted([documents["job_id"], skills.json()["job_id"]])  # each sent once
    assert {name for name, _ in queued_tasks(broker)} == {TEACHER_ROUND_TASK}


def test_an_unknown_domain_is_refused(client: TestClient, session: Session) -> None:
    _tenant, key = make_tenant(session)
    response = client.post(ROUNDS, headers=auth(key), json={"domain": "poetry"})
    assert response.status_code == 422, response.text
