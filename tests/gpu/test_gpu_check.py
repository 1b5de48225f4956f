"""research/scripts/gpu_check.sh, checked on the CPU before a device's scarce minutes: it is
valid bash, and its dry run names every step with the commands it would run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "research" / "scripts" / "gpu_check.sh"


def test_the_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_a_dry_run_names_every_step(tmp_path: Path) -> None:
    data = tmp_path / "dev.json"
    data.write_text("[]")
    env = {**os.environ, "SEAL_GPU_CHECK_DRY": "1", "DATA": str(data), "PYTHON": "python3"}
    out = subprocess.run(
        [str(SCRIPT), str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    steps = [line.split(" ")[1] for line in out.splitlines() if line.startswith("== ")]
    assert steps == ["device", "gpu-tests", "bench-update", "bench-serve", "gpu_check:"]
    assert "-m gpu tests/gpu" in out
    assert f"--data {data}" in out and "SEAL_DTYPE=bfloat16" in out
    assert "gpu_check: passed" in out


def test_without_data_the_update_bench_is_reported_missing(tmp_path: Path) -> None:
    env = {**os.environ, "SEAL_GPU_CHECK_DRY": "1", "DATA": "", "PYTHON": "python3"}
    result = subprocess.run(
        [str(SCRIPT), str(tmp_path / "out")],
        cwd=tmp_path,  # no ../shared or shared/ here
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "bench-update: skipped, no data file" in result.stdout
