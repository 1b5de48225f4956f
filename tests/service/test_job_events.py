"""``GET /v1/jobs/{id}/events``: a job's story as its tenant reads it, and nobody else."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.store.models import JobStatus
from service.store.repositories import jobs as job_repo
from tests.factories import auth, make_job, make_tenant


def test_a_jobs_events_are_listed_oldest_first_to_its_tenant_only(
    client: TestClient, session: Session
) -> None:
    tenant, key = make_tenant(session)
    _, other = make_tenant(session)
    job = make_job(session, tenant, status=JobStatus.running)
    for n in range(3):
        job_repo.add_job_event(
            session,
            job_id=job.id,
            tenant_id=tenant.id,
            message=f"stage {n}",
            progress=n / 4,
            data={"n": n},
        )
    job_repo.finish_job(session, job_id=job.id, status=JobStatus.failed, error="out of memory")
    session.commit()
    url = f"/v1/jobs/{job.id}/events"
    page = client.get(url, headers=auth(key)).json()
    assert page["total"] == 4 and page["limit"] == 100
    assert [e["message"] for e in page["items"]] == [
        "stage 0",
        "stage 1",
        "stage 2",
        "failed: out of memory",
    ]
    assert page["items"][1]["data"] == {"n": 1} and page["items"][1]["progress"] == 0.25
    second = client.get(url, params={"limit": 2, "offset": 2}, headers=auth(key)).json()
    assert [e["message"] for e in second["items"]] == ["stage 2", "failed: out of memory"]
    assert client.get(url, headers=auth(other)).status_code == 404
    assert client.get("/v1/jobs/nope/events", headers=auth(key)).status_code == 404
    assert client.get(url, params={"limit": 0}, headers=auth(key)).status_code == 422
