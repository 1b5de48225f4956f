"""``seal bench``: what an update costs on this machine, against a plain reference."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

bench_app = typer.Typer(help="Benchmarks of the inner loop.", no_args_is_help=True)

DEFAULT_DATA = Path("../shared/data/squad/dev.json")


@bench_app.command("update")
def bench_update(
    data: Annotated[
        Path, typer.Option(help="SQuAD-shaped JSON; the workload is its first passages")
    ] = DEFAULT_DATA,
    k: Annotated[int, typer.Option(min=1, max=16, help="Candidates per document")] = 5,
    documents: Annotated[
        int, typer.Option(min=1, help="Documents in the nightly-batch workload")
    ] = 4,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Training epochs (default: settings, paper: 10)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here")] = None,
    reference_dtype: Annotated[
        str,
        typer.Option(
            help="The reference's dtype: plain (float32 on a CPU, bfloat16 on a GPU, what a "
            "straightforward implementation uses), same (ours, SEAL_DTYPE), or a dtype name"
        ),
    ] = "plain",
) -> None:
    """Teacher tokens/s, training tokens/s, seconds per inner loop, seconds for k candidates,
    seconds per document (select and nightly batch) and peak memory, each beside the plain
    reference (one candidate at a time, a model copy per candidate, padded batches) and the
    measured training ceiling of this device."""
    from dataclasses import replace

    import torch

    from seal.bench import format_report, run_bench
    from seal.multi import pass_tokens
    from sealctl.cli import load_passages
    from service.settings import get_settings
    from worker.runtime import inner_loop_config, student_host, student_spec

    settings = get_settings()
    if reference_dtype not in ("plain", "same", "float32", "bfloat16", "float16"):
        raise typer.BadParameter(
            f"--reference-dtype must be plain, same, float32, bfloat16 or float16, "
            f"not {reference_dtype!r}"
        )
    passages = [p for p in load_passages(data) if p.questions]
    if len(passages) < documents:
        raise typer.BadParameter(f"{data} has {len(passages)} passages with questions")
    config = inner_loop_config(settings)
    if epochs is not None:
        config = replace(config, train=replace(config.train, epochs=epochs))
    spec = student_spec(settings)
    started = time.perf_counter()
    host = student_host(settings)
    typer.echo(
        f"model {settings.student_model} on {host.device} loaded in "
        f"{time.perf_counter() - started:.1f} s; workload: {data}, k={k}, "
        f"{config.train.epochs} epochs, self-edits of up to {config.sample.max_new_tokens} tokens, "
        f"training passes of at most "
        f"{pass_tokens(config.train, host.device)} tokens",
        err=True,
    )

    def on_phase(name: str) -> None:
        typer.echo(f"[{time.perf_counter() - started:7.1f} s] {name}", err=True)

    report = run_bench(
        host,
        spec,
        passages,
        config,
        k=k,
        nightly_documents=documents,
        batch_self_edits=settings.batch_self_edits,
        reference_dtype={"plain": None, "same": host.loaded.model.dtype}.get(
            reference_dtype, getattr(torch, reference_dtype, None)
        ),
        on_phase=on_phase,
    )
    typer.echo(format_report(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(report), indent=2))
