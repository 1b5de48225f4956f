"""Alembic migrations of the store.

``alembic upgrade head`` at the repository root uses ``alembic.ini``; code (the CLI, tests)
can use :func:`alembic_config` instead, which needs no ini file and works when installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str | None = None, connection: Any = None) -> Config:
    """An Alembic config for this package. ``url`` or an open SQLAlchemy ``connection``
    override the settings' database URL (``env.py`` reads them from ``config.attributes``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """``alembic upgrade`` the database at ``url`` (default: the settings' database)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)
