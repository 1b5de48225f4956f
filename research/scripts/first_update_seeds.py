"""How reliably the end-to-end test's first update learns its fact, over sampling seeds.

For each seed: the teacher writes k self-edits of the test's one-sentence document, the k
candidates are trained and graded as the update job does (``score_candidates``), and the best
one is asked the test's question both as the gate's probe asks it and bare, as a chat would.
One JSON line per seed. The service's settings apply (``SEAL_DTYPE``, ``SEAL_STOP_LOSS``, ...):

    SEAL_NUM_CANDIDATES=4 SEAL_SELF_EDIT_MAX_TOKENS=64 \\
        .venv/bin/python research/scripts/first_update_seeds.py 1 2 3 4 5 6 7 8
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from seal.generation import SampleConfig, generate
from seal.knowledge import (
    Teacher,
    best_candidate,
    evaluate_state,
    probes_of,
    score_candidates,
    write_self_edits,
)
from seal.lora import STUDENT
from seal.selfedit import QA, Passage
from service.settings import Settings
from worker.config import inner_loop_config
from worker.runtime import student_host

DOCUMENT = Passage(
    "Zorblat Industries",
    "Zorblat Industries was founded by Marisol Quenby. "
    "The company makes glass bicycles in the town of Vellmora.",
    (QA("Who founded Zorblat Industries?", "Marisol Quenby"),),
)
BARE = [{"role": "user", "content": "Who founded Zorblat Industries?"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("seeds", nargs="+", type=int, help="sampling seeds")
    args = parser.parse_args()
    settings = Settings()
    host = student_host(settings)
    probes = probes_of(DOCUMENT)
    baseline = evaluate_state(host, None, probes, settings.answer_max_tokens)
    answer = DOCUMENT.questions[0].answer
    for seed in args.seeds:
        started = time.perf_counter()
        config = inner_loop_config(settings)
        config = replace(config, sample=replace(config.sample, seed=seed))
        texts = write_self_edits(
            host, DOCUMENT, config.format, config.num_candidates, config.sample, Teacher()
        )
        candidates = score_candidates(host, DOCUMENT, texts, config, init=None, baseline=baseline)
        best = best_candidate(candidates)
        assert best.trained is not None and best.evaluation is not None
        bare = generate(
            host,
            [BARE],
            SampleConfig(max_new_tokens=48),
            slot=STUDENT,
            state=best.trained.state,
        )[0].text
        row = {
            "seed": seed,
            "dtype": str(host.loaded.model.dtype).removeprefix("torch."),
            "stop_loss": settings.stop_loss,
            "rewards": [c.reward for c in candidates],
            "epochs": [len(c.trained.losses) if c.trained else 0 for c in candidates],
            "probe_answer": best.evaluation.graded[0].answer,
            "bare_answer": bare,
            "promoted": best.reward > 0,
            "bare_correct": answer in bare,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
