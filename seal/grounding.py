"""Self-edits checked against their document before anything is trained on them.

A small teacher at temperature 1.0 writes items that are wrong: a question-answer pair whose
answer is not in the document, an implication with a name or a number the document never
gave. Phrased like the questions users ask, such items win over the document's own sentence
when the student answers. So every item must be grounded:

- a **question-answer** item only when its answer is, or contains, a short span of the
  document (the rule that keeps the teacher's probe questions, :func:`seal.probes.answer_span`);
- any **other item** (an implication, a rewrite) only when every number it states and every
  capitalized word after its first occurs in the document or its title;
- no item may **repeat a probe** (the same question, or nearly: the gate and the selection
  grade on probes, and an item that teaches a probe's answer grades itself);
- a generation **cut off by the token limit** is dropped whole (``drop``), or loses its last,
  unfinished item (``trim``).

:func:`ground` returns what is left as the canonical text of the format
(:func:`seal.selfedit.canonical`), with a count of what each rule dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from seal.grading import normalize
from seal.probes import answer_span
from seal.selfedit import QA, QA_SELF_EDITS, Draft, Passage, canonical, parse_items, parse_qa

Truncated = Literal["drop", "trim", "keep"]
TRUNCATED: tuple[Truncated, ...] = ("drop", "trim", "keep")

#: Two questions this similar (shared words over all words) ask the same thing.
SAME_QUESTION = 0.7

_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_CAPITALIZED = re.compile(r"\b[A-Z][\w'\u2019-]*")


@dataclass
class Grounded:
    """One self-edit after the checks: ``text`` holds its kept items (empty: none left)."""

    text: str
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


def _words(text: str) -> set[str]:
    return set(normalize(text).split())


def _same_question(a: str, b: str) -> bool:
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return False
    return len(wa & wb) / len(wa | wb) >= SAME_QUESTION


_QUESTION_WORDS = frozenset(
    ["what", "which", "where", "when", "whom", "whose", "does", "were", "there", "about"]
)


def _content(text: str) -> set[str]:
    return {w for w in _words(text) if len(w) >= 4 and w not in _QUESTION_WORDS}


def repeats_probe(qa: QA, probes: Sequence[QA]) -> bool:
    """Whether a written pair asks what a probe asks: nearly the same question, or the
    probe's answer given to a question on the same subject (a content word in common)."""
    for probe in probes:
        if _same_question(qa.question, probe.question):
            return True
        gold = normalize(probe.answer)
        same_answer = bool(gold) and f" {gold} " in f" {normalize(qa.answer)} "
        if same_answer and _content(qa.question) & _content(probe.question):
            return True
    return False


def _facts_in(item: str, source: str) -> bool:
    """Every number and every capitalized word after the first of ``item`` occurs in
    ``source`` (compared without case, commas in numbers ignored)."""
    words = set(re.findall(r"[\w'\u2019-]+", source.lower()))
    numbers = {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(source)}
    for number in _NUMBER.findall(item):
        if number.replace(",", "").rstrip(".") not in numbers:
            return False
    for match in _CAPITALIZED.finditer(item):
        if match.start() == 0:
            continue  # every sentence starts with one
        word = match.group(0).lower().rstrip("'\u2019")
        if word.endswith(("'s", "\u2019s")):
            word = word[:-2]
        if word not in words:
            return False
    return True


def ground(
    text: str,
    fmt: str,
    title: str,
    passage: str,
    probes: Sequence[QA] = (),
    *,
    truncated: bool = False,
    on_truncated: Truncated = "drop",
) -> Grounded:
    """The grounded part of one self-edit of format ``fmt`` (see the module's docstring)."""
    if truncated and on_truncated == "drop":
        result = Grounded("")
        result.drop("truncated", len(parse_items(text, fmt)) or 1)
        return result
    if fmt in QA_SELF_EDITS:
        return _ground_qa(text, title, passage, probes, truncated and on_truncated == "trim")
    items = parse_items(text, fmt)
    result = Grounded("")
    if truncated and on_truncated == "trim" and items:
        items = items[:-1]
        result.drop("truncated")
    source = f"{title}\n{passage}"
    kept = []
    for item in items:
        if _facts_in(item, source):
            kept.append(item)
        else:
            result.drop("ungrounded")
    result.kept = len(kept)
    result.text = canonical("\n".join(f"{n}. {it}" for n, it in enumerate(kept, 1)), fmt)
    return result


@dataclass
class GroundedDrafts:
    """One document's drafts after :func:`ground`: the texts left to train on (a draft left
    with no item is dropped), the items they keep, and each rule's drops (``<reason>_items``,
    and ``empty_self_edits`` for the drafts dropped whole)."""

    texts: list[str] = field(default_factory=list)
    items: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


def ground_drafts(
    drafts: Sequence[Draft], fmt: str, passage: Passage, *, on_truncated: Truncated = "drop"
) -> GroundedDrafts:
    """Every draft of ``passage`` checked by :func:`ground` against the passage and its
    questions (the probes)."""
    out = GroundedDrafts()
    for draft in drafts:
        result = ground(
            draft.text,
            fmt,
            passage.title,
            passage.text,
            passage.questions,
            truncated=draft.truncated,
            on_truncated=on_truncated,
        )
        out.dropped.update({f"{reason}_items": n for reason, n in result.dropped.items()})
        out.items += result.kept
        if result.kept:
            out.texts.append(result.text)
        else:
            out.dropped["empty_self_edits"] += 1
    return out


def _ground_qa(
    text: str, title: str, passage: str, probes: Sequence[QA], trim_last: bool
) -> Grounded:
    pairs = parse_qa(text)
    result = Grounded("")
    if trim_last and pairs:
        pairs = pairs[:-1]
        result.drop("truncated")
    kept = []
    for qa in pairs:
        if repeats_probe(qa, probes):
            result.drop("repeats_probe")
        elif answer_span(qa.question, qa.answer, passage, title) is None:
            result.drop("ungrounded")
        else:
            kept.append(qa)
    result.kept = len(kept)
    result.text = "\n".join(f"Question: {qa.question}\nAnswer: {qa.answer}" for qa in kept)
    return result
