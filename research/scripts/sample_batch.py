"""Teacher sampling speed by how many documents share a batch: the k self-edits of 4 documents
from ``dev.json``, sampled 1, 2 and 4 documents at a time (``SEAL_SAMPLE_BATCH_SIZE`` of k, 2k
and 4k), with the service's sampling settings and the untrained teacher. Each trial runs the
three sizes in turn:

    .venv/bin/python research/scripts/sample_batch.py ../shared/data/squad/dev.json --trials 2
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from research.data import load_passages
from seal.knowledge import Teacher, write_self_edits_many
from service.settings import Settings
from worker.config import inner_loop_config
from worker.runtime import student_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--documents", type=int, default=4)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--trials", type=int, default=1)
    args = parser.parse_args()

    settings = Settings()
    host = student_host(settings)
    passages = [p for p in load_passages(args.data) if p.questions][: args.documents]
    config = inner_loop_config(settings)
    sample = replace(config.sample, max_new_tokens=args.max_new_tokens, seed=0)
    print(
        f"{len(passages)} documents x k={args.k}, up to {args.max_new_tokens} tokens each, "
        f"on {host.device} in {next(host.model.parameters()).dtype}",
        flush=True,
    )
    sizes = sorted({1, 2, len(passages)})
    for trial in range(1, args.trials + 1):
        for per_batch in sizes:
            config_n = replace(sample, batch_size=per_batch * args.k)
            started = time.perf_counter()
            texts = write_self_edits_many(
                host, passages, config.format, args.k, config_n, Teacher()
            )
            seconds = time.perf_counter() - started
            tokens = sum(len(host.tokenizer(t)["input_ids"]) for own in texts for t in own)
            print(
                f"trial {trial}: {per_batch} document(s) per batch ({per_batch * args.k} rows): "
                f"{seconds:.1f} s, {tokens} tokens, {tokens / seconds:.1f} tok/s, "
                f"{seconds / len(passages):.1f} s per document",
                flush=True,
            )


if __name__ == "__main__":
    main()
