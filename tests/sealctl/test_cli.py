"""The `seal` command: what an operator meets before any model runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from sealctl.cli import app, load_passages
from service.settings import get_settings

runner = CliRunner()


def plain(output: str) -> str:
    """The output without the error box's borders and line wrapping."""
    return " ".join(output.replace("│", " ").split())


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEAL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SEAL_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_migrate_builds_the_embedded_store(data_dir: Path) -> None:
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    tables = inspect(create_engine(f"sqlite:///{data_dir / 'seal.db'}")).get_table_names()
    assert {"tenants", "documents", "adapter_versions", "teacher_versions", "jobs"} <= set(tables)


def test_an_unknown_process_is_refused(data_dir: Path) -> None:
    result = runner.invoke(app, ["process", "scheduler"])
    assert result.exit_code != 0
    assert "expected one of api, worker, beat" in plain(result.output)


def test_teacher_train_explains_a_bad_data_file(data_dir: Path) -> None:
    bad = data_dir / "bad.json"
    bad.write_text('{"not": "a list"}')
    result = runner.invoke(app, ["teacher", "train", str(bad)])
    assert result.exit_code == 2
    assert "expected a JSON list of {title, context, questions" in plain(result.output)


def test_teacher_train_needs_enough_passages(data_dir: Path) -> None:
    small = data_dir / "small.json"
    rows = [{"title": "T", "context": "C.", "questions": [{"question": "Q?", "answer": "A"}]}]
    small.write_text(json.dumps(rows))
    result = runner.invoke(
        app, ["teacher", "train", str(small), "--passages", "2", "--heldout", "1"]
    )
    assert result.exit_code == 2
    assert "has 1 passages with questions" in plain(result.output)


def test_squad_passages_load_with_their_questions() -> None:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "squad" / "dev.json"
    passages = load_passages(path)
    assert len(passages) == 100
    assert sum(len(p.questions) for p in passages) == 559
    assert all(p.title and p.text for p in passages)
