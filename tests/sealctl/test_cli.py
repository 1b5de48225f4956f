"""The `seal` command: what an operator meets before any model runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from seal.lora import AdapterHost, LoraSpec, load_adapter, save_adapter
from sealctl.cli import app
from sealctl.data import load_passages
from service.settings import get_settings
from tests.tiny import load_tiny
from tests.tiny import tiny_model_dir as tiny_model_dir  # the fixture

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


def test_teacher_train_heldout_skip_must_follow_the_training_passages(data_dir: Path) -> None:
    rows = [
        {"title": f"T{i}", "context": "C.", "questions": [{"question": "Q?", "answer": "A"}]}
        for i in range(5)
    ]
    small = data_dir / "five.json"
    small.write_text(json.dumps(rows))
    for skip in ("1", "4"):  # inside the training passages; past the file's end
        result = runner.invoke(
            app,
            [
                "teacher",
                "train",
                str(small),
                "--passages",
                "2",
                "--heldout",
                "2",
                "--heldout-skip",
                skip,
            ],
        )
        assert result.exit_code == 2
        assert "must come after the 2 training passages" in plain(result.output)


def test_squad_passages_load_with_their_questions() -> None:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "squad" / "dev.json"
    passages = load_passages(path)
    assert len(passages) == 100
    assert sum(len(p.questions) for p in passages) == 559
    assert all(p.title and p.text for p in passages)


EVAL_ROWS = [
    {
        "title": "Zorblat Industries",
        "context": "Zorblat Industries was founded by Marisol Quenby. It makes glass bicycles.",
        "questions": [{"question": "Who founded Zorblat Industries?", "answer": "Marisol Quenby"}],
        "self_edits": ["1. Marisol Quenby founded Zorblat Industries."],
    },
    {"title": "No questions", "context": "Nothing to ask here."},
    {
        "title": "Vellmora",
        "context": "Vellmora is a harbour town. Its mayor is Ada Thorne.",
        "questions": [{"question": "Who is the mayor of Vellmora?", "answer": "Ada Thorne"}],
    },
]


@pytest.fixture
def tiny_settings(data_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings that make `seal eval knowledge` run the tiny model in seconds."""
    env = {
        "STUDENT_MODEL": str(tiny_model_dir),
        "TEACHER_MODEL": str(tiny_model_dir),
        "DEVICE": "cpu",
        "DTYPE": "float32",
        "EPOCHS": "1",
        "SELF_EDIT_MAX_TOKENS": "16",
        "ANSWER_MAX_TOKENS": "4",
        "LORA_RANK": "4",
        "LORA_ALPHA": "8",
        "TEACHER_LORA_RANK": "4",
        "TEACHER_LORA_ALPHA": "8",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"SEAL_{key}", value)
    get_settings.cache_clear()
    data = data_dir / "eval.json"
    data.write_text(json.dumps(EVAL_ROWS))
    return data


def save_teacher(model_dir: Path, target: Path, rank: int) -> Path:
    spec = LoraSpec(rank=rank, alpha=2 * rank)
    host = AdapterHost(load_tiny(model_dir), {"teacher": spec})
    save_adapter(host.fresh_state("teacher"), spec, target)
    return target


def test_eval_knowledge_runs_every_condition(
    tiny_settings: Path, tiny_model_dir: Path, data_dir: Path
) -> None:
    teacher = save_teacher(tiny_model_dir, data_dir / "teacher", rank=4)
    out = data_dir / "eval"
    args = ["eval", "knowledge", str(tiny_settings), "--passages", "2", "--out", str(out)]
    result = runner.invoke(app, [*args, "--teacher", str(teacher), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "Wilson" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["seed"] == 3 and results["settings"]["mode"] == "single"
    assert results["settings"]["teacher"] == str(teacher)
    assert results["settings"]["train"]["epochs"] == 1
    conditions = {c["name"]: c["questions"] for c in results["conditions"]}
    assert conditions == {"base": 2, "passage": 2, "base-teacher": 2, "teacher": 2, "supplied": 1}
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # a run compared with itself: every question agrees
    result = runner.invoke(
        app, ["eval", "compare", str(out / "results.json")] * 1 + [str(out / "results.json")]
    )
    assert result.exit_code == 0, result.output
    assert "McNemar" in result.output and result.output.count("1.00  same") == 5


def test_eval_knowledge_makes_a_row_per_named_teacher_paired_with_the_passage(
    tiny_settings: Path, tiny_model_dir: Path, data_dir: Path
) -> None:
    first = save_teacher(tiny_model_dir, data_dir / "first", rank=4)
    second = save_teacher(tiny_model_dir, data_dir / "second", rank=4)
    out = data_dir / "eval"
    args = ["eval", "knowledge", str(tiny_settings), "--passages", "2", "--out", str(out)]
    result = runner.invoke(app, [*args, "--teacher", f"a={first}", "--teacher", f"b={second}"])
    assert result.exit_code == 0, result.output
    assert "McNemar" in result.output and "vs passage" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["teachers"] == {"a": str(first), "b": str(second)}
    by_name = {c["name"]: c for c in results["conditions"]}
    assert list(by_name) == [
        "base",
        "passage",
        "base-teacher",
        "teacher:a",
        "teacher:b",
        "supplied",
    ]
    assert by_name["passage"]["vs_passage"] is None
    for name in ("base", "teacher:a", "supplied"):
        versus, row, passage = by_name[name]["vs_passage"], by_name[name], by_name["passage"]
        # paired on the questions both rows answered: the counts follow from the answers
        theirs = {(a["passage"], a["question"]): a["correct"] for a in passage["answers"]}
        mine = [(a["correct"], theirs[(a["passage"], a["question"])]) for a in row["answers"]]
        assert versus["questions"] == len(mine) == row["questions"]
        assert versus["only_this"] == sum(x and not y for x, y in mine)
        assert versus["only_passage"] == sum(y and not x for x, y in mine)
        assert 0.0 <= versus["mcnemar_p"] <= 1.0
    # the same row twice is refused before any work
    twice = runner.invoke(app, [*args, "--teacher", str(first), "--teacher", str(second)])
    assert twice.exit_code == 2 and "the same row" in plain(twice.output)


REFERENCE_ROWS = [
    {
        **EVAL_ROWS[0],
        "self_edits": {
            "big-model": {"self-qa": ["Question 1: Who founded it?\nAnswer 1: Marisol Quenby"]}
        },
    },
    {
        **EVAL_ROWS[2],
        "self_edits": {"big-model": {"self-qa": ["Question: Who is mayor?\nAnswer: Ada Thorne"]}},
    },
]


def test_teacher_distill_records_a_shared_teacher_version_with_its_lineage(
    tiny_settings: Path, data_dir: Path
) -> None:
    from service.store.db import make_engine, make_sessionmaker, session_scope
    from service.store.repositories import teachers as teacher_repo

    data = data_dir / "reference.json"
    data.write_text(json.dumps(REFERENCE_ROWS))
    held_out = data_dir / "heldout.json"
    held_out.write_text(json.dumps([EVAL_ROWS[2]]))
    args = ["teacher", "distill", str(data), "--source", "big-model", "--epochs", "1"]
    result = runner.invoke(app, [*args, "--exclude", str(held_out)])
    assert result.exit_code == 0, result.output
    assert "distilling 1 self-edits of 1 passages" in result.output
    assert "teacher v1 promoted" in result.output
    # a second run continues from version 1 and stays a candidate
    result = runner.invoke(app, [*args, "--from", "1", "--no-promote"])
    assert result.exit_code == 0, result.output
    assert "teacher v2 (candidate)" in result.output
    sessions = make_sessionmaker(make_engine(get_settings().resolved_database_url))
    with session_scope(sessions) as session:
        first = teacher_repo.get_teacher_version(session, tenant_id=None, number=1)
        second = teacher_repo.get_teacher_version(session, tenant_id=None, number=2)
        assert first is not None and second is not None
        assert first.parent_id is None and second.parent_id == first.id
        assert teacher_repo.active_teacher_version(session, tenant_id=None).id == first.id
        metrics = first.metrics
        assert metrics["kind"] == "distilled" and metrics["sources"] == ["big-model"]
        assert metrics["formats"] == ["self-qa"] and metrics["examples"] == 1
        assert metrics["excluded_passages"] == 1 and len(metrics["data_sha256"]) == 64
        assert second.metrics["started_from"] == 1 and second.metrics["examples"] == 2
        assert Path(second.artifact_uri, "adapter_model.safetensors").is_file()
    # the export is a self-contained bf16 folder whose weights match its checksum
    exported = data_dir / "exported"
    result = runner.invoke(app, ["teacher", "export", "1", str(exported)])
    assert result.exit_code == 0, result.output
    meta = json.loads((exported / "seal.json").read_text())
    assert meta["dtype"] == "bfloat16" and meta["lora"]["rank"] == 4
    assert meta["metrics"]["kind"] == "distilled" and meta["exported_from"].endswith("version 1")
    state = load_adapter(exported, expected_checksum=meta["checksum"])
    assert {str(v.dtype) for v in state.values()} == {"torch.bfloat16"}
    again = runner.invoke(app, ["teacher", "export", "1", str(exported)])
    assert again.exit_code == 2 and "exists already" in plain(again.output)
    missing = runner.invoke(app, [*args, "--from", "9"])
    assert missing.exit_code == 2 and "there is no shared teacher version 9" in plain(
        missing.output
    )
    unknown = runner.invoke(app, ["teacher", "distill", str(data), "--source", "nobody"])
    assert unknown.exit_code == 2 and "no self-edit of source(s) nobody" in plain(unknown.output)


def test_eval_compare_explains_what_it_cannot_read(data_dir: Path) -> None:
    bad = data_dir / "bad.json"
    bad.write_text("[1, 2]")
    result = runner.invoke(app, ["eval", "compare", str(bad), str(bad)])
    assert result.exit_code == 2
    assert "not a results.json of `seal eval knowledge`" in plain(result.output)
    result = runner.invoke(app, ["eval", "compare", str(data_dir / "missing.json"), str(bad)])
    assert result.exit_code == 2 and "not a readable results.json" in plain(result.output)


def test_eval_knowledge_sequential_writes_the_forgetting_matrix(
    tiny_settings: Path, data_dir: Path
) -> None:
    out = data_dir / "forgetting"
    args = ["eval", "knowledge", str(tiny_settings), "--passages", "2", "--out", str(out)]
    result = runner.invoke(app, [*args, "--mode", "sequential", "--format", "self-qa"])
    assert result.exit_code == 0, result.output
    matrix = json.loads((out / "forgetting.json").read_text())
    assert matrix["condition"] == "base-teacher"
    assert len(matrix["matrix"]) == 2 and all(len(row) == 2 for row in matrix["matrix"])
    assert json.loads((out / "results.json").read_text())["settings"]["format"] == "self-qa"
    assert (out / "forgetting.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_knowledge_refuses_a_teacher_of_another_shape(
    tiny_settings: Path, tiny_model_dir: Path, data_dir: Path
) -> None:
    teacher = save_teacher(tiny_model_dir, data_dir / "teacher", rank=2)
    args = ["eval", "knowledge", str(tiny_settings), "--passages", "1", "--out", str(data_dir)]
    result = runner.invoke(app, [*args, "--teacher", str(teacher)])
    assert result.exit_code == 2
    assert "does not fit the configured teacher model" in plain(result.output)
    result = runner.invoke(app, [*args, "--teacher", str(data_dir)])
    assert result.exit_code == 2
    assert "is not a saved adapter folder" in plain(result.output)


@pytest.mark.parametrize(
    ("self_edits", "message"),
    [
        ("1. one implication", '"self_edits" must be a list of non-empty strings'),
        ([["nested"]], '"self_edits" must be a list of non-empty strings'),
        ([""], '"self_edits" must be a list of non-empty strings'),
    ],
)
def test_eval_knowledge_explains_malformed_self_edits(
    data_dir: Path, self_edits: object, message: str
) -> None:
    bad = data_dir / "bad.json"
    bad.write_text(json.dumps([{**EVAL_ROWS[0], "self_edits": self_edits}]))
    result = runner.invoke(app, ["eval", "knowledge", str(bad), "--out", str(data_dir)])
    assert result.exit_code == 2
    assert message in plain(result.output) and "passage 0 ('Zorblat Industries')" in plain(
        result.output
    )


def test_eval_knowledge_explains_a_bad_data_file(data_dir: Path) -> None:
    bad = data_dir / "bad.json"
    bad.write_text('[{"title": "T"}]')
    result = runner.invoke(app, ["eval", "knowledge", str(bad), "--out", str(data_dir)])
    assert result.exit_code == 2
    assert "expected a JSON list of {title, context, questions" in plain(result.output)


def test_eval_knowledge_needs_enough_passages(tiny_settings: Path, data_dir: Path) -> None:
    args = ["eval", "knowledge", str(tiny_settings), "--passages", "3", "--out", str(data_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "has 2 passages with questions; --skip 0 --passages 3 needs more" in plain(result.output)
    result = runner.invoke(app, [*args[:3], "--skip", "2", "--passages", "1", *args[5:]])
    assert result.exit_code == 2 and "--skip 2 --passages 1 needs more" in plain(result.output)


def test_eval_knowledge_skips_the_first_passages(tiny_settings: Path, data_dir: Path) -> None:
    out = data_dir / "skipped"
    args = ["eval", "knowledge", str(tiny_settings), "--skip", "1", "--passages", "1"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["skip"] == 1
    # the second passage with questions, Vellmora, and only it
    titles = {a["title"] for c in results["conditions"] for a in c["answers"]}
    assert titles == {"Vellmora"}
    # --resume goes on from the journal: here nothing is left to run, the results are the same
    again = runner.invoke(app, [*args, "--out", str(out), "--resume"])
    assert again.exit_code == 0, again.output
    assert "resuming: 1 of 1 passages done" in again.output
    resumed = json.loads((out / "results.json").read_text())
    assert [c["answers"] for c in resumed["conditions"]] == [
        c["answers"] for c in results["conditions"]
    ]
    other = runner.invoke(app, [*args, "--out", str(out), "--resume", "--seed", "5"])
    assert other.exit_code == 2 and "was written by a run with other settings" in plain(
        other.output
    )
    batch = runner.invoke(app, [*args, "--out", str(out), "--resume", "--mode", "batch"])
    assert batch.exit_code == 2 and "--resume goes on with a --mode single run" in plain(
        batch.output
    )


def test_eval_proxy_reports_agreement_and_time(tiny_settings: Path, data_dir: Path) -> None:
    out = data_dir / "proxy.json"
    args = ["eval", "proxy", str(tiny_settings), "--passages", "2", "--k", "3", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Spearman" in result.output and "proxy's pick" in result.output
    payload = json.loads(out.read_text())
    assert payload["passages"] == 2 and payload["complete"] is True
    assert [len(r["full"]) for r in payload["records"]] == [3, 3]
    assert [len(r["proxy"]) for r in payload["records"]] == [3, 3]
    assert payload["full_seconds"] > 0 and payload["proxy_seconds"] > 0
    assert set(payload["agreement"]) >= {"pooled_spearman", "top_pick_is_best", "pick_reward"}


def test_eval_proxy_keeps_the_passages_done_when_a_run_is_cut_short(
    tiny_settings: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import research.proxy

    real = research.proxy.write_self_edits
    calls: list[int] = []

    def fails_on_the_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(research.proxy, "write_self_edits", fails_on_the_second)
    out = data_dir / "proxy.json"
    args = ["eval", "proxy", str(tiny_settings), "--passages", "2", "--k", "2", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    payload = json.loads(out.read_text())
    assert payload["passages"] == 1 and payload["complete"] is False
    assert [len(r["full"]) for r in payload["records"]] == [2]


def test_bench_update_prints_every_figure(tiny_settings: Path, data_dir: Path) -> None:
    out = data_dir / "bench.json"
    args = ["bench", "update", "--data", str(tiny_settings), "--k", "2", "--documents", "2"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    for figure in ("teacher tokens/s", "training tokens/s", "k=2 candidates", "nightly batch"):
        assert figure in result.output
    report = json.loads(out.read_text())
    assert report["k"] == 2 and report["ceiling"] > 0
    assert all(f["reference"] > 0 and f["ours"] > 0 for f in report["figures"])


def test_bench_update_needs_enough_documents(tiny_settings: Path) -> None:
    result = runner.invoke(
        app, ["bench", "update", "--data", str(tiny_settings), "--documents", "5"]
    )
    assert result.exit_code == 2
    assert "passages with questions" in plain(result.output)


def test_the_rest_em_command_starts_from_the_shipped_teacher_on_a_new_store(
    data_dir: Path,
) -> None:
    from sealctl.common import shared_runtime
    from service.store.repositories import teachers as teacher_repo
    from worker.bundled import bundled_meta

    settings = get_settings()
    meta = bundled_meta()
    assert meta is not None
    runtime = shared_runtime(settings)  # as distillation opens it: no teacher registered
    with runtime.sessions() as session:
        assert teacher_repo.shared_teacher_versions(session) == []
    runtime = shared_runtime(settings, bundled=True)  # as `seal teacher train` opens it
    with runtime.sessions() as session:
        (version,) = teacher_repo.shared_teacher_versions(session)
        assert version.number == 1 and version.checksum == meta["checksum"]


def test_skill_commands_explain_what_they_cannot_read(data_dir: Path) -> None:
    for args in (["eval", "skills", "nowhere"], ["bench", "skill", "nowhere"]):
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert "nowhere is neither `text`, a folder of ARC tasks nor a file" in plain(result.output)
    result = runner.invoke(app, ["bench", "skill", "text", "--task", "no-such-task"])
    assert result.exit_code != 0 and "'no-such-task' is not a task of text" in plain(result.output)


def test_eval_skills_reuses_only_a_run_of_the_same_data_k_and_seed(data_dir: Path) -> None:
    earlier = data_dir / "earlier.json"
    earlier.write_text(json.dumps({"data": "text", "k": 2, "seed": 0, "attempts": []}))
    result = runner.invoke(app, ["eval", "skills", "text", "--k", "3", "--reuse", str(earlier)])
    assert result.exit_code != 0
    assert "was run on text with k=2 and seed 0, not on text with k=3 and seed 0" in plain(
        result.output
    )
    earlier.write_text("[1]")
    result = runner.invoke(app, ["eval", "skills", "text", "--reuse", str(earlier)])
    assert result.exit_code != 0 and "not a readable --out of this command" in plain(result.output)
