"""Fixtures: a real database per backend built by ``alembic upgrade head``, one rolled-back
transaction per test, the app wired to it, and a real Redis broker (db 15) for tasks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
import redis
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from migrations import alembic_config
from service.app import create_app
from service.enqueue import CeleryTaskSender, get_task_sender
from service.inference import get_chat_backend
from service.settings import Settings
from service.store.db import make_engine
from tests.doubles import ReversingBackend

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
#: Another name lets two checkouts run their tests side by side on one server.
PG_TEST_DATABASE = os.environ.get("SEAL_TEST_PG_DATABASE", "seal_test")
REDIS_URL = "redis://127.0.0.1:6379/15"
ADMIN_KEY = "test-admin-key-0123456789"


def ensure_pg_database(name: str) -> str:
    """Create database ``name`` (beside ``test``) if missing; its SQLAlchemy URL."""
    with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def reset_pg_schema(url: str) -> None:
    """Drop everything in the database's public schema, so a rerun starts clean."""
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(scope="session", params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "postgresql":
        url = ensure_pg_database(PG_TEST_DATABASE)
        reset_pg_schema(url)
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'seal.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    command.upgrade(alembic_config(database_url), "head")
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """One transaction per test, rolled back at the end whatever the code under test did."""
    with engine.connect() as conn:
        transaction = conn.begin()
        yield conn
        transaction.rollback()


@pytest.fixture
def test_sessionmaker(connection: Connection) -> sessionmaker[Session]:
    """Sessions whose commit only releases a SAVEPOINT of the test's transaction."""
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def session(test_sessionmaker: sessionmaker[Session]) -> Iterator[Session]:
    with test_sessionmaker() as session:
        yield session


@pytest.fixture
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        broker_url=REDIS_URL,
        admin_key=ADMIN_KEY,
        data_dir=tmp_path_factory.mktemp("data"),
    )


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The test broker (Redis db 15), emptied before and after the test."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def task_sender(broker: redis.Redis) -> Iterator[CeleryTaskSender]:
    sender = CeleryTaskSender(REDIS_URL)
    yield sender
    sender.close()


@pytest.fixture
def chat_backend() -> ReversingBackend:
    return ReversingBackend()


@pytest.fixture
def app(
    settings: Settings,
    test_sessionmaker: sessionmaker[Session],
    task_sender: CeleryTaskSender,
    chat_backend: ReversingBackend,
) -> Iterator[FastAPI]:
    app = create_app(settings)
    app.state.sessionmaker = app.state.read_sessionmaker = test_sessionmaker
    app.dependency_overrides[get_task_sender] = lambda: task_sender
    app.dependency_overrides[get_chat_backend] = lambda: chat_backend
    yield app
    app.state.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}
