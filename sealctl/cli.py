"""The ``seal`` command: run the embedded service, its processes one by one, and migrations."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from service.settings import Settings, get_settings

app = typer.Typer(help="SEAL: teach a tenant's student model its documents.", no_args_is_help=True)
log = logging.getLogger("seal")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _prepare(settings: Settings) -> str:
    """Migrate the store, make sure the admin key and the converted model exist."""
    from migrations import upgrade
    from seal.modeling import resolve_model_path

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    key = settings.ensure_admin_key()
    for name in dict.fromkeys([settings.student_model, settings.teacher_model]):
        started = time.perf_counter()
        path = resolve_model_path(name, settings.resolved_model_cache_dir)
        log.info("model %s ready at %s (%.1f s)", name, path, time.perf_counter() - started)
    return key


def _commands(settings: Settings) -> dict[str, list[str]]:
    py = sys.executable
    beat_file = str((settings.data_dir / "celerybeat-schedule").resolve())
    return {
        "api": [
            py,
            "-m",
            "uvicorn",
            "service.app:create_app",
            "--factory",
            "--host",
            settings.host,
            "--port",
            str(settings.port),
        ],
        "worker": [
            py,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        "beat": [
            py,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "beat",
            "--loglevel=INFO",
            "--schedule",
            beat_file,
        ],
    }


@app.command()
def run() -> None:
    """Start the api, a worker and the beat (embedded default: no servers needed)."""
    settings = get_settings()
    _setup_logging(settings)
    key = _prepare(settings)
    env = {**os.environ, "SEAL_ADMIN_KEY": key}
    procs = {name: subprocess.Popen(cmd, env=env) for name, cmd in _commands(settings).items()}
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"\nSEAL is starting at {url}  (API docs: {url}/docs)\n"
        f"admin key: {key}\n"
        f"data: {settings.data_dir.resolve()}   stop: Ctrl+C\n",
        flush=True,
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; stopping", flush=True)
                    code, stopping = proc.returncode or 1, True
                    break
            time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    raise typer.Exit(code)


@app.command()
def migrate() -> None:
    """Apply the store's migrations (alembic upgrade head)."""
    from migrations import upgrade

    settings = get_settings()
    _setup_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    print("store migrated", flush=True)


@app.command()
def prepare() -> None:
    """Migrate the store and convert the configured models once (what `run` does first)."""
    settings = get_settings()
    _setup_logging(settings)
    key = _prepare(settings)
    if settings.environment == "development":
        print(f"admin key: {key}")


@app.command()
def process(name: Annotated[str, typer.Argument(help="api, worker or beat")]) -> None:
    """Run one process in the foreground (as the production images do)."""
    commands = _commands(get_settings())
    if name not in commands:
        raise typer.BadParameter(f"expected one of {', '.join(commands)}, got {name!r}")
    os.execv(commands[name][0], commands[name])


teacher_app = typer.Typer(help="The shared teacher: ReST-EM training and its versions.")
app.add_typer(teacher_app, name="teacher")


def load_passages(path: Path) -> list:  # list[Passage]
    """Passages of a SQuAD-shaped JSON file: [{"title", "context", "questions": [...]}]."""
    from seal.selfedit import QA, Passage

    try:
        rows = json.loads(path.read_text())
        return [
            Passage(
                row["title"],
                row["context"],
                tuple(QA(q["question"], q["answer"]) for q in row.get("questions", [])),
            )
            for row in rows
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise typer.BadParameter(
            f"{path}: expected a JSON list of {{title, context, questions: [{{question, answer}}]}}"
            f" ({exc})"
        ) from exc


@teacher_app.command("train")
def teacher_train(
    data: Annotated[
        Path, typer.Argument(help="SQuAD-shaped JSON (e.g. ../shared/data/squad/train.json)")
    ],
    rounds: Annotated[int, typer.Option(min=1, help="ReST-EM rounds (paper: 2)")] = 2,
    passages: Annotated[
        int, typer.Option(min=1, help="Training passages per round (paper: 50)")
    ] = 8,
    heldout: Annotated[
        int, typer.Option(min=0, help="Held-out passages (from the file's end)")
    ] = 4,
    k: Annotated[
        int | None, typer.Option(help="Self-edits per passage (default: settings)")
    ] = None,
) -> None:
    """Train the shared teacher by ReST-EM on a public data set; each round becomes a teacher
    version, promoted (used by every tenant without its own) when it does at least as well
    on the held-out passages."""
    from tqdm import tqdm

    from migrations import upgrade
    from worker.runtime import Runtime
    from worker.teacher import train_shared_teacher

    settings = get_settings()
    if k is not None:
        settings = settings.model_copy(update={"num_candidates": k})
    _setup_logging(settings)
    all_passages = [p for p in load_passages(data) if p.questions]
    if len(all_passages) < passages + heldout:
        raise typer.BadParameter(
            f"{data} has {len(all_passages)} passages with questions; "
            f"--passages {passages} + --heldout {heldout} needs more"
        )
    train_set = all_passages[:passages]
    heldout_set = all_passages[len(all_passages) - heldout :] if heldout else []
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    from service.store.db import make_engine, make_sessionmaker

    runtime = Runtime(settings, make_sessionmaker(make_engine(settings.resolved_database_url)))
    print(
        f"ReST-EM: {rounds} round(s) x {passages} passages x k={settings.num_candidates} "
        f"self-edits ({settings.self_edit_format}), {heldout} held-out passages",
        flush=True,
    )
    bar = tqdm(total=rounds * passages, unit="passage", dynamic_ncols=True)

    def on_passage(number: int, index: int, scored) -> None:  # type: ignore[no-untyped-def]
        rewards = [round(c.reward, 2) for c in scored.candidates]
        bar.set_description(f"round {number}")
        bar.set_postfix_str(f"rewards {rewards}")
        bar.update(1)

    def on_baseline(evaluation) -> None:  # type: ignore[no-untyped-def]
        tqdm.write(
            f"round 0 (the current teacher): held-out accuracy {evaluation.accuracy:.3f} "
            f"({evaluation.correct}/{len(evaluation.graded)})"
        )

    def on_round(report) -> None:  # type: ignore[no-untyped-def]
        h = report.heldout
        version = f"teacher v{report.version}" if report.version else "no new version"
        tqdm.write(
            f"round {report.round}: mean reward {report.result.mean_reward:+.3f} over "
            f"{len(report.result.rewards)} self-edits, kept {len(report.result.kept)}/{passages}, "
            f"held-out accuracy {h.accuracy:.3f} ({h.correct}/{len(h.graded)}), {version}"
            f"{' promoted' if report.promoted else ''}, {report.seconds:.0f} s"
        )

    train_shared_teacher(
        runtime,
        train_set,
        heldout_set,
        rounds,
        on_passage=on_passage,
        on_round=on_round,
        on_baseline=on_baseline,
    )
    bar.close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
