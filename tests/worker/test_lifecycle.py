"""The job lifecycle every job runs through: attempts, heartbeat, progress, cancellation,
failure, and an attempt that finds itself superseded. Real transactions, committed, on each
backend (the heartbeat writes from a thread of its own)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from seal.remote import TeacherUnavailable
from service.settings import Settings
from service.store.db import make_sessionmaker, session_scope
from service.store.models import Job, JobStatus, Tenant
from service.store.repositories import jobs as job_repo
from tests.factories import make_job, make_tenant
from worker.jobs import lifecycle
from worker.jobs.lifecycle import JobRun, run_job
from worker.runtime import Runtime


@pytest.fixture
def committed(engine: Engine) -> Iterator[sessionmaker[Session]]:
    factory = make_sessionmaker(engine, write=True)
    yield factory
    with session_scope(factory) as session:
        session.execute(delete(Tenant).where(Tenant.name.like("lifecycle-%")))


@pytest.fixture
def live(settings: Settings, committed: sessionmaker[Session]) -> Runtime:
    return Runtime(
        settings=settings.model_copy(update={"job_heartbeat_s": 1, "job_stale_after_s": 10}),
        sessions=committed,
    )


def _queued(factory: sessionmaker[Session]) -> str:
    with session_scope(factory) as session:
        tenant, _ = make_tenant(session, name=f"lifecycle-{time.time_ns()}")
        return make_job(session, tenant).id


def _job(factory: sessionmaker[Session], job_id: str) -> Job:
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_an_attempt_heartbeats_while_it_runs_and_records_its_success(live: Runtime) -> None:
    job_id = _queued(live.sessions)
    beats = []

    def body(run: JobRun) -> None:
        first = _job(live.sessions, job_id).heartbeat_at
        time.sleep(2.5)  # no progress written: only the heartbeat thread
        beats.extend([first, _job(live.sessions, job_id).heartbeat_at])
        run.succeed("done", {"ok": True})

    run_job(live, job_id, body, message="starting")

    job = _job(live.sessions, job_id)
    assert job.status == JobStatus.succeeded and job.attempts == 1 and job.result == {"ok": True}
    assert beats[0] is not None and beats[1] is not None and beats[1] > beats[0]


def test_a_message_sent_twice_starts_its_job_once(live: Runtime) -> None:
    job_id = _queued(live.sessions)
    runs = []
    run_job(live, job_id, lambda run: (runs.append(run), run.succeed("done", {})), message="m")
    run_job(live, job_id, lambda run: runs.append(run), message="m")
    assert len(runs) == 1 and _job(live.sessions, job_id).attempts == 1


def test_a_failure_is_recorded_with_its_reason_and_undone(live: Runtime) -> None:
    job_id = _queued(live.sessions)
    undone = []

    def body(run: JobRun) -> None:
        run.progress(0.5, "half way")
        raise ValueError("the teacher wrote nothing")

    with pytest.raises(ValueError):
        run_job(live, job_id, body, message="m", undo=lambda s, error: undone.append(error))

    job = _job(live.sessions, job_id)
    assert job.status == JobStatus.failed and job.error_code == "internal_error"
    # the tenant reads what to do and the job's id to quote, not the exception's text
    assert job.error is not None and job_id in job.error and "teacher wrote" not in job.error
    assert undone == [job.error]


def test_a_failure_never_shows_the_tenant_the_exception_text(live: Runtime) -> None:
    job_id = _queued(live.sessions)
    secret = "http://10.0.0.7:8000/v1/chat/completions answered: SELECT * FROM documents"

    def body(run: JobRun) -> None:
        raise TeacherUnavailable(secret)

    with pytest.raises(TeacherUnavailable):
        run_job(live, job_id, body, message="m")

    job = _job(live.sessions, job_id)
    assert job.error_code == "teacher_unavailable"
    assert job.error is not None and "10.0.0.7" not in job.error and "SELECT" not in job.error


def test_a_cancelled_job_stops_at_its_next_progress_and_is_undone(live: Runtime) -> None:
    job_id = _queued(live.sessions)
    undone, reached = [], []

    def body(run: JobRun) -> None:
        with session_scope(live.sessions) as session:
            job_repo.cancel_job(session, job=session.get(Job, job_id))  # type: ignore[arg-type]
        run.progress(0.5, "half way")
        reached.append(True)  # pragma: no cover - the progress above must stop the job

    run_job(live, job_id, body, message="m", undo=lambda s, error: undone.append(error))

    assert reached == [] and undone == [None]
    assert _job(live.sessions, job_id).status == JobStatus.cancelled


def test_a_superseded_attempt_stops_and_leaves_the_job_to_the_next(live: Runtime) -> None:
    """The beat took the attempt for dead and queued the job again; the old worker was only
    slow. Its next write finds the job is not its any more: it stops, puts nothing back, and
    the next attempt runs and finishes the job."""
    job_id = _queued(live.sessions)
    undone, outcomes = [], []

    def slow(run: JobRun) -> None:
        with session_scope(live.sessions) as session:
            assert job_repo.requeue_job(session, job_id=job_id, attempt=1, message="requeued")
        try:
            run.progress(0.5, "still here")
        finally:
            outcomes.append(_job(live.sessions, job_id).status)

    run_job(live, job_id, slow, message="m", undo=lambda s, error: undone.append(error))
    assert outcomes == [JobStatus.queued] and undone == []

    run_job(live, job_id, lambda run: run.succeed("done", {"attempt": 2}), message="m")
    job = _job(live.sessions, job_id)
    assert job.status == JobStatus.succeeded and job.attempts == 2


def test_a_progress_write_that_meets_a_busy_store_never_fails_the_job(
    live: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _queued(live.sessions)
    calls = []

    def locked(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise OperationalError("UPDATE jobs", {}, Exception("database is locked"))

    def body(run: JobRun) -> None:
        monkeypatch.setattr(lifecycle.job_repo, "report_progress", locked)
        run.progress(0.5, "half way")  # retried, then skipped with a log line
        monkeypatch.undo()
        run.succeed("done", {})

    run_job(live, job_id, body, message="m")
    assert len(calls) > 1 and _job(live.sessions, job_id).status == JobStatus.succeeded


def test_a_job_past_its_time_limit_fails_at_its_next_check_whatever_the_pool(
    live: Runtime,
) -> None:
    live.settings = live.settings.model_copy(update={"update_time_limit_s": 0})
    job_id = _queued(live.sessions)
    undone = []

    def body(run: JobRun) -> None:
        run.progress(0.5, "half way")  # its first check: already past the limit

    with pytest.raises(lifecycle.SoftTimeLimitExceeded):
        run_job(live, job_id, body, message="m", undo=lambda s, error: undone.append(error))
    job = _job(live.sessions, job_id)
    assert job.status == JobStatus.failed and job.error_code == "time_limit"
    assert job.error is not None and "time limit" in job.error and undone == [job.error]


def test_a_runaway_past_its_hard_limit_is_failed_and_its_worker_ended(
    live: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that never reaches a check: the heartbeat stops keeping it alive, records its
    failure and ends the worker process (here, what would end it is recorded instead)."""
    monkeypatch.setattr(lifecycle, "HARD_LIMIT_GRACE_S", 0)
    live.settings = live.settings.model_copy(update={"update_time_limit_s": 0})
    ended: list[int] = []
    live.exit_process = ended.append
    job_id = _queued(live.sessions)

    def runaway(run: JobRun) -> None:
        deadline = time.monotonic() + 30
        while not ended and time.monotonic() < deadline:  # never checks
            time.sleep(0.05)

    run_job(live, job_id, runaway, message="m")
    assert ended == [lifecycle.EXIT_TIME_LIMIT]
    job = _job(live.sessions, job_id)
    assert job.status == JobStatus.failed and job.error_code == "time_limit"
