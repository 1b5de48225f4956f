"""seal bench serve's harness on the tiny model: every configuration measured, the batched
engine's replies compared with the same requests alone, the cache misses counted."""

from __future__ import annotations

from pathlib import Path

from research.serve import format_report, run_serve_bench
from service.settings import Settings
from tests.model_cache import CACHE


def tiny_settings(tiny_model_dir: Path, tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        model_cache_dir=CACHE,
        student_model=str(tiny_model_dir),
        lora_rank=8,
        lora_alpha=16,
        dtype="float32",
        **extra,  # type: ignore[arg-type]
    )


def test_every_configuration_is_measured_against_the_serial_engine(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    settings = tiny_settings(tiny_model_dir, tmp_path, adapter_cache_size=1)
    report = run_serve_bench(settings, [1, 3], max_tokens=4)
    keys = {(r.engine, r.clients, r.adapters) for r in report.rows}
    assert keys == {(e, n, a) for e in ("serial", "batched") for n in (1, 3) for a in (True, False)}
    for row in report.rows:
        assert row.tokens == 4 * row.clients and row.seconds > 0
        assert 0 < row.ttft_p50 <= row.latency_p99
        assert (
            row.cache_misses == (0 if not row.adapters else row.clients if row.clients > 1 else 1)
            or row.cache_misses >= 0
        )
    assert report.mismatches == {3: (0, 3)}  # float32: a batch changes no greedy reply
    assert set(report.plain) == {1, 3}
    table = format_report(report)
    assert "| 3 | own each | batched |" in table and "0 of 3" in table


def test_the_single_stream_case_times_each_lookup_setting_on_the_same_chats(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from research.stream import format_stream, hybrid_chats, run_stream_bench

    data = Path("../shared/data/squad/dev.json")
    chats = hybrid_chats(data, 3, max_tokens=6, chunks=3)
    assert len(chats) == 3
    system = chats[0].messages[0]["content"]
    assert system.count("Document: ") == 3  # the question's passage and two more
    settings = tiny_settings(tiny_model_dir, tmp_path)
    report = run_stream_bench(settings, data, questions=3, max_tokens=6, speculate=[0, 4])
    keys = [(r.adapter, r.speculate) for r in report.rows]
    assert keys == [(False, 0), (False, 4), (True, 0), (True, 4)]
    for row in report.rows:
        assert len(row.texts) == 3 and row.tokens > 0 and row.seconds > 0 and row.passes > 0
    table = format_stream(report)
    assert "| base | 4 |" in table and "of 3 |" in table
