"""Adapters of different sizes of work decoded together on a bf16 model on a CPU (the
machines with bf16 matrix units run the service in bf16): the adapters' products run in
float32 there, and the activations must meet them in that dtype."""

from __future__ import annotations

from pathlib import Path

import torch

from seal.grading import Probe
from seal.lora import AdapterHost
from seal.multi import evaluate_many, train_many
from seal.selfedit import QA
from seal.train import TrainConfig
from tests.tiny import SPEC, load_tiny


def test_several_adapters_decode_together_on_a_bf16_model(tiny_model_dir: Path) -> None:
    loaded = load_tiny(tiny_model_dir)
    loaded.model.to(torch.bfloat16)
    host = AdapterHost(loaded, {"student": SPEC}, seed=0)
    trained = train_many(
        host,
        [["Zorblat was founded by Marisol Quenby."], ["Vellmora makes glass bicycles."]],
        TrainConfig(epochs=1, batch_size=2),
        init=None,
    )
    probes = [
        Probe("Zorblat", QA("Who founded it?", "Marisol Quenby")),
        Probe("Vellmora", QA("What does the small town of Vellmora make every year?", "bicycles")),
        Probe("Vellmora", QA("Where is it?", "Oske")),
    ]
    # batches of 4 rows: one holds three rows of the first adapter and one of the second
    together = evaluate_many(host, [t.state for t in trained], probes, 4, batch_size=4)
    alone = [evaluate_many(host, [t.state], probes, 4)[0] for t in trained]
    assert [[g.answer for g in e.graded] for e in together] == [
        [g.answer for g in e.graded] for e in alone
    ]
