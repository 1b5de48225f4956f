"""ReST-EM: the teacher learns from the rewards its own self-edits earned.

A round: for each passage, sample k self-edits with the current teacher, run the inner loop for
each from the same starting adapter (and one on the passage alone beside them), reward each,
keep the best one when its reward is positive and it taught more than the passage alone,
then fine-tune the teacher's LoRA on (prompt -> kept self-edit) with the loss on the self-edit
only. Rounds chain: round n+1 samples with the teacher of round n.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from seal.grading import Evaluation, Graded, Probe
from seal.knowledge import (
    TEACHER,
    Candidate,
    InnerLoopConfig,
    Teacher,
    best_candidate,
    evaluate_state,
    probes_of,
    score_candidates,
    write_self_edits_many,
)
from seal.lora import AdapterHost, AdapterState
from seal.selfedit import QA, Passage, teacher_messages
from seal.train import Checkpoint, Example, TrainConfig, TrainResult, train_adapter

#: The paper's teacher fine-tuning: lr 3e-4, 2 epochs.
TEACHER_TRAIN = TrainConfig(learning_rate=3e-4, epochs=2, batch_size=4)


@dataclass
class Scored:
    """One passage of a round: its self-edit candidates, the passage-alone candidate, and the
    self-edit kept (if one earned a reward and beat the passage alone)."""

    passage: Passage
    candidates: list[Candidate]
    baseline: Evaluation
    kept: Candidate | None
    passage_alone: Candidate | None = None


@dataclass
class RoundResult:
    scored: list[Scored]
    teacher: AdapterState | None
    """The fine-tuned teacher; None when no self-edit earned a positive reward."""
    trained: TrainResult | None = None
    heldout: Evaluation | None = None

    @property
    def rewards(self) -> list[float]:
        return [c.reward for s in self.scored for c in s.candidates]

    @property
    def mean_reward(self) -> float:
        return sum(self.rewards) / len(self.rewards) if self.rewards else 0.0

    @property
    def mean_over_passage(self) -> float:
        """The self-edits' mean probe accuracy above their passage-alone candidates."""
        gains = [c.over_passage or 0.0 for s in self.scored for c in s.candidates]
        return sum(gains) / len(gains) if gains else 0.0

    @property
    def kept(self) -> list[Scored]:
        return [s for s in self.scored if s.kept is not None]


@dataclass(frozen=True)
class RoundConfig:
    inner: InnerLoopConfig = field(default_factory=InnerLoopConfig)
    teacher_train: TrainConfig = TEACHER_TRAIN


def score_passage(
    host: AdapterHost,
    passage: Passage,
    texts: Sequence[str],
    config: InnerLoopConfig,
    *,
    init: AdapterState | None = None,
    on_candidate: Callable[[int, Candidate], None] | None = None,
) -> Scored:
    """Reward each of the self-edits ``texts`` of ``passage`` by an inner loop from ``init``;
    the one kept must earn a positive reward *and* beat the passage alone on its probes."""
    baseline = evaluate_state(host, init, probes_of(passage), config.answer_max_tokens)
    *candidates, plain = score_candidates(
        host,
        passage,
        texts,
        config,
        init=init,
        baseline=baseline,
        passage_alone=True,
        on_candidate=on_candidate,
    )
    kept = None
    if candidates:
        best = best_candidate(candidates)
        if best.reward > 0 and (best.over_passage or 0.0) > 0:
            kept = best
    return Scored(passage, candidates, baseline, kept, plain)


def teacher_examples(
    host: AdapterHost, pairs: Sequence[tuple[Passage, str, str]], max_len: int
) -> list[Example]:
    """(passage, format, self-edit) -> the teacher's prompt followed by the self-edit; the loss
    covers the self-edit and the end of the turn only."""
    tok = host.tokenizer
    examples = []
    for passage, fmt, text in pairs:
        prompt = str(
            tok.apply_chat_template(
                teacher_messages(passage, fmt), add_generation_prompt=True, tokenize=False
            )
        )
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (prompt_ids + reply_ids)[:max_len]
        if len(prompt_ids) < len(ids):
            examples.append(Example(ids=ids, loss_from=len(prompt_ids)))
    return examples


def train_teacher(
    host: AdapterHost,
    pairs: Sequence[tuple[Passage, str, str]],
    config: TrainConfig,
    *,
    init: AdapterState | None,
    slot: str = TEACHER,
    on_step: Callable[[int, int], None] | None = None,
    checkpoint: Checkpoint | None = None,
) -> TrainResult:
    """Supervised fine-tuning of the teacher slot on (prompt -> self-edit) pairs."""
    examples = teacher_examples(host, pairs, config.max_seq_len)
    return train_adapter(
        host, slot, examples, config, init=init, on_step=on_step, checkpoint=checkpoint
    )


def heldout_evaluation(
    host: AdapterHost,
    passages: Sequence[Passage],
    config: InnerLoopConfig,
    teacher: Teacher,
    *,
    samples: int = 1,
) -> Evaluation:
    """How well a teacher teaches: for each held-out passage, ``samples`` self-edits, a student
    adapter trained from scratch on each, graded on the passage's questions."""
    graded = []
    one = replace(config, num_candidates=samples)
    written = write_self_edits_many(host, passages, one.format, samples, one.sample, teacher)
    for passage, texts in zip(passages, written, strict=True):
        empty = Evaluation([])
        for candidate in score_candidates(host, passage, texts, one, init=None, baseline=empty):
            if candidate.evaluation is not None:
                graded.extend(candidate.evaluation.graded)
    return Evaluation(graded)


def evaluation_json(evaluation: Evaluation) -> list[list[Any]]:
    return [
        [g.probe.title, g.probe.qa.question, g.probe.qa.answer, g.answer, g.correct]
        for g in evaluation.graded
    ]


def evaluation_from_json(rows: Sequence[Sequence[Any]]) -> Evaluation:
    return Evaluation(
        [Graded(Probe(title, QA(q, gold)), answer, bool(ok)) for title, q, gold, answer, ok in rows]
    )


def scored_json(scored: Scored) -> dict[str, Any]:
    """What a finished passage of a round is kept as in a run's journal."""

    def candidate(c: Candidate) -> dict[str, Any]:
        return {
            "text": c.text,
            "items": c.items,
            "reward": c.reward,
            "over_passage": c.over_passage,
            "evaluation": evaluation_json(c.evaluation) if c.evaluation else None,
        }

    kept = scored.candidates.index(scored.kept) if scored.kept is not None else None
    return {
        "candidates": [candidate(c) for c in scored.candidates],
        "baseline": evaluation_json(scored.baseline),
        "kept": kept,
        "passage_alone": candidate(scored.passage_alone) if scored.passage_alone else None,
    }


def scored_from_json(passage: Passage, data: dict[str, Any]) -> Scored:
    def candidate(d: dict[str, Any], alone: bool = False) -> Candidate:
        evaluation = d.get("evaluation")
        return Candidate(
            text=d["text"],
            items=list(d["items"]),
            reward=float(d["reward"]),
            evaluation=evaluation_from_json(evaluation) if evaluation is not None else None,
            passage_alone=alone,
            over_passage=d.get("over_passage"),
        )

    candidates = [candidate(c) for c in data["candidates"]]
    kept = data.get("kept")
    alone = data.get("passage_alone")
    return Scored(
        passage,
        candidates,
        evaluation_from_json(data["baseline"]),
        candidates[kept] if kept is not None else None,
        candidate(alone, alone=True) if alone else None,
    )


def restem_round(
    host: AdapterHost,
    passages: Sequence[Passage],
    config: RoundConfig,
    teacher: Teacher,
    *,
    on_passage: Callable[[int, Scored], None] | None = None,
    written: Sequence[Sequence[str]] | None = None,
    on_written: Callable[[list[list[str]]], None] | None = None,
    done: Mapping[int, Scored] | None = None,
) -> RoundResult:
    """One ReST-EM round from ``teacher``; the new teacher continues from its weights. A
    resumed round is given the self-edits it had ``written`` and the passages it had
    ``done``; ``on_written`` and ``on_passage`` report them as they happen."""
    scored = []
    inner = config.inner
    if written is None:
        # The round's teacher is fixed: all its self-edits are sampled first, in shared batches.
        written = write_self_edits_many(
            host, passages, inner.format, inner.num_candidates, inner.sample, teacher
        )
        if on_written:
            on_written([list(texts) for texts in written])
    for index, (passage, texts) in enumerate(zip(passages, written, strict=True)):
        if done and index in done:
            scored.append(done[index])
            continue
        result = score_passage(host, passage, texts, inner)
        scored.append(result)
        if on_passage:
            on_passage(index, result)
    pairs = [(s.passage, config.inner.format, s.kept.text) for s in scored if s.kept]
    if not pairs:
        return RoundResult(scored=scored, teacher=None)
    trained = train_teacher(
        host, pairs, config.teacher_train, init=teacher.state, slot=teacher.slot
    )
    return RoundResult(scored=scored, teacher=trained.state, trained=trained)
