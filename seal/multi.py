"""Many LoRA adapters trained and graded together on one shared base model.

The SEAL inner loop trains k adapters from the same starting point, one per self-edit, and
grades each on the same probes. Done one at a time that is k small, badly batched runs; here
the k adapters are stacked and run side by side in the same forward and backward passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from seal.grading import Evaluation, Probe, evaluate
from seal.lora import AdapterHost, AdapterState
from seal.train import TrainConfig, TrainResult, tokenize, train_adapter

STUDENT = "student"


def train_many(
    host: AdapterHost,
    sequence_sets: Sequence[Sequence[str]],
    config: TrainConfig,
    *,
    init: AdapterState | None,
    slot: str = STUDENT,
    on_step: Callable[[int, int], None] | None = None,
) -> list[TrainResult]:
    """One adapter per set of training sequences, each trained from ``init``."""
    results = []
    for sequences in sequence_sets:
        examples = tokenize(host, sequences, config.max_seq_len)
        results.append(train_adapter(host, slot, examples, config, init=init, on_step=on_step))
    return results


def evaluate_many(
    host: AdapterHost,
    states: Sequence[AdapterState | None],
    probes: Sequence[Probe],
    max_new_tokens: int,
    *,
    slot: str = STUDENT,
) -> list[Evaluation]:
    """Grade each adapter state (None: the bare base model) on the same probes."""
    return [
        evaluate(
            host,
            probes,
            slot=slot if state is not None else None,
            state=state,
            max_new_tokens=max_new_tokens,
        )
        for state in states
    ]
