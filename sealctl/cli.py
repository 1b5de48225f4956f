"""The ``seal`` command: run the embedded service, its processes one by one, and migrations."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
