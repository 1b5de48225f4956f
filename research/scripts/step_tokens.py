"""Training speed and peak memory of ``train_many`` for each pass size (``step_tokens``): five
candidates on the first passage of dev.json (its sentences, each candidate in another order),
three epochs, no early stop, in the service's dtype (``SEAL_DTYPE``). Each size runs in a
fresh process, so that one size's peak memory is not charged to the next; one line each.

    .venv/bin/python research/scripts/step_tokens.py 512 1024 2048
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from research.bench import measured
from research.data import load_passages
from seal.multi import train_many
from seal.selfedit import item_sequences
from service.settings import Settings
from worker.config import inner_loop_config
from worker.runtime import student_host

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "squad" / "dev.json"


def measure(step_tokens: int) -> None:
    settings = Settings()
    host = student_host(settings)
    doc = load_passages(DATA)[0]
    sentences = [s.strip() + "." for s in doc.text.split(". ") if s.strip()]
    sets = [item_sequences(doc, sentences[i:] + sentences[:i]) for i in range(5)]
    config = replace(
        inner_loop_config(settings).train, epochs=3, stop_loss=0.0, step_tokens=step_tokens
    )
    with measured(host.device) as phase:
        results = train_many(host, sets, config, init=None)
    tokens = sum(r.tokens for r in results)
    print(
        f"step_tokens={step_tokens} ({host.loaded.model.dtype}): {phase.seconds:.1f} s, "
        f"{tokens} tokens, {tokens / phase.seconds:.1f} tokens/s, "
        f"peak {phase.peak_bytes / 2**20:.0f} MiB, last epoch loss {results[0].losses[-1]:.4f}",
        flush=True,
    )


def main() -> None:
    if sys.argv[1:2] == ["--one"]:  # the child process: one size
        measure(int(sys.argv[2]))
        return
    for size in [int(a) for a in sys.argv[1:]] or [512, 1024, 2048]:
        subprocess.run([sys.executable, __file__, "--one", str(size)], check=True)


if __name__ == "__main__":
    main()
