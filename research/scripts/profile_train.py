"""Where the time of ``train_many`` goes: five candidates on the first passage of dev.json (the
passage and its sentences, each candidate in another order), two epochs, under
``torch.profiler``; prints tokens/s and the 25 operators with the most self CPU time.

    .venv/bin/python research/scripts/profile_train.py [bfloat16|float32]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from seal.lora import STUDENT, AdapterHost
from seal.modeling import load_model
from seal.multi import train_many
from seal.train import TrainConfig
from service.settings import Settings
from worker.config import student_spec

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "squad" / "dev.json"


def main() -> None:
    dtype = sys.argv[1] if len(sys.argv) > 1 else "auto"
    settings = Settings()
    loaded = load_model(
        settings.student_model, settings.resolved_model_cache_dir, device="cpu", dtype=dtype
    )
    host = AdapterHost(loaded, {STUDENT: student_spec(settings)})
    doc = json.loads(DATA.read_text())[0]
    sentences = [s.strip() + "." for s in doc["context"].split(". ") if s.strip()]
    sets = [[doc["context"], *sentences[i:], *sentences[:i]] for i in range(5)]
    train_many(host, sets, TrainConfig(epochs=1), init=None)  # warm-up
    started = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        results = train_many(host, sets, TrainConfig(epochs=2), init=None)
    seconds = time.perf_counter() - started
    tokens = sum(r.tokens for r in results)
    print(f"{loaded.model.dtype}: {tokens} tokens in {seconds:.1f} s, {tokens / seconds:.1f} tok/s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
