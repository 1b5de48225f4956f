"""seal bench skill's harness on the tiny model: each task's skill learned by the worker's own
job on a fresh embedded store, with its phases timed."""

from __future__ import annotations

from pathlib import Path

from research.skill_job import format_skill_bench, run_skill_bench
from seal.skills.tasks import Demo, SkillTask
from service.settings import Settings
from tests.model_cache import CACHE

REVERSE = SkillTask(
    "reverse",
    (Demo("ab", "ba"), Demo("cd", "dc"), Demo("ef", "fe")),
    "Reverse the letters.",
)
UPPER = SkillTask("upper", (Demo("ab", "AB"), Demo("cd", "CD")), "")


def test_each_task_is_learned_by_a_skill_job_with_its_phases_timed(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "ignored",
        model_cache_dir=CACHE,
        student_model=str(tiny_model_dir),
        teacher_model=str(tiny_model_dir),
        lora_rank=4,
        lora_alpha=8,
        dtype="float32",
        skill_configs=1,
    )
    lines: list[str] = []
    report = run_skill_bench(settings, [REVERSE, UPPER], machine="here", on_phase=lines.append)

    assert [r.task for r in report.runs] == ["reverse", "upper"]
    for run in report.runs:
        assert run.status == "succeeded", run.error
        assert run.result is not None and run.result["configurations"] == 1
        assert run.seconds > 0 and run.phases
        assert any(p.message.startswith("configuration 1 of 1") for p in run.phases)
    assert report.configurations == 1 and report.scale == "cpu" and report.fixed_candidate
    assert not (tmp_path / "ignored").exists()  # a fresh store of its own
    assert "upper: succeeded" in " ".join(lines)
    table = format_skill_bench(report)
    assert "| reverse | 3 | succeeded |" in table and "slowest job:" in table
    assert "1 configurations per job and the fixed one" in table
    assert any(p.message.startswith("the fixed configuration") for p in report.runs[0].phases)
