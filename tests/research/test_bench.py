"""The update benchmark runs its whole workload, ours and the reference, on a tiny model."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from research.bench import _fresh_copy, format_report, measure_ceiling, plain_train, run_bench
from seal.generation import SampleConfig
from seal.knowledge import InnerLoopConfig
from seal.selfedit import QA, Passage
from seal.train import TrainConfig
from tests.tiny import SPEC

PASSAGES = [
    Passage(
        "Zorblat Industries",
        "Zorblat Industries was founded by Marisol Quenby in 1987. It makes glass bicycles.",
        (QA("Who founded Zorblat Industries?", "Marisol Quenby"),),
    ),
    Passage(
        "Vellmora",
        "Vellmora is a town of glassblowers in the north.",
        (QA("What is Vellmora known for?", "glassblowers"), QA("Where is Vellmora?", "north")),
    ),
]
CONFIG = InnerLoopConfig(
    num_candidates=2,
    sample=SampleConfig(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=0),
    train=TrainConfig(epochs=2, batch_size=2, learning_rate=1e-2),
    answer_max_tokens=6,
)


def test_bench_reports_every_figure(tiny_host) -> None:
    phases: list[str] = []
    report = run_bench(
        tiny_host, SPEC, PASSAGES, CONFIG, k=2, nightly_documents=2, on_phase=phases.append
    )
    names = [f.name for f in report.figures]
    assert names == [
        "teacher tokens/s (k samples)",
        "training tokens/s",
        "seconds per inner loop (1 self-edit)",
        "seconds to evaluate k=2 candidates",
        "seconds per document (sample k + evaluate)",
        "seconds per document, nightly batch",
        "peak memory",
    ]
    assert all(f.reference > 0 and f.ours > 0 and f.gain > 0 for f in report.figures)
    assert report.ceiling > 0 and report.figure("training tokens/s").ceiling_share
    assert any(p.startswith("reference") for p in phases) and any(
        p.startswith("ours") for p in phases
    )
    text = format_report(report)
    assert "training tokens/s" in text and "of ceiling" in text


def test_the_reference_runs_in_its_own_dtype(tiny_host) -> None:
    """Ours in bf16 against a float32 reference (the CPU's plain default): the host's model
    serves the reference converted, and comes back to bf16 with the same weights."""
    tiny_host.model.to(torch.bfloat16)
    weights = {n: p.clone() for n, p in tiny_host.model.named_parameters()}
    config = replace(CONFIG, train=replace(CONFIG.train, epochs=1))
    report = run_bench(tiny_host, SPEC, PASSAGES, config, k=2, nightly_documents=1)
    assert (report.dtype, report.reference_dtype) == ("bfloat16", "float32")
    assert report.ceiling > 0 and report.reference_ceiling > 0
    assert "ours bfloat16, reference float32" in format_report(report)
    for name, param in tiny_host.model.named_parameters():
        assert param.dtype == torch.bfloat16 and torch.equal(param, weights[name]), name


def test_reference_trains_a_copy_and_leaves_the_host_alone(tiny_host) -> None:
    before = {k: v.clone() for k, v in tiny_host.state("student").items()}
    model, tokens = plain_train(
        tiny_host, SPEC, ["Vellmora\nA town of glassblowers."], CONFIG.train
    )
    assert tokens > 0
    assert model is not tiny_host.model
    trained = [n for n, p in model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
    assert trained, "the reference copy was not trained"
    after = tiny_host.state("student")
    assert all((before[k] == after[k]).all() for k in before)
    copy = _fresh_copy(tiny_host, replace(SPEC, rank=4))
    assert sum(p.numel() for p in copy.parameters() if p.requires_grad) > 0
    assert measure_ceiling(tiny_host, SPEC, batch=2, length=8) > 0


def test_figure_gain_direction() -> None:
    from research.bench import Figure

    assert Figure("s", "s", 10.0, 2.0, False).gain == pytest.approx(5.0)
    assert Figure("t", "tok/s", 100.0, 250.0, True).gain == pytest.approx(2.5)
    assert Figure("z", "s", 0.0, 1.0, False).gain == 0.0
