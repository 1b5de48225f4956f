"""The ``seal`` command: run the embedded service, its processes one by one, and migrations;
its command groups (``teacher``, ``eval``, ``bench``) live in modules of their own."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from sealctl.bench import bench_app
from sealctl.common import setup_logging
from sealctl.evaluate import eval_app
from sealctl.supervise import Supervisor
from sealctl.teacher import teacher_app
from service.settings import Settings, get_settings

app = typer.Typer(help="SEAL: teach a tenant's student model its documents.", no_args_is_help=True)
log = logging.getLogger("seal")


def admin_key_line(settings: Settings, key: str) -> str:
    """What ``seal run`` and ``seal prepare`` say of the admin key: in development the key
    they made (to sign in with); elsewhere the key is the operator's and never printed."""
    if settings.environment == "development":
        return f"admin key: {key}"
    return "admin key: SEAL_ADMIN_KEY (not printed)"


def _prepare(settings: Settings) -> str:
    """Migrate the store, make sure the admin key, the artifact store's bucket and the
    converted model exist."""
    from migrations import upgrade
    from seal.modeling import resolve_model_path

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    key = settings.ensure_admin_key()
    from service.artifacts import artifacts
    from service.store.db import make_engine, make_sessionmaker
    from worker.bundled import register_bundled_teacher

    artifacts(settings).ensure_bucket()
    engine = make_engine(settings.resolved_database_url)
    try:
        register_bundled_teacher(settings, make_sessionmaker(engine, write=True))
    finally:
        engine.dispose()
    local = [settings.student_model] + (
        [] if settings.external_teacher else [settings.teacher_model]
    )
    for name in dict.fromkeys(local):
        started = time.perf_counter()
        path = resolve_model_path(name, settings.resolved_model_cache_dir)
        log.info("model %s ready at %s (%.1f s)", name, path, time.perf_counter() - started)
    return key


def _commands(settings: Settings) -> dict[str, list[str]]:
    py = sys.executable
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
            "--workers",
            str(settings.api_workers),
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
        "beat": [py, "-m", "worker.beat"],
    }


def _api_env(settings: Settings) -> dict[str, str]:
    """What the API processes' environment adds: with several, one PROMETHEUS_MULTIPROC_DIR
    for their metrics (``service.metrics``), emptied first (files of an earlier run would be
    added to this one's)."""
    if settings.api_workers < 2:
        return {}
    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or settings.data_dir / "metrics")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return {"PROMETHEUS_MULTIPROC_DIR": str(folder)}


@app.command()
def run() -> None:
    """Start the api, a worker and the beat (embedded default: no servers needed); a process
    that dies is restarted."""
    settings = get_settings()
    setup_logging(settings)
    key = _prepare(settings)
    env = {**os.environ, **_api_env(settings), "SEAL_ADMIN_KEY": key}
    supervisor = Supervisor(_commands(settings), env=env, log=lambda line: print(line, flush=True))
    supervisor.start()
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"\nSEAL is starting at {url}  (API docs: {url}/docs)\n"
        f"{admin_key_line(settings, key)}\n"
        f"data: {settings.data_dir.resolve()}   stop: Ctrl+C\n",
        flush=True,
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            supervisor.poll()  # a child that died is restarted, with a growing pause
            time.sleep(0.5)
    finally:
        supervisor.stop()


@app.command()
def migrate() -> None:
    """Apply the store's migrations (alembic upgrade head)."""
    from migrations import upgrade

    settings = get_settings()
    setup_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    print("store migrated", flush=True)


@app.command("push-artifacts")
def push_artifacts() -> None:
    """Upload the versions kept in the local adapter folder to SEAL_ARTIFACT_URL's object
    store and point their rows at it (after turning object storage on)."""
    from sealctl.artifacts import push_local_versions
    from service.store.db import make_engine, make_sessionmaker

    settings = get_settings()
    setup_logging(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        done = push_local_versions(settings, make_sessionmaker(engine, write=True))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    finally:
        engine.dispose()
    print(f"{len(done.pushed)} version(s) pushed, {len(done.left)} left local", flush=True)


@app.command()
def prepare() -> None:
    """Migrate the store and convert the configured models once (what `run` does first)."""
    settings = get_settings()
    setup_logging(settings)
    print(admin_key_line(settings, _prepare(settings)))


@app.command()
def process(name: Annotated[str, typer.Argument(help="api, worker or beat")]) -> None:
    """Run one process in the foreground (as the production images do)."""
    settings = get_settings()
    commands = _commands(settings)
    if name not in commands:
        raise typer.BadParameter(f"expected one of {', '.join(commands)}, got {name!r}")
    if name == "api":
        os.environ.update(_api_env(settings))
    os.execv(commands[name][0], commands[name])


app.add_typer(teacher_app, name="teacher")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
