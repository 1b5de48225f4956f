"""Distillation: the teacher learns to write the self-edits a stronger model wrote.

A 135M teacher writes self-edits that teach its student less than the passage alone; a 7B
model's teach it more (DESIGN.md). The SEAL paper's public data holds Qwen2.5-7B's self-edits
for 199 SQuAD train passages. Fine-tuning the teacher's LoRA on (our prompt -> that model's
self-edit), the loss on the self-edit only, is the ReST-EM SFT step with another model's
self-edits as the targets. Each target is first rewritten in the form the teacher is primed
to write (``seal.selfedit.canonical``), so what it learns is parsed the way it was read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from seal.lora import TEACHER, AdapterHost, AdapterState
from seal.restem import train_teacher
from seal.selfedit import FORMATS, QA, Passage, canonical
from seal.train import Checkpoint, TrainConfig, TrainResult


@dataclass(frozen=True)
class Target:
    """One distillation example: the teacher is prompted for ``passage`` in ``format`` and
    learns to answer ``text``."""

    passage: Passage
    format: str
    text: str
    source: str


class DataError(ValueError):
    """The distillation data is not in the expected shape, or holds nothing to learn."""


def reference_targets(
    rows: Sequence[dict],
    sources: Sequence[str],
    formats: Sequence[str],
    *,
    best_only: bool = False,
    exclude: Iterable[str] = (),
) -> list[Target]:
    """Targets from rows shaped as ``train_reference_self_edits.json``: ``{"title", "context",
    "questions", "self_edits": {source: {format: [text, ...]}}, "best_of_5": {source: {format:
    text}}}``. ``best_only`` keeps the one of five that taught the source's student most;
    passages whose context is in ``exclude`` (held-out passages) are left out, as are
    self-edits with nothing that parses."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise DataError(f"unknown format(s) {unknown}; expected some of {', '.join(FORMATS)}")
    skip = set(exclude)
    targets: list[Target] = []
    for index, row in enumerate(rows):
        try:
            passage = Passage(
                row["title"],
                row["context"],
                tuple(QA(q["question"], q["answer"]) for q in row.get("questions", [])),
            )
            pool = row.get("best_of_5" if best_only else "self_edits", {})
        except (KeyError, TypeError, AttributeError) as exc:
            message = f"passage {index}: expected title, context and questions ({exc})"
            raise DataError(message) from exc
        if passage.text in skip:
            continue
        for source in sources:
            for fmt in formats:
                texts = (pool.get(source) or {}).get(fmt) or []
                for text in [texts] if isinstance(texts, str) else texts:
                    target = canonical(str(text), fmt)
                    if target:
                        targets.append(Target(passage, fmt, target, source))
    if not targets:
        raise DataError(
            f"no self-edit of source(s) {', '.join(sources)} in format(s) {', '.join(formats)} "
            "in the data"
        )
    return targets


def distill(
    host: AdapterHost,
    targets: Sequence[Target],
    config: TrainConfig,
    *,
    init: AdapterState | None,
    slot: str = TEACHER,
    on_step: Callable[[int, int], None] | None = None,
    checkpoint: Checkpoint | None = None,
) -> TrainResult:
    """Fine-tune the teacher ``slot`` from ``init`` (a fresh adapter when None) to write each
    target's self-edit when prompted for its passage; ``losses`` are the epochs' mean token
    losses on the self-edits. A ``checkpoint`` makes it resumable."""
    pairs = [(t.passage, t.format, t.text) for t in targets]
    return train_teacher(
        host, pairs, config, init=init, slot=slot, on_step=on_step, checkpoint=checkpoint
    )
