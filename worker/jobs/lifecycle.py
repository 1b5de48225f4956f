"""One lifecycle for every job: start, heartbeat, progress, cancellation check, finish, fail.

A worker starts a queued job as its next attempt (:func:`run_job`). While the attempt runs, a
thread records a heartbeat every ``job_heartbeat_s``; progress writes count as heartbeats too.
A job whose heartbeat is older than ``job_stale_after_s`` lost its worker (OOM, SIGKILL, a
deploy): the beat (:mod:`worker.schedule`) removes the attempt's half-written artifact folders
and queues the job again, up to ``job_max_attempts``, then fails it with the reason. Every write
of an attempt is conditional on the job still being *that attempt's*, so a worker that was only
slow, not dead, finds it was superseded and stops without touching what the next attempt owns.

A progress or heartbeat write that meets a busy store is retried and then skipped with a log
line: it never fails its job.

The time limit (``update_time_limit_s``) is kept here, whatever the Celery pool (its own
limits hold only in prefork): past it, the job's next check raises and fails it
(``time_limit``); a runaway that reaches no check for ``HARD_LIMIT_GRACE_S`` more is failed by
the heartbeat thread, which then ends the worker process, the only way to stop it.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from billiard.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.artifacts import artifacts
from service.settings import Settings
from service.store.db import in_transaction
from service.store.models import AdapterVersion, Job, JobStatus, SkillVersion, TeacherVersion
from service.store.repositories import jobs as job_repo
from worker.jobs.failures import describe
from worker.runtime import Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Puts back what an attempt claimed: given the session and the error (None: cancelled).
Undo = Callable[[Session, "str | None"], None]


#: How long past its soft limit a job that never reaches a check runs before the worker ends.
HARD_LIMIT_GRACE_S = 300
#: The worker's exit status then (EX_SOFTWARE).
EXIT_TIME_LIMIT = 70


class JobCancelled(Exception):
    """The job was cancelled while it ran (or deleted with its tenant)."""


class JobSuperseded(JobCancelled):
    """The job is no longer this attempt's: the beat took it for dead and queued it again."""


def artifact_folder(parent: Path, job_id: str | None) -> Path:
    """A new artifact folder under ``parent``, named so that the job that writes it can find
    it again (:func:`remove_unrecorded_artifacts`)."""
    name = f"{time.time_ns()}"
    return parent / (f"{name}-{job_id[:8]}" if job_id else name)


def _artifact_parents(settings: Settings, job: Job) -> list[Path]:
    root = settings.resolved_adapter_dir
    parents = [root / job.tenant_id, root / "teachers" / job.tenant_id]
    if job.skill_id is not None:  # a skill job's versions: worker.jobs.skill.skill_folder
        parents.append(root / "skills" / job.tenant_id / job.skill_id)
    return parents


def remove_unrecorded_artifacts(session: Session, settings: Settings, job: Job) -> list[Path]:
    """Remove the folders an attempt of ``job`` wrote but no version records (a worker that
    died between saving and committing, or while saving), and, with object storage, the
    objects it uploaded; the folders removed (and the objects' URIs)."""
    recorded = (
        set(session.scalars(select(AdapterVersion.artifact_uri)))
        | set(session.scalars(select(TeacherVersion.artifact_uri)))
        | set(session.scalars(select(SkillVersion.artifact_uri)))
    )
    tag = job.id[:8]
    removed = []
    for parent in _artifact_parents(settings, job):
        if not parent.is_dir():
            continue
        for path in [*parent.glob(f"*-{tag}"), *parent.glob(f".*-{tag}-*")]:
            if path.is_dir() and str(path) not in recorded:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    store = artifacts(settings)
    if store.remote:
        for parent in _artifact_parents(settings, job):
            relative = parent.relative_to(settings.resolved_adapter_dir).as_posix()
            for uri in store.unrecorded(relative, tag, recorded):
                store.discard(uri)
                removed.append(Path(uri))
    return removed


@dataclass(frozen=True)
class JobInfo:
    """What the lifecycle read when the attempt started (plain data, no ORM object)."""

    id: str
    tenant_id: str
    kind: str
    params: dict[str, Any]
    attempt: int


class JobRun:
    """A running attempt of a job: its heartbeat, progress, cancellation checks and end."""

    def __init__(self, runtime: Runtime, job: JobInfo, undo: Undo | None = None) -> None:
        self.runtime, self.job, self.undo = runtime, job, undo
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # the time limits, kept here whatever the pool (Celery keeps them only in prefork)
        self.limit_s = runtime.settings.update_time_limit_s
        self._soft = time.monotonic() + self.limit_s
        self._hard = self._soft + HARD_LIMIT_GRACE_S

    @property
    def id(self) -> str:
        return self.job.id

    # --- heartbeat -------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{self.id[:8]}", daemon=True
        )
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        interval = self.runtime.settings.job_heartbeat_s
        while not self._stop.wait(interval):
            if time.monotonic() > self._hard:
                self._hard_limit()
                return
            try:
                alive = in_transaction(
                    self.runtime.sessions,
                    lambda s: job_repo.heartbeat(s, job_id=self.id, attempt=self.job.attempt),
                    attempts=3,
                )
            except Exception:  # a heartbeat that cannot be written must not end the job
                log.warning("job %s: heartbeat not recorded", self.id, exc_info=True)
                continue
            if not alive:
                self._lost.set()
                return

    def _hard_limit(self) -> None:
        """The job ran past its hard limit without reaching a check of its own (a runaway):
        its failure is recorded, then the worker process ends, as only that stops it; the
        heartbeat does not keep it looking alive."""
        log.error(
            "job %s ran %d s past its time limit; ending the worker", self.id, HARD_LIMIT_GRACE_S
        )
        try:
            self.fail(_time_limit(self.id, self.limit_s), self.undo, code="time_limit")
        finally:
            self.runtime.exit_process(EXIT_TIME_LIMIT)

    # --- while it runs -----------------------------------------------------------------------
    def _why_lost(self) -> JobCancelled:
        job = in_transaction(self.runtime.sessions, lambda s: _status(s, self.id))
        if job is None or job == JobStatus.cancelled:
            return JobCancelled(f"job {self.id} was cancelled")
        return JobSuperseded(f"job {self.id} attempt {self.job.attempt} was superseded")

    def check(self) -> None:
        """Raise :class:`JobCancelled` (or :class:`JobSuperseded`) once the job is not this
        attempt's to run any more."""
        self._still_ours(
            "cancellation not checked",
            lambda s: job_repo.is_current(s, job_id=self.id, attempt=self.job.attempt),
        )

    def progress(
        self, fraction: float, message: str, *, event: bool = False, data: dict | None = None
    ) -> None:
        """Record progress (a heartbeat too) and check for cancellation; with ``event``, the
        stage also goes into the job's story with its ``data``. A busy store skips the
        record; it never fails the job."""

        def unit(session: Session) -> bool:
            current = job_repo.report_progress(
                session,
                job_id=self.id,
                attempt=self.job.attempt,
                progress=fraction,
                message=message,
            )
            if current and event:
                job_repo.add_job_event(
                    session,
                    job_id=self.id,
                    tenant_id=self.job.tenant_id,
                    message=message,
                    progress=fraction,
                    data=data,
                )
            return current

        self._still_ours("progress not recorded", unit)

    def _still_ours(self, skipped: str, unit: Callable[[Session], bool]) -> None:
        """Run ``unit`` (True: the job is still this attempt's) and raise once it is not; a
        store still busy after a few tries skips it with a log line saying what was
        ``skipped``."""
        if self._lost.is_set():
            raise self._why_lost()
        if time.monotonic() > self._soft:
            raise SoftTimeLimitExceeded(f"job {self.id} ran past its limit of {self.limit_s} s")
        try:
            current = in_transaction(self.runtime.sessions, unit, attempts=3, backoff_s=0.2)
        except OperationalError:
            log.warning("job %s: %s (store busy)", self.id, skipped, exc_info=True)
            return
        if not current:
            raise self._why_lost()

    # --- the end -----------------------------------------------------------------------------
    def finish_with(self, message: str, work: Callable[[Session], T]) -> T:
        """The attempt's final unit of work: the job's row held first (a cancel that comes now
        waits, then finds the job finished; an attempt superseded raises instead), then
        ``work``, which records the outcome, in one transaction (run again whole if the store
        is busy)."""

        def unit(session: Session) -> T:
            if not job_repo.hold_running_job(
                session, job_id=self.id, attempt=self.job.attempt, message=message
            ):
                raise self._why_lost()
            return work(session)

        return in_transaction(self.runtime.sessions, unit)

    def succeed(self, message: str, result: dict[str, Any]) -> None:
        self.finish_with(
            message,
            lambda s: job_repo.finish_job(
                s, job_id=self.id, status=JobStatus.succeeded, result=result, message=message
            ),
        )

    def fail(self, error: str, undo: Undo | None = None, *, code: str | None = None) -> None:
        """Record the failure (and ``undo`` what the attempt claimed) unless the job is no
        longer this attempt's: ``error`` is what the tenant reads, ``code`` its stable name."""

        def unit(session: Session) -> None:
            if not job_repo.hold_running_job(
                session, job_id=self.id, attempt=self.job.attempt, message="failed"
            ):
                return
            if undo is not None:
                undo(session, error)
            job_repo.finish_job(
                session,
                job_id=self.id,
                status=JobStatus.failed,
                error=error,
                error_code=code,
                message="failed",
            )

        in_transaction(self.runtime.sessions, unit)

    def cancelled(self, undo: Undo | None) -> None:
        """Undo what the attempt claimed, for a job that was cancelled (not superseded)."""
        if undo is None:
            return

        def unit(session: Session) -> None:
            if _status(session, self.id) in (None, JobStatus.cancelled):
                undo(session, None)

        in_transaction(self.runtime.sessions, unit)


def _time_limit(job_id: str, limit_s: int) -> str:
    return describe(SoftTimeLimitExceeded(f"{limit_s} s"), job_id).message


def _status(session: Session, job_id: str) -> JobStatus | None:
    return session.scalar(select(Job.status).where(Job.id == job_id))


def run_job(
    runtime: Runtime,
    job_id: str,
    body: Callable[[JobRun], None],
    *,
    message: str,
    undo: Undo | None = None,
) -> bool:
    """Start ``job_id``'s next attempt and run ``body`` with it to the job's end; False, doing
    nothing, when the job is not queued (taken by another worker, cancelled, gone).

    ``body`` records success itself (:meth:`JobRun.finish_with`); an exception fails the job
    with a message for the tenant and an ``error_code`` (:mod:`worker.jobs.failures`; the
    exception goes to the log) and is raised again; a cancellation ends it quietly.
    ``undo(session, error)`` puts back what the attempt claimed (documents) when it fails
    (``error``) or is cancelled (None), in the transaction that records it; a superseded
    attempt puts nothing back, as the next attempt owns it now."""

    def start(session: Session) -> JobInfo | None:
        job = job_repo.start_job(session, job_id=job_id, message=message)
        if job is None:
            return None
        return JobInfo(job.id, job.tenant_id, str(job.kind), dict(job.params or {}), job.attempts)

    info = in_transaction(runtime.sessions, start)
    if info is None:
        log.info("job %s is not queued any more; nothing to do", job_id)
        return False
    log.info("job %s (%s) attempt %d started", job_id, info.kind, info.attempt)
    run = JobRun(runtime, info, undo)
    run.start_heartbeat()
    try:
        body(run)
    except JobSuperseded:
        log.warning("job %s attempt %d was taken for dead and superseded", job_id, info.attempt)
    except JobCancelled:
        log.info("job %s was cancelled (or deleted with its tenant)", job_id)
        run.cancelled(undo)
    except Exception as exc:
        log.exception("job %s failed", job_id)  # the exception, for the operator
        failure = describe(exc, job_id)  # what the tenant reads
        run.fail(failure.message, undo, code=failure.code)
        raise
    finally:
        run.stop_heartbeat()
    return True
