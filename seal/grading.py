"""The deterministic grader and the no-context question prompt of the SEAL evaluation.

A question is asked without its passage, only "Topic: {title}"; the answer is decoded greedily
and counts as correct when the normalized gold answer appears in its normalized first sentence.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from seal.generation import Generation, SampleConfig, generate
from seal.lora import AdapterHost, AdapterState
from seal.questions import question_messages
from seal.selfedit import QA

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize(text: str) -> str:
    """Lower case, without punctuation, articles or extra white space (SQuAD's normalization)."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def first_sentence(text: str) -> str:
    for part in _SENTENCE_END.split(text.strip()):
        if part.strip():
            return part
    return ""


def contained(text: str, gold: str) -> bool:
    """Whether the normalized gold answer occurs, as whole words, in the normalized text."""
    target = normalize(gold)
    return bool(target) and f" {target} " in f" {normalize(text)} "


def is_correct(answer: str, gold: str) -> bool:
    """The harness's grader: the gold answer contained in the answer's first sentence."""
    return contained(first_sentence(answer), gold)


@dataclass(frozen=True)
class Probe:
    """A question about a document, asked with only the document's title."""

    title: str
    qa: QA


@dataclass(frozen=True)
class Graded:
    probe: Probe
    answer: str
    correct: bool


@dataclass(frozen=True)
class Evaluation:
    graded: list[Graded]

    @property
    def accuracy(self) -> float:
        return sum(g.correct for g in self.graded) / len(self.graded) if self.graded else 0.0

    @property
    def correct(self) -> int:
        return sum(g.correct for g in self.graded)


def evaluate(
    host: AdapterHost,
    probes: Sequence[Probe],
    *,
    slot: str | None,
    state: AdapterState | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 16,
) -> Evaluation:
    """Greedy, batched answers to every probe, graded."""
    if not probes:
        return Evaluation([])
    config = SampleConfig(max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch_size)
    answers: list[Generation] = generate(
        host,
        [question_messages(p.title, p.qa.question) for p in probes],
        config,
        slot=slot,
        state=state,
    )
    return Evaluation(
        [
            Graded(p, a.text, is_correct(a.text, p.qa.answer))
            for p, a in zip(probes, answers, strict=True)
        ]
    )
