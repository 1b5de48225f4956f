from pathlib import Path

import pytest
from sqlalchemy import text

from service.store.db import make_engine, make_sessionmaker, session_scope


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
    engine.dispose()


def test_session_scope_commits_or_rolls_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(RuntimeError), session_scope(factory) as session:
        session.execute(text("INSERT INTO t VALUES (2)"))
        raise RuntimeError("task failed")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalars().all() == [1]
    engine.dispose()
