"""``seal teacher``: train the shared teacher (ReST-EM, distillation, skills) and export its
versions."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from seal.journal import Journal, JournalMismatch
from seal.selfedit import FORMATS, Passage
from seal.skills.tasks import arc_tasks, text_tasks
from sealctl.common import refuse_external, setup_logging, shared_runtime, usage_errors
from sealctl.data import data_rows, load_passages
from service.settings import Settings, get_settings

teacher_app = typer.Typer(help="The shared teacher: ReST-EM training and its versions.")

DataArg = Annotated[
    Path, typer.Argument(help="SQuAD-shaped JSON (e.g. ../shared/data/squad/train.json)")
]
RoundsOpt = Annotated[int, typer.Option(min=1, help="ReST-EM rounds (paper: 2)")]
PassagesOpt = Annotated[int, typer.Option(min=1, help="Training passages per round (paper: 50)")]
HeldoutOpt = Annotated[int, typer.Option(min=0, help="Held-out passages (from the file's end)")]
HeldoutSkipOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Take the held-out passages after the first N passages with questions instead "
        "of from the file's end (e.g. to keep them out of a distilled teacher's data)",
    ),
]
KOpt = Annotated[int | None, typer.Option(help="Self-edits per passage (default: settings)")]
FromOpt = Annotated[
    int | None,
    typer.Option("--from", help="Start from this shared teacher version (default: the active one)"),
]
TrainResumeOpt = Annotated[
    bool,
    typer.Option(
        help="Go on with the stopped run of the same command after its last scored "
        "passage (its journal: DATA_DIR/checkpoints/teacher-train.jsonl)"
    ),
]


def _split(
    data: Path, passages: int, heldout: int, heldout_skip: int | None
) -> tuple[list[Passage], list[Passage], int]:
    """The training passages (the file's first), the held-out ones and where they start."""
    all_passages = [p for p in load_passages(data) if p.questions]
    if len(all_passages) < passages + heldout:
        raise typer.BadParameter(
            f"{data} has {len(all_passages)} passages with questions; "
            f"--passages {passages} + --heldout {heldout} needs more"
        )
    first = len(all_passages) - heldout if heldout_skip is None else heldout_skip
    if first < passages or first + heldout > len(all_passages):
        raise typer.BadParameter(
            f"--heldout-skip {heldout_skip}: the held-out passages {first}..{first + heldout - 1} "
            f"must come after the {passages} training passages and within the file's "
            f"{len(all_passages)} passages with questions"
        )
    return all_passages[:passages], all_passages[first : first + heldout], first


class _RestEmProgress:
    """What ``seal teacher train`` shows while it runs: a bar over the passages, a line a
    round."""

    def __init__(self, total: int, passages: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="passage", dynamic_ncols=True)
        self.passages = passages

    def on_passage(self, number: int, index: int, scored: Any) -> None:
        rewards = [round(c.reward, 2) for c in scored.candidates]
        self.bar.set_description(f"round {number}")
        self.bar.set_postfix_str(f"rewards {rewards}")
        self.bar.update(1)

    def on_baseline(self, evaluation: Any) -> None:
        self.bar.write(
            f"round 0 (the current teacher): held-out accuracy {evaluation.accuracy:.3f} "
            f"({evaluation.correct}/{len(evaluation.graded)})"
        )

    def on_round(self, report: Any) -> None:
        h = report.heldout
        version = f"teacher v{report.version}" if report.version else "no new version"
        self.bar.write(
            f"round {report.round}: mean reward {report.result.mean_reward:+.3f} over "
            f"{len(report.result.rewards)} self-edits, kept {len(report.result.kept)}/"
            f"{self.passages}, held-out accuracy {h.accuracy:.3f} ({h.correct}/{len(h.graded)}),"
            f" {version}{' promoted' if report.promoted else ''}, {report.seconds:.0f} s"
        )


@teacher_app.command("train")
def teacher_train(
    data: DataArg,
    rounds: RoundsOpt = 2,
    passages: PassagesOpt = 8,
    heldout: HeldoutOpt = 4,
    heldout_skip: HeldoutSkipOpt = None,
    k: KOpt = None,
    start: FromOpt = None,
    resume: TrainResumeOpt = False,
) -> None:
    """Train the shared teacher by ReST-EM on a public data set; each round becomes a teacher
    version, promoted (used by every tenant without its own) when it does at least as well
    on the held-out passages."""
    from worker.config import inner_loop_config
    from worker.jobs.teacher import train_shared_teacher

    settings = get_settings()
    refuse_external(settings, "ReST-EM")
    if k is not None:
        settings = settings.model_copy(update={"num_candidates": k})
    setup_logging(settings)
    train_set, heldout_set, first = _split(data, passages, heldout, heldout_skip)
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
    journal_file = settings.data_dir / "checkpoints" / "teacher-train.jsonl"
    with usage_errors(JournalMismatch):
        journal = Journal(journal_file, run_settings, resume=resume)
    if journal.entries:
        print(f"resuming: {len(journal.entries)} finished steps in the journal", flush=True)
    runtime = shared_runtime(settings, bundled=True)
    print(
        f"ReST-EM: {rounds} round(s) x {passages} passages x k={settings.num_candidates} "
        f"self-edits ({settings.self_edit_format}), {heldout} held-out passages",
        flush=True,
    )
    progress = _RestEmProgress(rounds * passages, passages)
    with usage_errors(LookupError):
        train_shared_teacher(
            runtime,
            train_set,
            heldout_set,
            rounds,
            on_passage=progress.on_passage,
            on_round=progress.on_round,
            on_baseline=progress.on_baseline,
            start_from=start,
            journal=journal,
        )
    progress.bar.close()


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
    from service.store.repositories import teachers as teacher_repo
    from worker.bundled import DTYPES, write_bundle
    from worker.jobs.common import load_teacher

    if dtype not in DTYPES:
        raise typer.BadParameter(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    settings = get_settings()
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    with session_scope(sessions) as session:
        found = teacher_repo.get_teacher_version(session, tenant_id=None, number=version)
        if found is None or not found.artifact_uri:
            raise typer.BadParameter(f"there is no shared teacher version {version} with weights")
        state = load_teacher(settings, found).state or {}
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


DistillDataArg = Annotated[
    Path,
    typer.Argument(
        help="Passages with another model's self-edits, shaped as "
        "../shared/data/squad/train_reference_self_edits.json"
    ),
]
SourceOpt = Annotated[
    list[str] | None,
    typer.Option(help="Whose self-edits to learn (repeatable; default qwen2.5-7b)"),
]
FormatsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--format", help=f"Formats to learn (repeatable; default self-qa): {', '.join(FORMATS)}"
    ),
]
BestOnlyOpt = Annotated[
    bool, typer.Option(help="Only the one of five that taught the source's student most")
]
ExcludeOpt = Annotated[
    list[Path] | None,
    typer.Option(help="SQuAD-shaped JSON whose passages stay out (held-out; repeatable)"),
]
DistillFromOpt = Annotated[
    int | None,
    typer.Option("--from", help="Start from this shared teacher version (default: the active)"),
]
FreshOpt = Annotated[
    bool, typer.Option(help="Start from a new adapter on the base model, not a version")
]
EpochsOpt = Annotated[int | None, typer.Option(min=1, help="Epochs (default SEAL_TEACHER_EPOCHS)")]
LearningRateOpt = Annotated[
    float | None, typer.Option(min=0.0, help="Default SEAL_TEACHER_LEARNING_RATE")
]
PromoteOpt = Annotated[
    bool, typer.Option(help="Make it the active shared teacher (else a candidate)")
]
DistillResumeOpt = Annotated[
    bool,
    typer.Option(
        help="Go on with the stopped run of the same command from its checkpoint "
        "(DATA_DIR/checkpoints/distill.pt, saved every 25 steps and each epoch)"
    ),
]


def _distill_config(settings: Settings, epochs: int | None, learning_rate: float | None) -> Any:
    from worker.config import teacher_train_config

    config = teacher_train_config(settings)
    return replace(
        config,
        epochs=epochs or config.epochs,
        learning_rate=learning_rate or config.learning_rate,
    )


@teacher_app.command("distill")
def teacher_distill(
    data: DistillDataArg,
    source: SourceOpt = None,
    fmt: FormatsOpt = None,
    best_only: BestOnlyOpt = False,
    exclude: ExcludeOpt = None,
    start: DistillFromOpt = None,
    fresh: FreshOpt = False,
    epochs: EpochsOpt = None,
    learning_rate: LearningRateOpt = None,
    promote: PromoteOpt = True,
    resume: DistillResumeOpt = False,
) -> None:
    """Distil a stronger model's self-edits into the shared teacher: fine-tune its LoRA on
    (prompt -> that model's self-edit, rewritten in the teacher's own format), the loss on the
    self-edit only, and record it as a shared teacher version whose parent is the version it
    started from, with the data, sources, formats and losses in its metrics."""
    from tqdm import tqdm

    from seal.distill import DataError, reference_targets
    from seal.train import CheckpointMismatch
    from worker.jobs.teacher import distill_shared_teacher

    if start is not None and fresh:
        raise typer.BadParameter("--from and --fresh exclude each other")
    refuse_external(get_settings(), "Distillation")
    sources, formats = source or ["qwen2.5-7b"], fmt or ["self-qa"]
    excluded = {p.text for path in exclude or [] for p in load_passages(path)}
    with usage_errors(DataError, prefix=f"{data}: "):
        targets = reference_targets(
            data_rows(data), sources, formats, best_only=best_only, exclude=excluded
        )
    settings = get_settings()
    setup_logging(settings)
    config = _distill_config(settings, epochs, learning_rate)
    runtime = shared_runtime(settings)
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

    lineage = {
        "data": str(data),
        "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "best_only": best_only,
        "excluded_passages": len(excluded),
    }
    with usage_errors(LookupError, CheckpointMismatch):
        result = distill_shared_teacher(
            runtime,
            targets,
            start_from=start,
            fresh=fresh,
            train=config,
            promote=promote,
            lineage=lineage,
            on_step=on_step,
            checkpoint=settings.data_dir / "checkpoints" / "distill.pt",
            resume=resume,
        )
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
    from worker.jobs.skill_teacher import train_shared_skills_teacher

    if arc_dir is None and not text:
        raise typer.BadParameter("name the public tasks: --arc-dir FOLDER and/or --text")
    settings = get_settings()
    refuse_external(settings, "ReST-EM")
    setup_logging(settings)
    cases = [*(arc_tasks(arc_dir) if arc_dir else []), *(text_tasks() if text else [])]
    cases = cases[:tasks] if tasks else cases
    source = " + ".join([*([f"arc:{arc_dir}"] if arc_dir else []), *(["text"] if text else [])])
    runtime = shared_runtime(settings)
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
