"""``seal eval``: the experiments that measure how well the student learns (their work is in
``research``; a command parses its options, shows progress and prints the table)."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from seal.selfedit import FORMATS
from seal.skills.tasks import load_tasks
from sealctl.common import setup_logging, usage_errors
from sealctl.data import load_eval_passages, load_passages
from service.settings import get_settings

eval_app = typer.Typer(help="Experiments that measure how well the student learns.")


class Mode(StrEnum):
    """The modes of ``seal eval knowledge`` (research.evaluation.MODES)."""

    single = "single"
    batch = "batch"
    sequential = "sequential"


def _require_research_extra() -> None:
    """Stop with what to install when the research extra (its charts need matplotlib) is
    missing, before hours of work that could not be written out."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise typer.BadParameter(
            "`seal eval knowledge` draws its charts with matplotlib, which comes with the research "
            "extra: pip install -e '.[research]' (make install includes it)"
        )


class _Bar:
    """A progress bar that appears with the first ``(done, total, status)`` report, after
    what the run says before its work starts."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.bar: Any = None

    def __call__(self, done: int, total: int, status: str) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=self.unit, dynamic_ncols=True)
        self.bar.total = total
        self.bar.n = done
        self.bar.set_postfix_str(status, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


KnowledgeDataArg = Annotated[
    Path,
    typer.Argument(
        help="SQuAD-shaped JSON (e.g. ../shared/data/squad/dev.json); a passage may carry "
        '"self_edits": a list of whole self-edit texts (e.g. written by a larger model)'
    ),
]
OutOpt = Annotated[Path, typer.Option(help="Folder for results.json and the charts")]
PassagesOpt = Annotated[
    int, typer.Option(min=1, help="The first N passages that have questions (after --skip)")
]
SkipOpt = Annotated[
    int,
    typer.Option(
        min=0,
        help="Passages with questions to skip first: e.g. --skip 50 --passages 50 takes "
        "passages 50-99 (select settings there, report on 0-49)",
    ),
]
ModeOpt = Annotated[
    Mode,
    typer.Option(
        help="single: a fresh adapter per passage and condition, graded on that passage "
        "(the paper's main table); batch: one adapter per condition trained on all N "
        "passages, graded on all their questions (continued pretraining); sequential: the "
        "forgetting experiment, passages learned one after another on one adapter with "
        "the teacher's self-edits (--teacher, else the untrained one), every passage "
        "re-graded after each update (forgetting.json, forgetting.png)",
    ),
]
TeacherOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="A saved teacher adapter folder (e.g. DATA_DIR/adapters/teachers/shared/...) "
        "for the `teacher` row, or NAME=FOLDER for a row `teacher:NAME`; repeatable (one "
        "row each); without it the rows are skipped; --mode sequential takes one"
    ),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format", help=f"Self-edit format: {', '.join(FORMATS)} (default: SEAL_SELF_EDIT_FORMAT)"
    ),
]
SamplesOpt = Annotated[
    int,
    typer.Option(
        min=1,
        max=16,
        help="Self-edits per passage and condition; with more than one, a condition trains "
        "on all of them pooled (the paper's continued-pretraining recipe); `supplied` uses "
        "the first SAMPLES of the passage's own",
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seeds sampling, LoRA init and training")]
QaFormOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="How question-answer items are trained: text, chat or both (default "
        "SEAL_QA_FORM); given more than once, each row with self-edits is trained in each "
        "form on the same self-edits (rows SOURCE/FORM)"
    ),
]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        help="Go on with the stopped run of the same command in OUT (--mode single): the "
        "passages its OUT/journal.jsonl holds are not run again"
    ),
]


@eval_app.command("knowledge")
def eval_knowledge(
    data: KnowledgeDataArg,
    out: OutOpt,
    passages: PassagesOpt = 8,
    skip: SkipOpt = 0,
    mode: ModeOpt = Mode.single,
    teacher: TeacherOpt = None,
    fmt: FormatOpt = None,
    samples: SamplesOpt = 1,
    seed: SeedOpt = 0,
    qa_form: QaFormOpt = None,
    resume: ResumeOpt = False,
) -> None:
    """No-context question answering after training on each passage (the SEAL paper's
    knowledge-incorporation experiment): rows base, passage, base-teacher, teacher (with
    --teacher) and supplied (when passages carry self_edits); accuracy with its 95% Wilson
    score interval. Writes results.json (settings, every answer and grade, timing) and
    accuracy.png to OUT; --mode sequential writes results.json, forgetting.json and
    forgetting.png."""
    _require_research_extra()
    from research.knowledge_run import KnowledgeOptions, OptionError, run_eval

    with usage_errors(OptionError):
        options = KnowledgeOptions(
            data=data,
            out=out,
            passages=passages,
            skip=skip,
            mode=mode.value,
            teachers=teacher or (),
            fmt=fmt,
            samples=samples,
            seed=seed,
            qa_forms=qa_form or (),
            resume=resume,
        )
    settings = get_settings().model_copy(update={"seed": seed})
    setup_logging(settings)
    documents = load_eval_passages(data)
    bar = _Bar("step")
    with usage_errors(OptionError):
        outcome = run_eval(
            options,
            settings,
            documents,
            on_progress=bar,
            say=lambda line: print(line, flush=True),
        )
    bar.close()
    print(outcome.table)
    print("wrote " + ", ".join(str(p) for p in outcome.written), flush=True)


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
    with usage_errors(ValueError):
        rows = compare_runs(runs[0], runs[1])
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
    from dataclasses import replace

    from sqlalchemy.orm import sessionmaker
    from tqdm import tqdm

    from research.proxy import ProxyRecord, compare_on, proxy_summary, proxy_table
    from worker.config import inner_loop_config
    from worker.runtime import Runtime

    settings = get_settings().model_copy(update={"seed": seed})
    setup_logging(settings)
    chosen = [p for p in load_passages(data) if p.questions][:passages]
    if len(chosen) < passages:
        raise typer.BadParameter(
            f"{data} has {len(chosen)} passages with questions; --passages {passages} needs more"
        )
    config = replace(inner_loop_config(settings), num_candidates=k)
    runtime = Runtime(settings, sessionmaker())  # the store is never touched
    bar = tqdm(total=len(chosen), unit="passage", dynamic_ncols=True)
    done: list[ProxyRecord] = []

    def on_record(record: ProxyRecord) -> None:
        done.append(record)
        if out is not None:  # after every passage, so that a run cut short keeps what it measured
            summary = proxy_summary(
                done, data=str(data), k=k, seed=seed, fmt=config.format, total=len(chosen)
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(summary, indent=2))
        bar.set_postfix_str(f"full {[round(x, 2) for x in record.full]}")
        bar.update(1)

    records = compare_on(runtime.student, chosen, config, on_record=on_record)
    bar.close()
    print(proxy_table(records, k=k, fmt=config.format), flush=True)


def _earlier_attempts(reuse: Path | None, data: str, k: int, seed: int) -> list[Any]:
    """The attempts of an earlier ``--out`` of the same data, k and seed (``--reuse``)."""
    from research.skills import attempts_of

    if reuse is None:
        return []
    try:
        prior = json.loads(reuse.read_text())
        earlier = attempts_of(prior)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise typer.BadParameter(f"--reuse {reuse}: not a readable --out of this command") from exc
    if (prior.get("data"), prior.get("k"), prior.get("seed")) != (data, k, seed):
        raise typer.BadParameter(
            f"--reuse {reuse} was run on {prior.get('data')} with k={prior.get('k')} and seed "
            f"{prior.get('seed')}, not on {data} with k={k} and seed {seed}"
        )
    return earlier


SkillsDataArg = Annotated[
    str,
    typer.Argument(
        help="A folder of ARC tasks (train_challenges.json and train_solutions.json, e.g. "
        "../shared/data/arc), a JSON file of text tasks in the shape of "
        "seal/skills/text_tasks.json, or `text` for the text tasks the project ships"
    ),
]
RowsOpt = Annotated[
    list[str] | None,
    typer.Option(help="Rows to run (repeatable): in-context, ttt-fixed, teacher, restem"),
]
KeepOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="ReST-EM learns from the configurations that answered at least this share of "
        "their test cases (the paper: 1, all of them)",
    ),
]
ReuseOpt = Annotated[
    Path | None,
    typer.Option(
        help="An earlier run's --out (the same DATA, --k and --seed): its attempts stand in "
        "for the rows not named in --rows, e.g. --rows restem reuses its teacher row"
    ),
]


@eval_app.command("skills")
def eval_skills(
    data: SkillsDataArg,
    k: Annotated[int, typer.Option(min=1, max=16, help="Configurations per task and row")] = 3,
    tasks: Annotated[int | None, typer.Option(min=2, help="Only the first N tasks")] = None,
    rows: RowsOpt = None,
    seed: Annotated[int, typer.Option(help="Seeds sampling and training")] = 0,
    keep: KeepOpt = 1.0,
    reuse: ReuseOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write every answer as JSON here")] = None,
) -> None:
    """The SEAL paper's few-shot table for our student: in-context learning alone, test-time
    training with one fixed configuration, with the untrained teacher's configurations, and
    after ReST-EM (trained on one half of the tasks, scored on the other); success rates with
    95% Wilson intervals. Test-time training runs at SEAL_SKILL_SCALE."""
    from research.skills import ROWS, SkillsReport, format_skills, run_skills_eval
    from service.domain.skills import skill_scale
    from worker.runtime import student_host

    chosen_rows = rows or list(ROWS)
    wrong = [r for r in chosen_rows if r not in ROWS]
    if wrong:
        raise typer.BadParameter(f"--rows must be among {', '.join(ROWS)}, not {wrong[0]!r}")
    with usage_errors(ValueError):
        cases = load_tasks(data)
    cases = cases[:tasks] if tasks else cases
    earlier = _earlier_attempts(reuse, data, k, seed)
    settings = get_settings().model_copy(update={"seed": seed})
    setup_logging(settings)
    host = student_host(settings, with_teacher=True)
    started = time.perf_counter()

    def save(report: SkillsReport) -> None:
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report.to_json(), indent=2))

    def done(report: SkillsReport, what: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {what}", flush=True)
        save(report)  # what is done so far, should the run be stopped

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
    save(report)
    print(format_skills(report), flush=True)
