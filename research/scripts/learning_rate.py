"""How the inner loop's learning rate trades training tokens for answers: the untrained teacher
writes k=5 self-edits for each of the first N passages of dev.json (once, shared by every
rate), then, for each learning rate, the k candidates of each passage train together with the
service's settings (``SEAL_STOP_LOSS`` and the rest) and are graded on the passage's
questions. One line per rate: training tokens per candidate, the epochs each candidate ran
before the early stop, training seconds, and the questions answered over all candidates.

    .venv/bin/python research/scripts/learning_rate.py --passages 2 1e-3 2e-3 3e-3
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from research.bench import sample_self_edits
from research.data import load_passages
from seal.grading import Evaluation
from seal.knowledge import score_candidates
from service.settings import Settings
from worker.config import inner_loop_config
from worker.runtime import student_host

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "squad" / "dev.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rates", nargs="+", type=float, help="learning rates to compare")
    parser.add_argument("--passages", type=int, default=2, help="first passages of dev.json")
    parser.add_argument("--k", type=int, default=5, help="self-edits per passage")
    args = parser.parse_args()

    settings = Settings()
    host = student_host(settings)
    config = inner_loop_config(settings)
    docs = [p for p in load_passages(DATA) if p.questions][: args.passages]
    texts, _ = sample_self_edits(host, docs, config, args.k, together=True)
    for rate in args.rates:
        train = replace(config.train, learning_rate=rate)
        tokens = correct = asked = 0
        seconds = 0.0
        epochs: list[int] = []
        for doc, own in zip(docs, texts, strict=True):
            # the service's inner loop: the k candidates trained together, then graded together
            # (the reward's baseline does not matter here)
            for c in score_candidates(
                host, doc, own, replace(config, train=train), init=None, baseline=Evaluation([])
            ):
                assert c.trained is not None and c.evaluation is not None
                tokens += c.trained.tokens
                seconds += c.trained.seconds  # each candidate's share of the joint training
                epochs.append(len(c.trained.losses))
                correct += c.evaluation.correct
                asked += len(c.evaluation.graded)
        print(
            f"learning rate {rate:g} ({host.loaded.model.dtype}, stop loss {train.stop_loss:g}): "
            f"{tokens / len(epochs):.0f} training tokens per candidate, epochs {epochs}, "
            f"training {seconds:.0f} s, {correct}/{asked} answers correct",
            flush=True,
        )


if __name__ == "__main__":
    main()
