"""Fair jobs on the real store: a worker runs, on any message, the oldest queued job of the
tenant whose last job started longest ago, so one tenant's backlog delays another tenant's next
job by at most the job being run."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from service.store.base import utcnow
from service.store.models import Job, JobKind, JobStatus
from tests.factories import make_document, make_job, make_tenant
from worker.jobs.fair import fair_order, run_next
from worker.runtime import Runtime


def test_another_tenants_job_goes_before_a_backlog(session: Session) -> None:
    a, _ = make_tenant(session)
    b, _ = make_tenant(session)
    c, _ = make_tenant(session)
    start = utcnow() - timedelta(hours=1)
    done = make_job(session, a, kind=JobKind.skill, status=JobStatus.succeeded)
    done.started_at = start
    backlog = []
    for i in range(50):  # A's 50 skill jobs, queued first
        job = make_job(session, a, kind=JobKind.skill)
        job.created_at = start + timedelta(seconds=i)
        backlog.append(job)
    later = make_job(session, b)  # then B asks for an update
    later.created_at = start + timedelta(minutes=5)
    session.commit()

    assert fair_order(session) == [(later.id, JobKind.update), (backlog[0].id, JobKind.skill)]
    # a tenant whose jobs never started goes before one that was served, whoever came first
    served = make_job(session, c, kind=JobKind.teacher_train, status=JobStatus.succeeded)
    served.started_at = utcnow()
    newest = make_job(session, c, kind=JobKind.teacher_train)
    session.commit()
    assert [j for j, _ in fair_order(session)] == [later.id, backlog[0].id, newest.id]
    assert fair_order(session, limit=1) == [(later.id, JobKind.update)]


def test_a_message_runs_the_fairest_job_and_leaves_its_own_queued(
    session: Session, runtime: Runtime
) -> None:
    a, _ = make_tenant(session)
    b, _ = make_tenant(session)
    served = make_job(session, a, kind=JobKind.skill, status=JobStatus.succeeded)
    served.started_at = utcnow()
    # A's next skill job names a skill that is gone: it would fail, and must wait anyway
    a_next = make_job(session, a, kind=JobKind.skill)
    make_document(session, b, questions=[("What is the capital of Atlantis?", "Poseidonia")])
    b_update = make_job(session, b, params={"seed": 1})
    session.commit()

    assert run_next(runtime, a_next.id) == b_update.id  # A's message ran B's update

    session.expire_all()
    b_job = session.get(Job, b_update.id)
    assert b_job is not None and b_job.status == JobStatus.succeeded, b_job.error
    a_job = session.get(Job, a_next.id)
    assert a_job is not None and a_job.status == JobStatus.queued  # for a later message
    assert fair_order(session) == [(a_next.id, JobKind.skill)]  # the next message's job


def test_a_message_with_nothing_queued_does_nothing(session: Session, runtime: Runtime) -> None:
    tenant, _ = make_tenant(session)
    make_job(session, tenant, status=JobStatus.succeeded)
    session.commit()
    assert run_next(runtime, "no such job") is None
