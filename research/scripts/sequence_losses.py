"""How many training tokens would skipping memorized sequences save? For the first N passages
of dev.json, the untrained teacher writes k self-edits each (the service's format and
sampling settings); ``train_many`` trains the k candidates as the service does (its early
stop included), and every sequence's mean token loss is recorded at each epoch it trains.

It then counts, for each threshold, the tokens of the sequences that had already reached a
loss at or below it in an earlier epoch: what a rule "stop training a sequence once it is
memorized" would have skipped, at most (skipping would change the later losses too).

    .venv/bin/python research/scripts/sequence_losses.py --passages 4 \\
        --out var/bench/sequence-losses.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import seal.multi as multi
from research.bench import sample_self_edits
from research.data import load_passages
from seal.knowledge import InnerLoopConfig
from seal.lora import AdapterHost
from seal.selfedit import Passage, training_sequences
from service.settings import Settings
from worker.config import inner_loop_config
from worker.runtime import student_host

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "squad" / "dev.json"
THRESHOLDS = (0.05, 0.1, 0.15, 0.25, 0.5)


def skippable(losses: list[float], tokens: int, threshold: float) -> int:
    """Tokens of the epochs after the first whose loss reached ``threshold`` or less."""
    for epoch, loss in enumerate(losses):
        if loss <= threshold:
            return tokens * (len(losses) - epoch - 1)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=4)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write every sequence's losses here (JSON)")
    args = parser.parse_args()

    settings = Settings()
    host = student_host(settings)
    config = inner_loop_config(settings)
    docs = load_passages(DATA)[: args.passages]

    recorder = _LossRecorder()
    recorder.install()
    candidates: list[dict[str, Any]] = []
    for d, doc in enumerate(docs):
        candidates += _train_candidates(host, config, recorder, d, doc, args.k)

    total = sum(c["tokens"] for c in candidates)
    print(f"\n{len(candidates)} candidates, {total} training tokens ({config.format})")
    print("loss threshold | tokens a memorized-sequence skip would save, at most")
    for threshold in THRESHOLDS:
        saved = sum(
            skippable(s["losses"], s["tokens"], threshold)
            for c in candidates
            for s in c["sequences"]
        )
        print(f"{threshold:>14} | {saved} ({saved / total:.1%})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(candidates, indent=1))


@dataclass
class _LossRecorder:
    """Every training sequence's mean token loss at each epoch it trains, read off
    ``seal.multi``'s own batching and loss (which ``install`` wraps), so that the service's
    training code runs unchanged."""

    passes: list[list[tuple[int, Any]]] = field(default_factory=list)
    """Each pass's (candidate, example) pairs, in the order of its per-position losses."""
    losses: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    """``id(example)``: its loss per epoch."""
    owner_tokens: dict[int, tuple[int, int]] = field(default_factory=dict)
    """``id(example)``: its candidate and its loss tokens."""

    def install(self) -> None:
        tensors, vocab_loss_backward = multi.tensors, multi.vocab_loss_backward

        def recording_tensors(rows: Any, pad_id: int, device: Any) -> Any:
            self.passes.append([pair for row in rows for pair in row])
            return tensors(rows, pad_id, device)

        def recording_loss(*args: Any, **kwargs: Any) -> Any:
            token_loss = vocab_loss_backward(*args, **kwargs)
            start = 0
            for owner, ex in self.passes.pop():
                n = max(0, len(ex.ids) - multi._loss_start(ex))
                if n:
                    self.losses[id(ex)].append(float(token_loss[start : start + n].mean()))
                    self.owner_tokens[id(ex)] = (owner, n)
                start += n
            return token_loss

        multi.tensors, multi.vocab_loss_backward = recording_tensors, recording_loss  # type: ignore[assignment]

    def clear(self) -> None:
        self.losses.clear()
        self.owner_tokens.clear()

    def sequences(self, candidate: int) -> list[dict[str, Any]]:
        """The sequences of ``candidate`` recorded since ``clear``: loss tokens and losses."""
        return [
            {"tokens": self.owner_tokens[key][1], "losses": per_epoch}
            for key, per_epoch in self.losses.items()
            if self.owner_tokens[key][0] == candidate
        ]


def _train_candidates(
    host: AdapterHost,
    config: InnerLoopConfig,
    recorder: _LossRecorder,
    d: int,
    doc: Passage,
    k: int,
) -> list[dict[str, Any]]:
    """Passage ``d``'s k candidates, written by the untrained teacher and trained together as
    the service trains them, each with its sequences' recorded losses."""

    (texts,), _ = sample_self_edits(host, [doc], config, k, together=True)
    sets = [training_sequences(doc, [(config.format, t)]) for t in texts]
    recorder.clear()
    started = time.perf_counter()
    results = multi.train_many(host, sets, config.train, init=None)
    seconds = time.perf_counter() - started
    candidates: list[dict[str, Any]] = []
    for j, result in enumerate(results):
        sequences = recorder.sequences(j)
        candidates.append(
            {"passage": d, "candidate": j, "epoch_losses": result.losses,
             "tokens": result.tokens, "sequences": sequences}
        )  # fmt: skip
        if sum(s["tokens"] * len(s["losses"]) for s in sequences) != result.tokens:
            raise SystemExit(f"passage {d} candidate {j}: the recorded losses miss tokens")
        longest = max(s["tokens"] for s in sequences)
        print(
            f"passage {d} candidate {j}: {len(sequences)} sequences (longest {longest} "
            f"tokens), {len(result.losses)} epochs, {result.tokens} tokens",
            flush=True,
        )
    print(f"passage {d}: trained in {seconds:.1f} s", flush=True)
    return candidates


if __name__ == "__main__":
    main()
