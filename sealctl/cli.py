"""The ``seal`` command: run the embedded service, its processes one by one, and migrations."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from seal.selfedit import FORMATS
from sealctl.data import data_rows, load_eval_passages, load_passages
from sealctl.supervise import Supervisor
from service.settings import Settings, get_settings

if TYPE_CHECKING:
    from seal.lora import AdapterHost, AdapterState

app = typer.Typer(help="SEAL: teach a tenant's student model its documents.", no_args_is_help=True)
log = logging.getLogger("seal")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def admin_key_line(settings: Settings, key: str) -> str:
    """What ``seal run`` and ``seal prepare`` say of the admin key: in development the key
    they made (to sign in with); elsewhere the key is the operator's and never printed."""
    if settings.environment == "development":
        return f"admin key: {key}"
    return "admin key: SEAL_ADMIN_KEY (not printed)"


def _prepare(settings: Settings) -> str:
    """Migrate the store, make sure the admin key and the converted model exist."""
    from migrations import upgrade
    from seal.modeling import resolve_model_path

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    key = settings.ensure_admin_key()
    from service.store.db import make_engine, make_sessionmaker
    from worker.bundled import register_bundled_teacher

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
    _setup_logging(settings)
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
    _setup_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    print("store migrated", flush=True)


@app.command()
def prepare() -> None:
    """Migrate the store and convert the configured models once (what `run` does first)."""
    settings = get_settings()
    _setup_logging(settings)
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


teacher_app = typer.Typer(help="The shared teacher: ReST-EM training and its versions.")
app.add_typer(teacher_app, name="teacher")


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
    heldout_skip: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Take the held-out passages after the first N passages with questions instead "
            "of from the file's end (e.g. to keep them out of a distilled teacher's data)",
        ),
    ] = None,
    k: Annotated[
        int | None, typer.Option(help="Self-edits per passage (default: settings)")
    ] = None,
    start: Annotated[
        int | None,
        typer.Option(
            "--from", help="Start from this shared teacher version (default: the active one)"
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Go on with the stopped run of the same command after its last scored "
            "passage (its journal: DATA_DIR/checkpoints/teacher-train.jsonl)"
        ),
    ] = False,
) -> None:
    """Train the shared teacher by ReST-EM on a public data set; each round becomes a teacher
    version, promoted (used by every tenant without its own) when it does at least as well
    on the held-out passages."""
    from tqdm import tqdm

    from worker.jobs.teacher import train_shared_teacher

    settings = get_settings()
    _refuse_external(settings, "ReST-EM")
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
    first = len(all_passages) - heldout if heldout_skip is None else heldout_skip
    if first < passages or first + heldout > len(all_passages):
        raise typer.BadParameter(
            f"--heldout-skip {heldout_skip}: the held-out passages {first}..{first + heldout - 1} "
            f"must come after the {passages} training passages and within the file's "
            f"{len(all_passages)} passages with questions"
        )
    heldout_set = all_passages[first : first + heldout]
    from dataclasses import asdict

    from seal.journal import Journal, JournalMismatch
    from worker.config import inner_loop_config

    run_settings = {
        "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "rounds": rounds,
        "passages": passages,
        "heldout": heldout,
        "heldout_skip": first,
        "from": start,
        "inner": asdict(inner_loop_config(settings)),
        "teacher_lora": settings.teacher_lora_rank,
    }
    try:
        journal = Journal(
            settings.data_dir / "checkpoints" / "teacher-train.jsonl", run_settings, resume=resume
        )
    except JournalMismatch as exc:
        raise typer.BadParameter(str(exc)) from exc
    if journal.entries:
        print(f"resuming: {len(journal.entries)} finished steps in the journal", flush=True)
    runtime = _shared_runtime(settings, bundled=True)
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

    try:
        train_shared_teacher(
            runtime,
            train_set,
            heldout_set,
            rounds,
            on_passage=on_passage,
            on_round=on_round,
            on_baseline=on_baseline,
            start_from=start,
            journal=journal,
        )
    except LookupError as exc:
        raise typer.BadParameter(str(exc)) from exc
    bar.close()


@teacher_app.command("export")
def teacher_export(
    version: Annotated[int, typer.Argument(help="The shared teacher version to export")],
    out: Annotated[Path, typer.Argument(help="A new folder (e.g. seal/teachers/default)")],
    dtype: Annotated[str, typer.Option(help="bfloat16 (half the size) or float32")] = "bfloat16",
) -> None:
    """Write a shared teacher version as a self-contained adapter folder: its weights in
    DTYPE, and seal.json with their checksum, the base model, the LoRA and the version's
    metrics, as the shipped teacher (seal/teachers/default/) is made."""
    from service.store.db import make_engine, make_sessionmaker, session_scope
    from service.store.repositories import learning as learning_repo
    from worker.bundled import DTYPES, write_bundle
    from worker.jobs.common import load_teacher

    if dtype not in DTYPES:
        raise typer.BadParameter(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    settings = get_settings()
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    with session_scope(sessions) as session:
        found = learning_repo.get_teacher_version(session, tenant_id=None, number=version)
        if found is None or not found.artifact_uri:
            raise typer.BadParameter(f"there is no shared teacher version {version} with weights")
        state = load_teacher(found).state or {}
        metrics = dict(found.metrics or {})
    try:
        digest = write_bundle(
            state,
            settings,
            out,
            dtype=dtype,
            metrics=metrics,
            source=f"shared teacher version {version}",
        )
    except FileExistsError as exc:
        raise typer.BadParameter(f"{out} exists already; export into a new folder") from exc
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {out} ({size / 2**20:.1f} MiB, checksum {digest})", flush=True)


def _refuse_external(settings: Settings, what: str) -> None:
    from worker.config import ExternalTeacher, refuse_external_teacher

    try:
        refuse_external_teacher(settings, what)
    except ExternalTeacher as exc:
        raise typer.BadParameter(str(exc)) from exc


def _shared_runtime(settings: Settings, *, bundled: bool = False):  # type: ignore[no-untyped-def]
    """A worker runtime on the configured store, migrated first (the teacher commands record
    teacher versions in it). With ``bundled``, a store with no shared teacher gets the shipped
    one as version 1, as the service's own start does (ReST-EM starts from it); distillation
    does not, as it starts from whichever version it is told."""
    from migrations import upgrade
    from service.store.db import make_engine, make_sessionmaker
    from worker.bundled import register_bundled_teacher
    from worker.runtime import Runtime

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url), write=True)
    if bundled:
        register_bundled_teacher(settings, sessions)
    return Runtime(settings, sessions)


@teacher_app.command("distill")
def teacher_distill(
    data: Annotated[
        Path,
        typer.Argument(
            help="Passages with another model's self-edits, shaped as "
            "../shared/data/squad/train_reference_self_edits.json"
        ),
    ],
    source: Annotated[
        list[str] | None,
        typer.Option(help="Whose self-edits to learn (repeatable; default qwen2.5-7b)"),
    ] = None,
    fmt: Annotated[
        list[str] | None,
        typer.Option(
            "--format", help=f"Formats to learn (repeatable; default self-qa): {', '.join(FORMATS)}"
        ),
    ] = None,
    best_only: Annotated[
        bool, typer.Option(help="Only the one of five that taught the source's student most")
    ] = False,
    exclude: Annotated[
        list[Path] | None,
        typer.Option(help="SQuAD-shaped JSON whose passages stay out (held-out; repeatable)"),
    ] = None,
    start: Annotated[
        int | None,
        typer.Option("--from", help="Start from this shared teacher version (default: the active)"),
    ] = None,
    fresh: Annotated[
        bool, typer.Option(help="Start from a new adapter on the base model, not a version")
    ] = False,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Epochs (default SEAL_TEACHER_EPOCHS)")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option(min=0.0, help="Default SEAL_TEACHER_LEARNING_RATE")
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Make it the active shared teacher (else a candidate)")
    ] = True,
    resume: Annotated[
        bool,
        typer.Option(
            help="Go on with the stopped run of the same command from its checkpoint "
            "(DATA_DIR/checkpoints/distill.pt, saved every 25 steps and each epoch)"
        ),
    ] = False,
) -> None:
    """Distil a stronger model's self-edits into the shared teacher: fine-tune its LoRA on
    (prompt -> that model's self-edit, rewritten in the teacher's own format), the loss on the
    self-edit only, and record it as a shared teacher version whose parent is the version it
    started from, with the data, sources, formats and losses in its metrics."""
    from dataclasses import replace

    from tqdm import tqdm

    from seal.distill import DataError, reference_targets
    from seal.train import CheckpointMismatch
    from worker.config import teacher_train_config
    from worker.jobs.teacher import distill_shared_teacher

    if start is not None and fresh:
        raise typer.BadParameter("--from and --fresh exclude each other")
    _refuse_external(get_settings(), "Distillation")
    sources, formats = source or ["qwen2.5-7b"], fmt or ["self-qa"]
    excluded = {p.text for path in exclude or [] for p in load_passages(path)}
    try:
        targets = reference_targets(
            data_rows(data), sources, formats, best_only=best_only, exclude=excluded
        )
    except DataError as exc:
        raise typer.BadParameter(f"{data}: {exc}") from exc
    settings = get_settings()
    _setup_logging(settings)
    config = teacher_train_config(settings)
    config = replace(
        config,
        epochs=epochs or config.epochs,
        learning_rate=learning_rate or config.learning_rate,
    )
    runtime = _shared_runtime(settings)
    passages = len({t.passage.text for t in targets})
    print(
        f"distilling {len(targets)} self-edits of {passages} passages "
        f"({', '.join(sources)}; {', '.join(formats)}) into the teacher: {config.epochs} epochs "
        f"at lr {config.learning_rate:g}, LoRA r{settings.teacher_lora_rank}",
        flush=True,
    )
    bar = tqdm(unit="step", dynamic_ncols=True)

    def on_step(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        result = distill_shared_teacher(
            runtime,
            targets,
            start_from=start,
            fresh=fresh,
            train=config,
            promote=promote,
            lineage={
                "data": str(data),
                "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
                "best_only": best_only,
                "excluded_passages": len(excluded),
            },
            on_step=on_step,
            checkpoint=settings.data_dir / "checkpoints" / "distill.pt",
            resume=resume,
        )
    except (LookupError, CheckpointMismatch) as exc:
        raise typer.BadParameter(str(exc)) from exc
    bar.close()
    losses = ", ".join(f"{x:.3f}" for x in result.trained.losses)
    print(
        f"teacher v{result.version.number}{' promoted' if result.promoted else ' (candidate)'}: "
        f"epoch losses {losses}, {result.trained.seconds:.0f} s; {result.version.artifact_uri}",
        flush=True,
    )


@teacher_app.command("train-skills")
def teacher_train_skills(
    arc_dir: Annotated[
        Path | None,
        typer.Option(help="A folder of ARC tasks (e.g. ../shared/data/arc): their train split"),
    ] = None,
    text: Annotated[bool, typer.Option(help="The text tasks the project ships")] = False,
    k: Annotated[int, typer.Option(min=1, max=16, help="Configurations per task")] = 3,
    tasks: Annotated[int | None, typer.Option(min=1, help="Only the first N tasks")] = None,
    seed: Annotated[int, typer.Option(help="Seeds sampling and training")] = 0,
    keep: Annotated[
        float,
        typer.Option(
            min=0.01,
            max=1.0,
            help="Learn from the configurations that answered at least this share of their "
            "test cases (the paper: 1; 0.5 gave a 135M student's teacher something to learn "
            "from, docs/results/2026-12-06-few-shot-skills.md)",
        ),
    ] = 0.5,
) -> None:
    """One ReST-EM round of the shared teacher of skill configurations on public tasks: it
    writes k configurations per task, each trains an adapter on the task's demonstrations,
    and those that answer at least the share --keep of their test cases exactly train a new
    shared skills teacher version (promoted when any were kept). Test-time training runs at
    SEAL_SKILL_SCALE."""
    from seal.skills.tasks import arc_tasks, text_tasks
    from worker.jobs.skill_teacher import train_shared_skills_teacher

    if arc_dir is None and not text:
        raise typer.BadParameter("name the public tasks: --arc-dir FOLDER and/or --text")
    settings = get_settings()
    _refuse_external(settings, "ReST-EM")
    _setup_logging(settings)
    cases = [*(arc_tasks(arc_dir) if arc_dir else []), *(text_tasks() if text else [])]
    cases = cases[:tasks] if tasks else cases
    source = " + ".join([*([f"arc:{arc_dir}"] if arc_dir else []), *(["text"] if text else [])])
    runtime = _shared_runtime(settings)
    print(f"ReST-EM over skill configurations: {len(cases)} tasks x k={k} ({source})", flush=True)
    started = time.perf_counter()

    def on_task(index: int, task) -> None:  # type: ignore[no-untyped-def]
        print(
            f"[{time.perf_counter() - started:7.0f} s] {index + 1}/{len(cases)} {task.task}: "
            f"rewards {task.rewards}, {task.parsed}/{len(task.rewards)} parsed",
            flush=True,
        )

    report = train_shared_skills_teacher(
        runtime, cases, k=k, seed=seed, source=source, keep=keep, on_task=on_task
    )
    solved = sum(any(r > 0 for r in t.rewards) for t in report.tasks)
    start = f"v{report.started_from}" if report.started_from else "the base model"
    outcome = (
        f"shared skills teacher v{report.version} promoted (train loss {report.train_loss:.3f})"
        if report.version is not None and report.train_loss is not None
        else "nothing kept: no new version"
    )
    print(
        f"from {start}: {report.kept} of {len(cases) * k} configurations kept, "
        f"{solved} of {len(cases)} tasks solved; {outcome}",
        flush=True,
    )


eval_app = typer.Typer(help="Experiments that measure how well the student learns.")
app.add_typer(eval_app, name="eval")


class Mode(StrEnum):
    """The modes of ``seal eval knowledge`` (research.evaluation.MODES)."""

    single = "single"
    batch = "batch"
    sequential = "sequential"


def _teacher_adapter(path: Path) -> AdapterState:
    """The weights of a saved teacher adapter folder, checked against its recorded checksum."""
    from seal.lora import WEIGHTS_FILE, load_adapter

    if not (path / WEIGHTS_FILE).is_file():
        raise typer.BadParameter(f"{path} is not a saved adapter folder (no {WEIGHTS_FILE})")
    try:
        meta_file = path / "seal.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        return load_adapter(path, expected_checksum=meta.get("checksum"))
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"teacher adapter {path}: {exc}") from exc


def _named_teacher(option: str) -> tuple[str, Path]:
    """``--teacher FOLDER`` or ``--teacher NAME=FOLDER``."""
    name, sep, folder = option.partition("=")
    if not sep:
        return "", Path(option)
    if not name or not folder:
        raise typer.BadParameter(f"--teacher {option!r}: expected FOLDER or NAME=FOLDER")
    return name, Path(folder)


def _check_fits(state: AdapterState, host: AdapterHost, slot: str, path: Path) -> None:
    fresh = host.fresh_state(slot)
    shapes = {k: tuple(v.shape) for k, v in fresh.items()}
    theirs = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != theirs:
        wrong = sorted(set(shapes.items()) ^ set(theirs.items()))[:1]
        raise typer.BadParameter(
            f"teacher adapter {path} does not fit the configured teacher model and its LoRA "
            f"(SEAL_TEACHER_MODEL, SEAL_TEACHER_LORA_RANK, SEAL_LORA_TARGETS): e.g. {wrong}"
        )


def _require_research_extra() -> None:
    """Stop with what to install when the research extra (its charts need matplotlib) is
    missing, before hours of work that could not be written out."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise typer.BadParameter(
            "`seal eval knowledge` draws its charts with matplotlib, which comes with the research "
            "extra: pip install -e '.[research]' (make install includes it)"
        )


@eval_app.command("knowledge")
def eval_knowledge(
    data: Annotated[
        Path,
        typer.Argument(
            help="SQuAD-shaped JSON (e.g. ../shared/data/squad/dev.json); a passage may carry "
            '"self_edits": a list of whole self-edit texts (e.g. written by a larger model)'
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder for results.json and the charts")],
    passages: Annotated[
        int, typer.Option(min=1, help="The first N passages that have questions (after --skip)")
    ] = 8,
    skip: Annotated[
        int,
        typer.Option(
            min=0,
            help="Passages with questions to skip first: e.g. --skip 50 --passages 50 takes "
            "passages 50-99 (select settings there, report on 0-49)",
        ),
    ] = 0,
    mode: Annotated[
        Mode,
        typer.Option(
            help="single: a fresh adapter per passage and condition, graded on that passage "
            "(the paper's main table); batch: one adapter per condition trained on all N "
            "passages, graded on all their questions (continued pretraining); sequential: the "
            "forgetting experiment, passages learned one after another on one adapter with "
            "the teacher's self-edits (--teacher, else the untrained one), every passage "
            "re-graded after each update (forgetting.json, forgetting.png)",
        ),
    ] = Mode.single,
    teacher: Annotated[
        list[str] | None,
        typer.Option(
            help="A saved teacher adapter folder (e.g. DATA_DIR/adapters/teachers/shared/...) "
            "for the `teacher` row, or NAME=FOLDER for a row `teacher:NAME`; repeatable (one "
            "row each); without it the rows are skipped; --mode sequential takes one"
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help=f"Self-edit format: {', '.join(FORMATS)} (default: SEAL_SELF_EDIT_FORMAT)",
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Self-edits per passage and condition; with more than one, a condition trains "
            "on all of them pooled (the paper's continued-pretraining recipe); `supplied` uses "
            "the first SAMPLES of the passage's own",
        ),
    ] = 1,
    seed: Annotated[int, typer.Option(help="Seeds sampling, LoRA init and training")] = 0,
    qa_form: Annotated[
        list[str] | None,
        typer.Option(
            help="How question-answer items are trained: text, chat or both (default "
            "SEAL_QA_FORM); given more than once, each row with self-edits is trained in each "
            "form on the same self-edits (rows SOURCE/FORM)"
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Go on with the stopped run of the same command in OUT (--mode single): the "
            "passages its OUT/journal.jsonl holds are not run again"
        ),
    ] = False,
) -> None:
    """No-context question answering after training on each passage (the SEAL paper's
    knowledge-incorporation experiment): rows base, passage, base-teacher, teacher (with
    --teacher) and supplied (when passages carry self_edits); accuracy with its 95% Wilson
    score interval. Writes results.json (settings, every answer and grade, timing) and
    accuracy.png to OUT; --mode sequential writes results.json, forgetting.json and
    forgetting.png."""
    from dataclasses import replace

    from sqlalchemy.orm import sessionmaker
    from tqdm import tqdm

    _require_research_extra()
    from research.evaluation import Journal, run_forgetting, run_knowledge, teacher_rows
    from research.report import (
        forgetting_table,
        knowledge_table,
        settings_json,
        write_forgetting,
        write_knowledge,
    )
    from seal.journal import JournalMismatch
    from seal.knowledge import Teacher
    from seal.lora import TEACHER
    from seal.modeling import pick_device, pick_dtype
    from worker.config import inner_loop_config, student_spec, teacher_spec
    from worker.runtime import Runtime

    if fmt is not None and fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if resume and mode is not Mode.single:
        raise typer.BadParameter("--resume goes on with a --mode single run")
    from seal.selfedit import QA_FORMS

    wrong = [f for f in qa_form or [] if f not in QA_FORMS]
    if wrong:
        raise typer.BadParameter(
            f"--qa-form must be one of {', '.join(QA_FORMS)}, not {wrong[0]!r}"
        )
    if mode is Mode.sequential and len(qa_form or []) > 1:
        raise typer.BadParameter("--mode sequential learns in one --qa-form")
    settings = get_settings().model_copy(update={"seed": seed})
    _setup_logging(settings)
    with_questions = [d for d in load_eval_passages(data) if d.passage.questions]
    chosen = with_questions[skip : skip + passages]
    if len(chosen) < passages:
        raise typer.BadParameter(
            f"{data} has {len(with_questions)} passages with questions; --skip {skip} "
            f"--passages {passages} needs more"
        )
    chosen_teachers = [_named_teacher(t) for t in teacher or []]
    if mode is Mode.sequential and len(chosen_teachers) > 1:
        raise typer.BadParameter("--mode sequential learns with one teacher; give --teacher once")
    try:
        teacher_rows(chosen_teachers)  # before any work
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    config = replace(inner_loop_config(settings, fmt), num_candidates=samples)
    if qa_form:
        config = replace(config, qa_form=qa_form[0])
    questions = sum(len(d.passage.questions) for d in chosen)
    student, teacher_lora = student_spec(settings), teacher_spec(settings)
    device = pick_device(settings.device)
    run_settings = settings_json(
        config,
        data=str(data),
        student_model=settings.student_model,
        teacher_model=settings.teacher_model,
        teacher=str(chosen_teachers[0][1]) if len(chosen_teachers) == 1 else None,
        teachers={name or "teacher": str(path) for name, path in chosen_teachers},
        seed=seed,
        mode=mode.value,
        qa_forms=list(dict.fromkeys(qa_form or [config.qa_form])),
        skip=skip,
        passages=len(chosen),
        questions=questions,
        lora={"rank": student.rank, "alpha": student.alpha, "dropout": student.dropout},
        teacher_lora={"rank": teacher_lora.rank, "alpha": teacher_lora.alpha},
        lora_targets=list(student.targets),
        device=str(device),
        dtype=str(pick_dtype(settings.dtype, device)).replace("torch.", ""),
    )
    journal = None
    if mode is Mode.single:
        try:
            journal = Journal(out / "journal.jsonl", run_settings, resume=resume)
        except JournalMismatch as exc:
            raise typer.BadParameter(str(exc)) from exc
        if journal.done:
            print(f"resuming: {len(journal.done)} of {len(chosen)} passages done", flush=True)
    # The models load once the journal agrees with this run (a mismatch fails in a second).
    # The evaluation never touches the store: the unbound sessionmaker is never used.
    runtime = Runtime(settings, sessionmaker())
    host, teacher_host = runtime.student, runtime.teacher
    writers = []
    for name, path in chosen_teachers:
        state = _teacher_adapter(path)
        _check_fits(state, teacher_host, TEACHER, path)
        writers.append((name, Teacher(state=state)))
    print(
        f"knowledge incorporation ({mode.value}): {len(chosen)} passages, {questions} questions, "
        f"{config.format} x{samples}, seed {seed}, model {settings.student_model}",
        flush=True,
    )
    bar = tqdm(total=len(chosen), unit="step", dynamic_ncols=True)

    def on_progress(done: int, total: int, status: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(status, refresh=False)
        bar.refresh()

    if mode is Mode.sequential:
        writer = writers[0][1] if writers else None
        forgetting = run_forgetting(
            host, chosen, config, teacher=writer, teacher_host=teacher_host, on_progress=on_progress
        )
        bar.close()
        written = write_forgetting(forgetting, out, run_settings)
        print(forgetting_table(forgetting))
    else:
        report = run_knowledge(
            host,
            chosen,
            config,
            mode=mode.value,
            teachers=writers,
            teacher_host=teacher_host,
            on_progress=on_progress,
            journal=journal,
            qa_forms=qa_form or [],
        )
        bar.close()
        written = write_knowledge(report, out, run_settings)
        print(knowledge_table(report))
        print("95% confidence intervals: Wilson score interval.")
    print("wrote " + ", ".join(str(p) for p in written), flush=True)


@eval_app.command("compare")
def eval_compare(
    first: Annotated[Path, typer.Argument(help="results.json of one `seal eval knowledge` run")],
    second: Annotated[Path, typer.Argument(help="results.json of another run, same questions")],
) -> None:
    """Two runs of `seal eval knowledge` on the same questions (e.g. two settings), condition
    by condition and question by question: each run's correct answers, the questions only one
    of them got right, and the exact McNemar test of that split."""
    from research.report import compare_runs, comparison_table

    runs = []
    for path in (first, second):
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"{path}: not a readable results.json ({exc})") from exc
        if not isinstance(runs[-1], dict) or "conditions" not in runs[-1]:
            raise typer.BadParameter(f"{path}: not a results.json of `seal eval knowledge`")
    try:
        rows = compare_runs(runs[0], runs[1])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    print(f"first: {first}\nsecond: {second}")
    print(comparison_table(rows))


@eval_app.command("proxy")
def eval_proxy(
    data: Annotated[
        Path, typer.Argument(help="SQuAD-shaped JSON (e.g. ../shared/data/squad/dev.json)")
    ],
    passages: Annotated[int, typer.Option(min=1, help="The first N passages with questions")] = 8,
    k: Annotated[int, typer.Option(min=2, max=16, help="Self-edits per passage")] = 5,
    seed: Annotated[int, typer.Option(help="Seeds sampling and training")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write every reward as JSON here")] = None,
) -> None:
    """How well the proxy reward (no training: the gold answers' log-likelihood gain with the
    self-edit in context) ranks self-edits like the full reward (train + grade each), and
    what it saves: Spearman rank correlation, how often its pick is a best candidate, the
    full reward of its pick against the best and the average, and the time of each."""
    from dataclasses import asdict, replace

    from sqlalchemy.orm import sessionmaker
    from tqdm import tqdm

    from research.proxy import ProxyRecord, agreement, compare_on
    from worker.config import inner_loop_config
    from worker.runtime import Runtime

    settings = get_settings().model_copy(update={"seed": seed})
    _setup_logging(settings)
    chosen = [p for p in load_passages(data) if p.questions][:passages]
    if len(chosen) < passages:
        raise typer.BadParameter(
            f"{data} has {len(chosen)} passages with questions; --passages {passages} needs more"
        )
    config = replace(inner_loop_config(settings), num_candidates=k)
    runtime = Runtime(settings, sessionmaker())  # the store is never touched
    bar = tqdm(total=len(chosen), unit="passage", dynamic_ncols=True)

    def summary(records: list[ProxyRecord]) -> dict[str, object]:
        result = agreement([r.full for r in records], [r.proxy for r in records])
        return {
            "data": str(data),
            "k": k,
            "seed": seed,
            "format": config.format,
            "passages": len(records),
            "complete": len(records) == len(chosen),
            "agreement": asdict(result),
            "full_seconds": sum(r.full_seconds for r in records),
            "proxy_seconds": sum(r.proxy_seconds for r in records),
            "records": [asdict(r) for r in records],
        }

    def save(records: list[ProxyRecord]) -> None:
        # after every passage, so that a run cut short keeps what it measured
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(summary(records), indent=2))

    done: list[ProxyRecord] = []

    def on_record(record: ProxyRecord) -> None:
        done.append(record)
        save(done)
        bar.set_postfix_str(f"full {[round(x, 2) for x in record.full]}")
        bar.update(1)

    # on_record saved the file after the last passage too: nothing is left to write
    records = compare_on(runtime.student, chosen, config, on_record=on_record)
    bar.close()
    result = agreement([r.full for r in records], [r.proxy for r in records])
    full_s = sum(r.full_seconds for r in records)
    proxy_s = sum(r.proxy_seconds for r in records)

    def fmt(x: float | None) -> str:
        return "n/a (no ranking)" if x is None else f"{x:+.3f}"

    print(
        f"proxy vs full reward on {len(records)} passages x k={k} ({config.format}):\n"
        f"  Spearman, all candidates pooled:   {fmt(result.pooled_spearman)}\n"
        f"  Spearman, mean per passage:        {fmt(result.mean_spearman)} "
        f"({result.documents_ranked} passages whose full rewards are not all tied)\n"
        f"  proxy's pick is a best candidate:  {result.top_pick_is_best:.0%}\n"
        f"  mean full reward: proxy's pick {result.pick_reward:+.3f}, best "
        f"{result.best_reward:+.3f}, all candidates {result.mean_reward:+.3f}\n"
        f"  time: full reward {full_s:.1f} s, proxy {proxy_s:.1f} s "
        f"({full_s / max(proxy_s, 1e-9):.0f}x less)",
        flush=True,
    )


@eval_app.command("skills")
def eval_skills(
    data: Annotated[
        str,
        typer.Argument(
            help="A folder of ARC tasks (train_challenges.json and train_solutions.json, e.g. "
            "../shared/data/arc), a JSON file of text tasks in the shape of "
            "seal/skills/text_tasks.json, or `text` for the text tasks the project ships"
        ),
    ],
    k: Annotated[int, typer.Option(min=1, max=16, help="Configurations per task and row")] = 3,
    tasks: Annotated[int | None, typer.Option(min=2, help="Only the first N tasks")] = None,
    rows: Annotated[
        list[str] | None,
        typer.Option(help="Rows to run (repeatable): in-context, ttt-fixed, teacher, restem"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds sampling and training")] = 0,
    keep: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="ReST-EM learns from the configurations that answered at least this share of "
            "their test cases (the paper: 1, all of them)",
        ),
    ] = 1.0,
    reuse: Annotated[
        Path | None,
        typer.Option(
            help="An earlier run's --out (the same DATA, --k and --seed): its attempts stand in "
            "for the rows not named in --rows, e.g. --rows restem reuses its teacher row"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write every answer as JSON here")] = None,
) -> None:
    """The SEAL paper's few-shot table for our student: in-context learning alone, test-time
    training with one fixed configuration, with the untrained teacher's configurations, and
    after ReST-EM (trained on one half of the tasks, scored on the other); success rates with
    95% Wilson intervals. Test-time training runs at SEAL_SKILL_SCALE."""
    from research.skills import ROWS, SkillsReport, attempts_of, format_skills, run_skills_eval
    from seal.skills.tasks import load_tasks
    from service.domain.skills import skill_scale
    from worker.runtime import student_host

    chosen_rows = rows or list(ROWS)
    wrong = [r for r in chosen_rows if r not in ROWS]
    if wrong:
        raise typer.BadParameter(f"--rows must be among {', '.join(ROWS)}, not {wrong[0]!r}")
    try:
        cases = load_tasks(data)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    cases = cases[:tasks] if tasks else cases
    earlier = []
    if reuse is not None:
        try:
            prior = json.loads(reuse.read_text())
            earlier = attempts_of(prior)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise typer.BadParameter(
                f"--reuse {reuse}: not a readable --out of this command"
            ) from exc
        if (prior.get("data"), prior.get("k"), prior.get("seed")) != (data, k, seed):
            raise typer.BadParameter(
                f"--reuse {reuse} was run on {prior.get('data')} with k={prior.get('k')} and seed "
                f"{prior.get('seed')}, not on {data} with k={k} and seed {seed}"
            )
    settings = get_settings().model_copy(update={"seed": seed})
    _setup_logging(settings)
    host = student_host(settings, with_teacher=True)
    started = time.perf_counter()

    def done(report: SkillsReport, what: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {what}", flush=True)
        if out is not None:  # what is done so far, should the run be stopped
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report.to_json(), indent=2))

    report = run_skills_eval(
        host,
        cases,
        data=data,
        k=k,
        seed=seed,
        scale=skill_scale(settings),
        rows=chosen_rows,
        keep=keep,
        earlier=earlier,
        on_done=done,
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_json(), indent=2))
    print(format_skills(report), flush=True)


def _register_bench() -> None:
    from sealctl.bench import bench_app

    app.add_typer(bench_app, name="bench")


_register_bench()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
