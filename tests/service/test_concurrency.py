"""The embedded store under concurrent use: writers wait their turn instead of failing.

Real threads on a real SQLite file (not the test's rolled-back transaction): the failure these
guard against only shows between separate connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from migrations import alembic_config
from sealctl.stack import free_port
from service.app import create_app
from service.settings import Settings
from service.store.db import in_transaction, make_engine, make_sessionmaker, session_scope
from service.store.repositories import jobs as job_repo
from tests.conftest import ADMIN_KEY
from tests.factories import auth, make_job, make_tenant


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    yield engine
    engine.dispose()


def _read_then_write(engine: Engine, *, write: bool) -> tuple[Exception | None, list[str]]:
    """Transaction A reads; B writes and commits meanwhile (or tries to); then A writes.
    Returns A's error, if any, and the order in which the two committed."""
    factory = make_sessionmaker(engine, write=write)
    a_read, order = threading.Event(), []
    error: list[Exception] = []

    def a() -> None:
        try:
            with session_scope(factory) as session:
                session.execute(text("SELECT count(*) FROM t")).scalar()
                a_read.set()
                time.sleep(0.5)  # B's write comes now
                session.execute(text("INSERT INTO t VALUES (1)"))
            order.append("a")
        except OperationalError as exc:
            error.append(exc)

    def b() -> None:
        a_read.wait()
        with session_scope(factory) as session:
            session.execute(text("INSERT INTO t VALUES (2)"))
        order.append("b")

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return (error[0] if error else None), order


def test_a_deferred_read_then_write_meets_a_locked_database(sqlite_engine: Engine) -> None:
    """What a writer's session prevents: the busy timeout cannot help a transaction whose
    snapshot is older than another writer's commit."""
    error, order = _read_then_write(sqlite_engine, write=False)
    assert error is not None and "locked" in str(error)
    assert order == ["b"]


def test_a_writer_takes_the_lock_up_front_and_the_other_waits(sqlite_engine: Engine) -> None:
    error, order = _read_then_write(sqlite_engine, write=True)
    assert error is None
    assert order == ["a", "b"]  # B waited for A's commit instead of failing
    with sqlite_engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT x FROM t")).scalars()) == [1, 2]


def test_in_transaction_runs_the_whole_unit_again_when_the_store_is_busy(
    sqlite_engine: Engine,
) -> None:
    factory = make_sessionmaker(sqlite_engine, write=True)
    calls = []

    def work(session):  # type: ignore[no-untyped-def]
        calls.append(1)
        session.execute(text("INSERT INTO t VALUES (3)"))
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return len(calls)

    assert in_transaction(factory, work, backoff_s=0.01) == 2
    with sqlite_engine.connect() as conn:  # the failed attempt's insert was rolled back
        assert conn.execute(text("SELECT count(*) FROM t WHERE x = 3")).scalar() == 1

    def broken(session):  # type: ignore[no-untyped-def]
        raise OperationalError("SELECT", {}, Exception("no such table: nope"))

    with pytest.raises(OperationalError):
        in_transaction(factory, broken, backoff_s=0.01)


@pytest.fixture
def served_app(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    """The real app on a migrated SQLite file, served by uvicorn in a thread."""
    url = f"sqlite:///{tmp_path / 'seal.db'}"
    command.upgrade(alembic_config(url), "head")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        broker_url="redis://127.0.0.1:6379/15",
        admin_key=ADMIN_KEY,
        data_dir=tmp_path / "data",
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_concurrent_clients_and_a_busy_worker_all_get_their_writes(
    served_app: tuple[str, Settings],
) -> None:
    """16 clients post documents while a worker's transactions (progress: read, then write)
    come and go: no request is refused, no document is lost, and no worker write fails."""
    base, settings = served_app
    engine = make_engine(settings.resolved_database_url)
    worker_sessions = make_sessionmaker(engine, write=True)
    with session_scope(worker_sessions) as session:
        tenant, key = make_tenant(session)
        job_id = make_job(session, tenant).id
    stop, worker_errors, progress_writes = threading.Event(), [], [0]

    def worker() -> None:
        while not stop.is_set():
            try:
                with session_scope(worker_sessions) as session:
                    job_repo.is_cancelled(session, job_id=job_id)
                    time.sleep(0.02)  # a slow transaction
                    job_repo.set_job_progress(session, job_id=job_id, progress=0.5)
                progress_writes[0] += 1
                # a worker writes between steps, not back to back: SQLite's busy handler is
                # not fair, and a writer that takes the lock again at once starves the API's
                stop.wait(0.02)
            except Exception as exc:  # pragma: no cover - what the test guards against
                worker_errors.append(exc)

    def client(number: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=base, headers=auth(key), timeout=60) as http:
            for i in range(8):
                doc = {"title": f"doc {number}-{i}", "text": f"Client {number} wrote {i}."}
                statuses.append(http.post("/v1/documents", json=doc).status_code)
        return statuses

    background = threading.Thread(target=worker)
    background.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            statuses = [s for batch in pool.map(client, range(16)) for s in batch]
    finally:
        stop.set()
        background.join(timeout=60)
        engine.dispose()
    assert statuses == [201] * 128
    assert worker_errors == [] and progress_writes[0] > 0
    listed = httpx.get(f"{base}/v1/documents?limit=200", headers=auth(key), timeout=30).json()
    assert listed["total"] == 128
