"""One run of ``seal eval knowledge``: its options checked before any model loads, the chosen
passages, the teachers' adapters checked against the teacher model, the journal, and the run
itself with its results written out. The command only parses options and shows progress."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from research.evaluation import (
    MODES,
    EvalPassage,
    Journal,
    Progress,
    run_forgetting,
    run_knowledge,
    teacher_rows,
)
from research.report import (
    forgetting_table,
    knowledge_table,
    settings_json,
    write_forgetting,
    write_knowledge,
)
from seal.journal import JournalMismatch
from seal.knowledge import InnerLoopConfig, Teacher
from seal.lora import TEACHER, WEIGHTS_FILE, AdapterHost, AdapterState, load_adapter
from seal.modeling import pick_device, pick_dtype
from seal.selfedit import FORMATS, QA_FORMS
from service.settings import Settings
from worker.config import inner_loop_config, student_spec, teacher_spec
from worker.runtime import Runtime


class OptionError(ValueError):
    """Options this run cannot go on with, said in the words of the command's options."""


def named_teacher(option: str) -> tuple[str, Path]:
    """``--teacher FOLDER`` or ``--teacher NAME=FOLDER``."""
    name, sep, folder = option.partition("=")
    if not sep:
        return "", Path(option)
    if not name or not folder:
        raise OptionError(f"--teacher {option!r}: expected FOLDER or NAME=FOLDER")
    return name, Path(folder)


def teacher_adapter(path: Path) -> AdapterState:
    """The weights of a saved teacher adapter folder, checked against its recorded checksum."""
    if not (path / WEIGHTS_FILE).is_file():
        raise OptionError(f"{path} is not a saved adapter folder (no {WEIGHTS_FILE})")
    try:
        meta_file = path / "seal.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        return load_adapter(path, expected_checksum=meta.get("checksum"))
    except (OSError, ValueError) as exc:
        raise OptionError(f"teacher adapter {path}: {exc}") from exc


def check_fits(state: AdapterState, host: AdapterHost, slot: str, path: Path) -> None:
    """A teacher adapter made for another model or LoRA is refused before it is used."""
    fresh = host.fresh_state(slot)
    shapes = {k: tuple(v.shape) for k, v in fresh.items()}
    theirs = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != theirs:
        wrong = sorted(set(shapes.items()) ^ set(theirs.items()))[:1]
        raise OptionError(
            f"teacher adapter {path} does not fit the configured teacher model and its LoRA "
            f"(SEAL_TEACHER_MODEL, SEAL_TEACHER_LORA_RANK, SEAL_LORA_TARGETS): e.g. {wrong}"
        )


@dataclass(frozen=True)
class KnowledgeOptions:
    """The options of ``seal eval knowledge`` (its help says what each one does)."""

    data: Path
    out: Path
    passages: int = 8
    skip: int = 0
    mode: str = "single"
    teachers: Sequence[str] = ()
    fmt: str | None = None
    samples: int = 1
    seed: int = 0
    qa_forms: Sequence[str] = ()
    resume: bool = False
    chosen_teachers: list[tuple[str, Path]] = field(init=False)

    def __post_init__(self) -> None:
        """Every check that needs no model and no data file: a mistake fails in a second."""
        if self.mode not in MODES:
            raise OptionError(f"--mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.fmt is not None and self.fmt not in FORMATS:
            raise OptionError(f"--format must be one of {', '.join(FORMATS)}, not {self.fmt!r}")
        if self.resume and self.mode != "single":
            raise OptionError("--resume goes on with a --mode single run")
        wrong = [f for f in self.qa_forms if f not in QA_FORMS]
        if wrong:
            raise OptionError(f"--qa-form must be one of {', '.join(QA_FORMS)}, not {wrong[0]!r}")
        if self.mode == "sequential" and len(self.qa_forms) > 1:
            raise OptionError("--mode sequential learns in one --qa-form")
        chosen = [named_teacher(t) for t in self.teachers]
        if self.mode == "sequential" and len(chosen) > 1:
            raise OptionError("--mode sequential learns with one teacher; give --teacher once")
        try:
            teacher_rows(chosen)
        except ValueError as exc:
            raise OptionError(str(exc)) from exc
        object.__setattr__(self, "chosen_teachers", chosen)

    def choose(self, documents: Sequence[EvalPassage]) -> list[EvalPassage]:
        """The passages with questions, ``skip`` of them first, then ``passages``."""
        with_questions = [d for d in documents if d.passage.questions]
        chosen = with_questions[self.skip : self.skip + self.passages]
        if len(chosen) < self.passages:
            raise OptionError(
                f"{self.data} has {len(with_questions)} passages with questions; --skip "
                f"{self.skip} --passages {self.passages} needs more"
            )
        return chosen

    def config(self, settings: Settings) -> InnerLoopConfig:
        config = replace(inner_loop_config(settings, self.fmt), num_candidates=self.samples)
        return replace(config, qa_form=self.qa_forms[0]) if self.qa_forms else config

    def settings_json(
        self, settings: Settings, config: InnerLoopConfig, chosen: Sequence[EvalPassage]
    ) -> dict[str, Any]:
        """What results.json records of the run, and what a resumed run must agree with."""

        student, teacher_lora = student_spec(settings), teacher_spec(settings)
        device = pick_device(settings.device)
        teachers = self.chosen_teachers
        return settings_json(
            config,
            data=str(self.data),
            student_model=settings.student_model,
            teacher_model=settings.teacher_model,
            teacher=str(teachers[0][1]) if len(teachers) == 1 else None,
            teachers={name or "teacher": str(path) for name, path in teachers},
            seed=self.seed,
            mode=self.mode,
            qa_forms=list(dict.fromkeys(self.qa_forms or [config.qa_form])),
            skip=self.skip,
            passages=len(chosen),
            questions=sum(len(d.passage.questions) for d in chosen),
            lora={"rank": student.rank, "alpha": student.alpha, "dropout": student.dropout},
            teacher_lora={"rank": teacher_lora.rank, "alpha": teacher_lora.alpha},
            lora_targets=list(student.targets),
            device=str(device),
            dtype=str(pick_dtype(settings.dtype, device)).replace("torch.", ""),
        )


@dataclass(frozen=True)
class KnowledgeOutcome:
    written: list[Path]
    table: str


def run_eval(
    options: KnowledgeOptions,
    settings: Settings,
    documents: Sequence[EvalPassage],
    *,
    on_progress: Progress,
    say: Any = print,
) -> KnowledgeOutcome:
    """Run the experiment and write its results to ``options.out``. The models load only once
    the passages and the journal agree with this run (a mismatch fails in a second); the
    evaluation never touches the store (its unbound sessionmaker is never used)."""
    from sqlalchemy.orm import sessionmaker

    chosen = options.choose(documents)
    config = options.config(settings)
    run_settings = options.settings_json(settings, config, chosen)
    journal = None
    if options.mode == "single":
        try:
            journal = Journal(options.out / "journal.jsonl", run_settings, resume=options.resume)
        except JournalMismatch as exc:
            raise OptionError(str(exc)) from exc
        if journal.done:
            say(f"resuming: {len(journal.done)} of {len(chosen)} passages done")
    runtime = Runtime(settings, sessionmaker())
    host, teacher_host = runtime.student, runtime.teacher
    writers = []
    for name, path in options.chosen_teachers:
        state = teacher_adapter(path)
        check_fits(state, teacher_host, TEACHER, path)
        writers.append((name, Teacher(state=state)))
    say(
        f"knowledge incorporation ({options.mode}): {len(chosen)} passages, "
        f"{run_settings['questions']} questions, {config.format} x{options.samples}, seed "
        f"{options.seed}, model {settings.student_model}"
    )
    if options.mode == "sequential":
        forgetting = run_forgetting(
            host,
            chosen,
            config,
            teacher=writers[0][1] if writers else None,
            teacher_host=teacher_host,
            on_progress=on_progress,
        )
        written = write_forgetting(forgetting, options.out, run_settings)
        return KnowledgeOutcome(written, forgetting_table(forgetting))
    report = run_knowledge(
        host,
        chosen,
        config,
        mode=options.mode,
        teachers=writers,
        teacher_host=teacher_host,
        on_progress=on_progress,
        journal=journal,
        qa_forms=list(options.qa_forms),
    )
    written = write_knowledge(report, options.out, run_settings)
    table = knowledge_table(report) + "\n95% confidence intervals: Wilson score interval."
    return KnowledgeOutcome(written, table)
