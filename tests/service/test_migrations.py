"""The migration builds the models' schema, and goes down and up again, on both backends."""

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session

from migrations import alembic_config
from service.store.base import Base
from service.store.db import make_engine
from service.store.models import is_modelled
from service.store.repositories import memory as memory_repo
from tests.conftest import ensure_pg_database, reset_pg_schema


def test_migration_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        opts = {"compare_type": True, "include_object": is_modelled}
        context = MigrationContext.configure(connection, opts=opts)
        assert compare_metadata(context, Base.metadata) == []


def _scratch_url(database_url: str, tmp_path: Path) -> str:
    if database_url.startswith("postgresql"):
        url = ensure_pg_database("seal_test_migrations")
        reset_pg_schema(url)
        return url
    return f"sqlite:///{tmp_path / 'migrations.db'}"


def test_upgrade_and_downgrade(database_url: str, tmp_path: Path) -> None:
    url = _scratch_url(database_url, tmp_path)
    config = alembic_config(url)
    engine = make_engine(url)
    try:
        command.upgrade(config, "head")
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(config, "head")
    finally:
        engine.dispose()


_ROWS = [
    "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', '2026-01-01')",
    "INSERT INTO jobs (id, tenant_id, kind, status, progress, created_at) "
    "VALUES ('j', 't', 'update', 'succeeded', 1, '2026-01-01')",
    "INSERT INTO adapter_versions (id, tenant_id, number, status, metrics, job_id, created_at) "
    "VALUES ('a', 't', 1, 'active', '{}', 'j', '2026-01-01')",
    "INSERT INTO completions (id, tenant_id, model, adapter_version_id, messages, output, "
    "prompt_tokens, completion_tokens, created_at) "
    "VALUES ('c', 't', 'm', 'a', '[]', 'x', 1, 1, '2026-01-01')",
    "INSERT INTO feedback (id, tenant_id, rating, completion_id, created_at) "
    "VALUES ('f', 't', 1, 'c', '2026-01-01')",
    "INSERT INTO teacher_versions (id, number, status, metrics, created_at) "
    "VALUES ('tv', 1, 'active', '{}', '2026-01-01')",
]


def test_the_skills_migration_keeps_the_rows_that_refer_to_the_tables_it_changes(
    database_url: str, tmp_path: Path
) -> None:
    """0004 adds columns to jobs and completions (on SQLite: copies of the tables); rows that
    point to them keep their links both ways, and the teachers there are teachers of
    documents."""
    url = _scratch_url(database_url, tmp_path)
    config = alembic_config(url)
    engine = make_engine(url)
    links = (
        "SELECT (SELECT job_id FROM adapter_versions), (SELECT completion_id FROM feedback), "
        "(SELECT adapter_version_id FROM completions)"
    )
    try:
        command.upgrade(config, "0003")
        with engine.begin() as connection:
            for statement in _ROWS:
                connection.execute(text(statement))
        command.upgrade(config, "0004")
        with engine.connect() as connection:
            assert connection.execute(text(links)).one() == ("j", "c", "a")
            domain = connection.execute(text("SELECT domain FROM teacher_versions")).scalar()
            assert domain == "documents"
            assert connection.execute(text("SELECT skill_id FROM jobs")).scalar() is None
        command.downgrade(config, "0003")
        with engine.connect() as connection:
            assert connection.execute(text(links)).one() == ("j", "c", "a")
    finally:
        engine.dispose()


def test_alembic_ini_points_at_the_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    root = Path(__file__).resolve().parents[2]
    script = ScriptDirectory.from_config(Config(str(root / "alembic.ini")))
    assert script.get_current_head() == "0010"


def test_the_memory_migration_indexes_the_documents_already_stored(
    database_url: str, tmp_path: Path
) -> None:
    """0005 chunks and indexes the documents stored before it, each in its own tenant's memory;
    its tenants answer from both (``hybrid``)."""
    url = _scratch_url(database_url, tmp_path)
    config = alembic_config(url)
    engine = make_engine(url)
    text_of = {
        "d1": "Poseidonia is the capital of Atlantis.",
        "d2": "The capital of Lemuria is Mu. " * 80,  # 480 words: three chunks
    }
    try:
        command.upgrade(config, "0004")
        with engine.begin() as connection:
            for tenant in ("t1", "t2"):
                connection.execute(
                    text(
                        "INSERT INTO tenants (id, name, created_at) VALUES (:t, :t, '2026-01-01')"
                    ),
                    {"t": tenant},
                )
            for doc, tenant in (("d1", "t1"), ("d2", "t2")):
                connection.execute(
                    text(
                        "INSERT INTO documents (id, tenant_id, title, text, content_hash, status,"
                        " updated_at, created_at) VALUES (:d, :t, 'Capitals', :x, :d, 'learned',"
                        " '2026-01-01', '2026-01-01')"
                    ),
                    {"d": doc, "t": tenant, "x": text_of[doc]},
                )
        command.upgrade(config, "0005")
        with Session(engine) as session:
            assert session.scalars(text("SELECT memory FROM tenants")).all() == ["hybrid"] * 2
            chunks = session.execute(
                text("SELECT document_id, count(*) FROM memory_chunks GROUP BY document_id")
            )
            assert dict(chunks.all()) == {"d1": 1, "d2": 3}
            found = memory_repo.search(session, tenant_id="t1", terms=["capital"], limit=5)
            assert [f.document_id for f in found] == ["d1"]
            found = memory_repo.search(session, tenant_id="t2", terms=["poseidonia"], limit=5)
            assert found == []
    finally:
        engine.dispose()


def test_the_teacher_constraints_migration_fits_the_rows_already_stored(
    database_url: str, tmp_path: Path
) -> None:
    """0008 gives teacher versions one number per owner and one active per owner: of two
    active shared teachers the higher number stays active, a repeated number becomes the
    owner's next, and another owner (a tenant, or another domain) is left alone."""
    url = _scratch_url(database_url, tmp_path)
    config = alembic_config(url)
    engine = make_engine(url)
    rows = [  # id, tenant, domain, number, status, created
        ("s1", None, "documents", 1, "active", "2026-01-01"),
        ("s2", None, "documents", 2, "active", "2026-01-02"),
        ("s2b", None, "documents", 2, "candidate", "2026-01-03"),
        ("k1", None, "skills", 1, "active", "2026-01-01"),
        ("t1", "t", "documents", 1, "active", "2026-01-01"),
    ]
    try:
        command.upgrade(config, "0007")
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', '2026-01-01')")
            )
            for id_, tenant, domain, number, status, created in rows:
                connection.execute(
                    text(
                        "INSERT INTO teacher_versions (id, tenant_id, domain, number, status, "
                        "metrics, created_at) VALUES (:i, :t, :d, :n, :s, '{}', :c)"
                    ),
                    {"i": id_, "t": tenant, "d": domain, "n": number, "s": status, "c": created},
                )
        command.upgrade(config, "0008")
        with engine.connect() as connection:
            found = dict(
                (r[0], (r[1], r[2]))
                for r in connection.execute(text("SELECT id, number, status FROM teacher_versions"))
            )
        assert found == {
            "s1": (1, "retired"),
            "s2": (2, "active"),
            "s2b": (3, "candidate"),
            "k1": (1, "active"),
            "t1": (1, "active"),
        }
        command.downgrade(config, "0007")
        command.upgrade(config, "head")
    finally:
        engine.dispose()
