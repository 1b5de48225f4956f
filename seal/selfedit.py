"""Self-edits: the teacher's prompts, and turning what it wrote into training sequences.

The prompts follow the SEAL paper's knowledge-incorporation prompts, sent through the teacher's
chat template. A self-edit is split into items (one line each; for ``self-qa`` one
question-answer pair each), a leading header line is dropped, every item is prefixed with the
document's title, and the title + full passage is added as one more sequence.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from seal.questions import question_messages

#: The self-edit formats the teacher can write (the SEAL paper's knowledge-incorporation prompts).
Format = Literal["implications", "implications-long", "rewrite", "self-qa"]
FORMATS: tuple[Format, ...] = get_args(Format)
#: Not a self-edit format: the document alone is trained on (plain fine-tuning, the baseline).
PASSAGE = "passage"

_INSTRUCTIONS = {
    "implications": (
        "Read the following passage and write a list of implications derived directly or "
        "indirectly from its content, one per line. Each implication must be a complete "
        "sentence that names who or what it is about."
    ),
    "implications-long": (
        "Read the following passage and write a long list of implications derived directly "
        "or indirectly from its content, one per line, covering every fact, name, number and "
        "date in it. Each implication must be a complete sentence that names who or what it "
        "is about."
    ),
    "rewrite": (
        "Read the following passage and rewrite it in several different ways, one rewrite "
        "per line. Keep every fact, name, number and date."
    ),
    "self-qa": (
        "Read the following passage and turn it into question-answer pairs that cover every "
        "fact in it. Write each pair on two lines:\nQuestion: ...\nAnswer: ..."
    ),
}

_HEADER = re.compile(r"^\s*(?:here (?:is|are)|sure)\b", re.I)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d{1,3}[.):]|[a-zA-Z][.)])\s+")
_QUESTION = re.compile(
    r"^\s*(?:\d{1,3}[.):]\s*)?(?:\*\*)?(?:Q(?:uestion)?\s*\d*\s*[:.])(?:\*\*)?\s*", re.I
)
_ANSWER = re.compile(r"^\s*(?:\*\*)?(?:A(?:nswer)?\s*\d*\s*[:.])(?:\*\*)?\s*", re.I)
_INLINE_ANSWER = re.compile(r"\s+(?:\*\*)?(?:Answer|A\d*)\s*:(?:\*\*)?\s*", re.I)


@dataclass(frozen=True)
class QA:
    question: str
    answer: str


@dataclass(frozen=True)
class ChatTurn:
    """A training sequence in chat form: ``messages`` rendered by the model's chat template
    as a prompt, then ``reply``; the loss covers the reply and the end of the turn only
    (``seal.train.tokenize``)."""

    messages: tuple[tuple[str, str], ...]
    """(role, content) pairs."""
    reply: str


@dataclass(frozen=True)
class Draft:
    """A self-edit as the teacher wrote it, and whether the token limit cut it off."""

    text: str
    truncated: bool = False


@dataclass(frozen=True)
class Passage:
    """A document as the ML core sees it: no ids, no tenant."""

    title: str
    text: str
    questions: Sequence[QA] = field(default_factory=tuple)


#: How the teacher's reply starts: a small model follows a format far better once it has begun it.
PRIMERS = {"implications": "1.", "implications-long": "1.", "rewrite": "1.", "self-qa": "Question:"}
#: Formats whose self-edits are question-answer pairs: ``self-qa``, and ``open-book``
#: (``seal.openbook``: the teacher's questions, answered with the document in the prompt).
QA_SELF_EDITS = frozenset({"self-qa", "open-book"})


def teacher_messages(passage: Passage, fmt: str) -> list[dict[str, str]]:
    """The prompt of format ``fmt`` (``open-book``: the ``self-qa`` prompt, whose questions
    it answers open book)."""
    fmt = "self-qa" if fmt == "open-book" else fmt
    if fmt not in _INSTRUCTIONS:
        raise ValueError(f"unknown self-edit format {fmt!r}; expected one of {', '.join(FORMATS)}")
    content = f"{_INSTRUCTIONS[fmt]}\n\nTitle: {passage.title}\n{passage.text}"
    return [{"role": "user", "content": content}]


def _is_header(line: str) -> bool:
    return line.rstrip().endswith(":") or bool(_HEADER.match(line))


def parse_items(text: str, fmt: str) -> list[str]:
    """Split a self-edit into training items, without the title prefix."""
    if fmt in QA_SELF_EDITS:
        return [f"Question: {qa.question}\nAnswer: {qa.answer}" for qa in parse_qa(text)]
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if lines and _is_header(lines[0]):
        lines = lines[1:]
    items = [_BULLET.sub("", ln).replace("**", "").strip().strip("*").strip() for ln in lines]
    return list(dict.fromkeys(item for item in items if len(item) >= 8))


def parse_qa(text: str) -> list[QA]:
    """Question-answer pairs in ``Question: .. / Answer: ..`` form, or a question line then
    its answer line."""
    pairs: list[QA] = []
    question: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if _QUESTION.match(line):
            rest = _QUESTION.sub("", line)
            inline = _INLINE_ANSWER.search(rest)
            if inline:  # "Question: ... Answer: ..." on one line
                q, a = rest[: inline.start()].strip(), rest[inline.end() :].strip()
                if q and a:
                    pairs.append(QA(q, a))
                question = None
            else:
                question = rest.strip() or None
        elif _ANSWER.match(line) and question:
            answer = _ANSWER.sub("", line).strip()
            if answer:
                pairs.append(QA(question, answer))
            question = None
        elif question is None and line.rstrip("*").endswith("?"):
            question = _BULLET.sub("", line).strip("* ")
        elif question is not None:
            pairs.append(QA(question, _BULLET.sub("", line).strip("* ")))
            question = None
    return list(dict.fromkeys(pairs))


def canonical(text: str, fmt: str) -> str:
    """A self-edit in the form this project's teacher is primed to write (``PRIMERS``): for
    ``self-qa`` its pairs as "Question: ..." / "Answer: ..." lines, else its items as a
    numbered list. Another model's self-edit becomes a distillation target this way; an empty
    string when nothing in it parses."""
    if fmt in QA_SELF_EDITS:
        return "\n".join(f"Question: {qa.question}\nAnswer: {qa.answer}" for qa in parse_qa(text))
    return "\n".join(f"{n}. {item}" for n, item in enumerate(parse_items(text, fmt), start=1))


#: How question-answer items are trained: ``text`` as raw text after the title (the paper's
#: recipe), ``chat`` as a chat turn in the probe's own form (the system prompt, "Topic:
#: {title}" and the question; the answer as the reply), ``both`` as the two together.
QA_FORMS = ("text", "chat", "both")


def qa_turn(title: str, qa: QA) -> ChatTurn:
    """A question-answer pair as the chat turn a probe of it is asked in (``seal.grading``)."""
    messages = question_messages(title, qa.question)
    return ChatTurn(tuple((m["role"], m["content"]) for m in messages), qa.answer)


def _item_qa(item: str) -> QA | None:
    """The one question-answer pair an item is (a ``self-qa`` item), or None."""
    if not _QUESTION.match(item):
        return None
    pairs = parse_qa(item)
    return pairs[0] if len(pairs) == 1 else None


def training_sequences(
    passage: Passage, self_edits: Iterable[tuple[str, str]], *, qa_form: str = "text"
) -> list[str | ChatTurn]:
    """The sequences a student adapter is trained on for one document and its self-edits, each
    a ``(format, text)`` pair: the items of every self-edit in order, each after the title (a
    question-answer item in the form ``qa_form`` says), then the title + document. An item that
    two self-edits both wrote is trained twice, as they wrote it (one self-edit's own repeats
    are dropped by :func:`parse_items`). The one way the service, the evaluation harness and
    the benchmark turn self-edits into training data; no self-edits is the passage alone."""
    items = [item for fmt, text in self_edits for item in parse_items(text, fmt)]
    return item_sequences(passage, items, qa_form=qa_form)


def item_sequences(
    passage: Passage, items: Sequence[str], *, qa_form: str = "text"
) -> list[str | ChatTurn]:
    """The training sequences of already parsed items (:func:`training_sequences` parses
    self-edits into them): each item after the title, then the title + document."""
    if qa_form not in QA_FORMS:
        raise ValueError(f"unknown qa_form {qa_form!r}; expected one of {', '.join(QA_FORMS)}")
    sequences: list[str | ChatTurn] = []
    for item in items:
        qa = _item_qa(item) if qa_form != "text" else None
        if qa is not None:
            sequences.append(qa_turn(passage.title, qa))
        if qa is None or qa_form == "both":
            sequences.append(f"{passage.title}\n{item}")
    sequences.append(f"{passage.title}\n{passage.text}")
    return sequences


def choose_format(
    rewards: dict[str, list[float]],
    rng: random.Random,
    *,
    explore: float = 0.2,
    passage: float | None = None,
) -> str:
    """The ``auto`` format: a format never tried first; else, with probability ``explore``, one
    of the others at random; else the one whose self-edits earned the best mean reward. With
    ``passage`` (the reward the document alone earns on the same scale: 0 when ``rewards``
    are gains over the passage alone), ``passage`` is a contender too and wins ties: a tenant
    whose self-edits teach no more than its documents stops paying for them."""
    untried = [f for f in FORMATS if not rewards.get(f)]
    if untried:
        return untried[0]
    means: dict[str, float] = {f: sum(rewards[f]) / len(rewards[f]) for f in FORMATS}
    contenders: list[str] = list(FORMATS)
    if passage is not None:
        means[PASSAGE] = passage
        contenders.insert(0, PASSAGE)
    best = max(contenders, key=lambda f: (means[f], -contenders.index(f)))
    if rng.random() < explore:
        return rng.choice([f for f in contenders if f != best])
    return best
