"""The migration builds the models' schema, and goes down and up again, on both backends."""

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from migrations import alembic_config
from service.store.base import Base
from service.store.db import make_engine
from tests.conftest import ensure_pg_database, reset_pg_schema


def test_migration_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_and_downgrade(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("postgresql"):
        url = ensure_pg_database("seal_test_migrations")
        reset_pg_schema(url)
    else:
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
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


def test_alembic_ini_points_at_the_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    root = Path(__file__).resolve().parents[2]
    script = ScriptDirectory.from_config(Config(str(root / "alembic.ini")))
    assert script.get_current_head() == "0003"
