"""Knowledge incorporation, the SEAL inner loop: self-edits in, rewarded adapters out.

For one document the teacher samples k self-edits; each is turned into training sequences, a
LoRA update is trained from the same starting adapter, and its reward is the change in
no-context probe accuracy that the update caused.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from seal.generation import SampleConfig, generate
from seal.grading import Evaluation, Probe
from seal.lora import STUDENT, TEACHER, AdapterHost, AdapterState
from seal.multi import evaluate_many, train_many
from seal.probes import probe_pairs
from seal.remote import RemoteTeacher
from seal.selfedit import (
    PRIMERS,
    QA,
    ChatTurn,
    Draft,
    Passage,
    parse_items,
    parse_qa,
    teacher_messages,
    training_sequences,
)
from seal.train import TrainConfig, TrainResult


@dataclass(frozen=True)
class Teacher:
    """Who writes self-edits: the bare base model, a teacher adapter on it, or an external
    OpenAI-compatible endpoint (``remote``; the host's weights are not used then)."""

    state: AdapterState | None = None
    slot: str = TEACHER
    remote: RemoteTeacher | None = None

    @property
    def active_slot(self) -> str | None:
        return self.slot if self.state is not None else None


@dataclass(frozen=True)
class InnerLoopConfig:
    """Everything one document's inner loop needs to know."""

    format: str = "implications"
    """Self-edit format: implications, implications-long, rewrite or self-qa."""
    num_candidates: int = 3
    """k, self-edits sampled per document (paper: 5)."""
    sample: SampleConfig = field(
        default_factory=lambda: SampleConfig(max_new_tokens=256, temperature=1.0, top_p=0.95)
    )
    """How the teacher samples (paper: temperature 1.0, top-p 0.95)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    answer_max_tokens: int = 32
    """Greedy tokens decoded per probe answer."""
    qa_form: str = "text"
    """How question-answer items are trained (``seal.selfedit.QA_FORMS``)."""


@dataclass
class Candidate:
    text: str
    items: list[str]
    reward: float = 0.0
    evaluation: Evaluation | None = None
    trained: TrainResult | None = None
    passage_alone: bool = False
    """The candidate trained on the document alone (no self-edit): plain fine-tuning."""
    over_passage: float | None = None
    """Probe accuracy above the passage-alone candidate of the same document; None when none
    was trained beside it."""

    @property
    def accuracy(self) -> float:
        return self.evaluation.accuracy if self.evaluation else 0.0

    def self_edits(self, fmt: str) -> list[tuple[str, str]]:
        """The candidate as :func:`seal.selfedit.training_sequences` takes it: its self-edit in
        format ``fmt``, or none for the passage alone."""
        return [] if self.passage_alone else [(fmt, self.text)]


def write_self_edits(
    host: AdapterHost, passage: Passage, fmt: str, k: int, sample: SampleConfig, teacher: Teacher
) -> list[str]:
    """k self-edits of ``passage``, each starting with the format's primer."""
    return write_self_edits_many(host, [passage], fmt, k, sample, teacher)[0]


def write_self_edits_many(
    host: AdapterHost,
    passages: Sequence[Passage],
    fmt: str,
    k: int,
    sample: SampleConfig,
    teacher: Teacher,
    *,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[list[str]]:
    """k self-edits of each passage, the passages' prompts decoded in the same batches of
    ``sample.batch_size`` completions (the k of one passage always share a batch). On a CPU
    a decoding step of 20 rows costs little more than one of 5, so a job's documents are best
    sampled together. ``on_batch(done, total)`` reports the passages written after each batch."""
    drafts = write_drafts_many(host, passages, fmt, k, sample, teacher, on_batch=on_batch)
    return [[d.text for d in row] for row in drafts]


def write_drafts_many(
    host: AdapterHost,
    passages: Sequence[Passage],
    fmt: str,
    k: int,
    sample: SampleConfig,
    teacher: Teacher,
    *,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[list[Draft]]:
    """:func:`write_self_edits_many`, each self-edit with whether it was cut off."""
    if not passages:
        return []
    if teacher.remote is not None:

        def on_done(index: int) -> None:
            if on_batch is not None:
                on_batch(index + 1, len(passages))

        replies = teacher.remote.complete_many_finished(
            [teacher_messages(p, fmt) for p in passages], sample, k, on_done=on_done
        )
        return [[Draft(text, cut) for text, cut in row] for row in replies]
    primer = PRIMERS[fmt]

    @contextmanager
    def per_batch(start: int, end: int) -> Iterator[None]:
        yield
        if on_batch is not None:
            on_batch(end, len(passages))

    generations = generate(
        host,
        [teacher_messages(p, fmt) for p in passages],
        sample,
        slot=teacher.active_slot,
        state=teacher.state,
        num_return_sequences=k,
        prefix=primer,
        per_chunk=per_batch,
    )
    drafts = [Draft(f"{primer} {g.text}", g.finish_reason == "length") for g in generations]
    return [drafts[i * k : (i + 1) * k] for i in range(len(passages))]


def write_probe_questions(
    host: AdapterHost, passage: Passage, n: int, teacher: Teacher, *, seed: int = 0
) -> list[QA]:
    """Up to n question-answer pairs written by the teacher, each graded on a short span of
    the passage that its answer is or contains (``seal.probes``); they are held out of
    training and serve as probes when a document has none."""
    return write_probe_questions_many(host, [passage], n, teacher, seed=seed)[0]


def write_probe_questions_many(
    host: AdapterHost,
    passages: Sequence[Passage],
    n: int,
    teacher: Teacher,
    *,
    seed: int = 0,
    batch_size: int = 32,
) -> list[list[QA]]:
    """``write_probe_questions`` for each passage, the passages decoded in shared batches of
    ``batch_size`` completions."""
    if n <= 0 or not passages:
        return [[] for _ in passages]
    sample = SampleConfig(
        max_new_tokens=192, temperature=0.7, top_p=0.95, seed=seed, batch_size=batch_size
    )
    written = write_self_edits_many(host, passages, "self-qa", max(2, n), sample, teacher)
    pairs = zip(passages, written, strict=True)
    return [
        probe_pairs(passage.text, [qa for t in texts for qa in parse_qa(t)], passage.title)[:n]
        for passage, texts in pairs
    ]


def probes_of(passage: Passage) -> list[Probe]:
    return [Probe(passage.title, qa) for qa in passage.questions]


def train_on(
    host: AdapterHost,
    sequences: Sequence[str | ChatTurn],
    config: TrainConfig,
    *,
    init: AdapterState | None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    return train_many(host, [sequences], config, init=init, slot=STUDENT, on_step=on_step)[0]


def evaluate_state(
    host: AdapterHost, state: AdapterState | None, probes: Sequence[Probe], max_new_tokens: int
) -> Evaluation:
    """Grade the student with adapter ``state``, or the bare base model when it is None."""
    return evaluate_many(host, [state], probes, max_new_tokens, slot=STUDENT)[0]


def score_candidates(
    host: AdapterHost,
    passage: Passage,
    texts: Sequence[str],
    config: InnerLoopConfig,
    *,
    init: AdapterState | None,
    baseline: Evaluation,
    replay: Sequence[str | ChatTurn] = (),
    passage_alone: bool = False,
    anchored: bool = False,
    on_candidate: Callable[[int, Candidate], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> list[Candidate]:
    """Train one adapter per self-edit from ``init`` (on the self-edit's sequences plus the
    same ``replay`` sequences for every candidate) and reward it by its probe accuracy gain
    over ``baseline``; the candidates come back in the order of ``texts``. With
    ``passage_alone``, one more candidate, last, trains on the passage alone (and the same
    replay), and every self-edit's ``over_passage`` is its accuracy above that one. With
    ``anchored`` as well, the passage alone is trained first and every self-edit's candidate
    continues from it (its items + the passage), so the items never cost the document its own
    training (``SEAL_ANCHORED_TRAINING``).

    All adapters are trained side by side and graded in the same batches (``seal.multi``)."""
    if not texts and not passage_alone:
        return []
    probes = probes_of(passage)
    candidates = [Candidate(text=t, items=parse_items(t, config.format)) for t in texts]
    if passage_alone:
        candidates.append(Candidate(text="", items=[], passage_alone=True))
    sets = [
        [
            *training_sequences(passage, c.self_edits(config.format), qa_form=config.qa_form),
            *replay,
        ]
        for c in candidates
    ]
    if anchored and passage_alone and texts:
        # the passage alone first; the self-edits then continue from it
        first = train_many(host, sets[-1:], config.train, init=init, slot=STUDENT)
        rest = train_many(
            host, sets[:-1], config.train, init=first[0].state, slot=STUDENT, on_step=on_step
        )
        trained = [*rest, *first]
    else:
        trained = train_many(host, sets, config.train, init=init, slot=STUDENT, on_step=on_step)
    evaluations = evaluate_many(
        host, [t.state for t in trained], probes, config.answer_max_tokens, slot=STUDENT
    )
    for index, (candidate, result, evaluation) in enumerate(
        zip(candidates, trained, evaluations, strict=True)
    ):
        candidate.trained = result
        candidate.evaluation = evaluation
        candidate.reward = evaluation.accuracy - baseline.accuracy
        if on_candidate:
            on_candidate(index, candidate)
    if passage_alone:
        plain = candidates[-1].accuracy
        for candidate in candidates[:-1]:
            candidate.over_passage = candidate.accuracy - plain
    return candidates


def best_candidate(candidates: Sequence[Candidate]) -> Candidate:
    """The highest reward; among equals, the one with the lowest final training loss."""
    if not candidates:
        raise ValueError("no candidates to choose from")

    def key(c: Candidate) -> tuple[float, float]:
        loss = c.trained.losses[-1] if c.trained and c.trained.losses else float("inf")
        return (-c.reward, loss)

    return min(candidates, key=key)


def correct_on(candidate: Candidate, indices: Sequence[int]) -> int:
    """How many of the probes at ``indices`` the candidate's adapter answered."""
    graded = candidate.evaluation.graded if candidate.evaluation else []
    return sum(graded[i].correct for i in indices if i < len(graded))


def choose_candidate(
    candidates: Sequence[Candidate], chosen_on: Sequence[int], *, margin: int = 1
) -> Candidate:
    """The candidate a document is learned from, judged on the probes at ``chosen_on`` only
    (the others stay unseen, for the gate). The passage alone, when among the candidates, is
    the incumbent: the best self-edit (most of those probes answered, ties to the lowest final
    training loss) replaces it only when it answers at least ``margin`` more of them, so a tie
    or the winner's curse among k noisy draws never costs the document its plain training.
    With no probe to choose on, the passage alone stays."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    plain = next((c for c in candidates if c.passage_alone), None)
    edits = [c for c in candidates if not c.passage_alone]
    if not edits:
        assert plain is not None
        return plain

    def key(c: Candidate) -> tuple[int, float]:
        loss = c.trained.losses[-1] if c.trained and c.trained.losses else float("inf")
        return (-correct_on(c, chosen_on), loss)

    best = min(edits, key=key)
    if plain is None:
        return best
    gain = correct_on(best, chosen_on) - correct_on(plain, chosen_on)
    return best if gain >= max(1, margin) else plain


def split_probes(n: int, seed: int) -> tuple[list[int], list[int]]:
    """The indices of a document's ``n`` probes split in two: those its candidates are chosen
    on, and those its version is judged on (the larger half when odd; a single probe is only
    judged on). The split is repeatable per seed."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    choose = sorted(order[: n // 2])
    return choose, sorted(order[n // 2 :])
