"""Alembic environment: metadata from the models, the URL from the settings.

Tests and code can hand over a URL (``config.attributes["url"]``) or an open connection
(``config.attributes["connection"]``) instead. SQLite runs in batch mode so ALTERs work: a
table is copied, dropped and renamed, and so its foreign keys are not enforced meanwhile (with
them on, dropping ``jobs`` would set the ``job_id`` of every row pointing to it to NULL); they
are checked once the migrations have run.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from service.settings import get_settings
from service.store import models  # registers the tables
from service.store.base import Base
from service.store.db import make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    return (
        config.attributes.get("url")
        or config.get_main_option("sqlalchemy.url")
        or get_settings().resolved_database_url
    )


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=models.is_modelled,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
        include_object=models.is_modelled,
    )
    with context.begin_transaction():
        context.run_migrations()


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """Switch SQLite's enforcement of foreign keys, on the driver's connection: the pragma
    does nothing inside a transaction, and SQLAlchemy would begin one for its own statement."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the migrations left rows that refer to nothing: {broken[:10]}")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                _sqlite_foreign_keys(connection, on=False)
            try:
                _configure(connection)
                if sqlite:
                    _check_foreign_keys(connection)
            finally:
                if sqlite:
                    connection.rollback()  # the check's read
                    _sqlite_foreign_keys(connection, on=True)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
