"""Engines, sessions and the one commit point of a task.

SQLite serializes writers. A transaction that reads first and writes later (``BEGIN``
deferred) cannot wait for the write lock: when another writer committed after its read began,
its first write fails at once with "database is locked", whatever the busy timeout. So every
transaction that may write takes the write lock up front (``BEGIN IMMEDIATE``), where the busy
timeout makes it wait its turn; reads stay deferred and never wait (WAL). Sessions of
:func:`make_sessionmaker` ``(write=True)`` are writers. PostgreSQL is left as it is: its row
locks already make writers wait.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.store.hooks import run_after_commit, run_after_rollback

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: The execution option that makes a SQLite transaction begin with the write lock.
_IMMEDIATE = "seal_sqlite_immediate"
#: Set in a connection's ``info`` while its transaction holds this process's writers' lock.
_HOLDS_WRITERS = "seal_holds_writers"

T = TypeVar("T")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, foreign keys and real
    transactions (pysqlite's own transaction handling is replaced by explicit BEGINs, so
    SAVEPOINTs work, and writers begin IMMEDIATE). Statement parameters never appear in its
    errors or logs (``hide_parameters``): they hold tenants' documents and chats."""
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)

    connect_args = {"check_same_thread": False, **kwargs.pop("connect_args", {})}
    engine = create_engine(url, connect_args=connect_args, hide_parameters=True, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    # The writers of this process queue on a lock of their own before they ask SQLite for its
    # write lock: SQLite's busy handler polls with sleeps growing to 100 ms, so many threads
    # waiting on it take turns slowly and in no order (a p99 of seconds at 16 clients), where
    # the lock hands the turn on at once and in order. Other processes still meet the busy
    # timeout.
    writers = threading.Lock()

    def _release(info: dict[str, Any]) -> None:
        if info.pop(_HOLDS_WRITERS, False):
            writers.release()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not connection.get_execution_options().get(_IMMEDIATE, False):
            connection.exec_driver_sql("BEGIN")
            return
        if not writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
            )
        connection.info[_HOLDS_WRITERS] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(connection.info)
            raise

    # The turn passes on as the transaction ends (the next writer's BEGIN IMMEDIATE then waits
    # out the COMMIT in SQLite's busy handler, whose first pauses are short); measured faster
    # than passing it on after the COMMIT has returned.
    for name in ("commit", "rollback"):
        event.listen(engine, name, lambda connection: _release(connection.info))

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        _release(record.info)  # a connection given back with its transaction still open

    return engine


def make_sessionmaker(engine: Engine, *, write: bool = False) -> sessionmaker[Session]:
    """Sessions on ``engine``; with ``write``, each SQLite transaction begins with the write
    lock (the busy timeout then queues it behind other writers instead of failing it)."""
    bind = engine.execution_options(**{_IMMEDIATE: True}) if write else engine
    return sessionmaker(bind=bind, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises, then runs
    the session's hooks for that end (:mod:`service.store.hooks`)."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            run_after_rollback(session)
            raise
        run_after_commit(session)


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is a store that could not serve a transaction now (SQLite locked past
    its busy timeout, a PostgreSQL connection lost or a serialization failure): the whole unit
    of work can be tried again."""
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return exc.connection_invalidated or any(
        s in text for s in ("locked", "busy", "could not serialize", "server closed", "connection")
    )


def in_transaction(
    factory: sessionmaker[Session],
    work: Callable[[Session], T],
    *,
    attempts: int = 5,
    backoff_s: float = 0.5,
) -> T:
    """Run ``work`` in one transaction; when the store is busy, the whole unit of work runs
    again (a fresh transaction, after a jittered, growing pause), up to ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        try:
            with session_scope(factory) as session:
                return work(session)
        except OperationalError as exc:
            if attempt == attempts or not is_busy(exc):
                raise
            pause = backoff_s * 2 ** (attempt - 1) * (0.5 + random.random())
            log.warning("store busy (%s); attempt %d again in %.1f s", exc.orig, attempt, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")
