"""Probe questions for a document that came without any: what its update is graded on.

A document sent without questions still needs questions with gold answers, or no update of
it can be judged. Two sources, tried in this order:

- **The teacher's question-answer pairs** (``write_probe_questions_many`` in
  ``seal.knowledge``). The bundled teacher answers in sentences, so an answer is kept when it
  *contains* a short span of the document (at most ``MAX_SPAN_WORDS`` words) that the question
  does not already give away; that span becomes the gold answer. These ask for a fact in the
  teacher's words, not the document's: closest to how a user asks.
- **Cloze questions** that need no model (``cloze_questions``): a sentence of the document
  with a name, number or date blanked out, shown as a short window of its words. These test
  whether the student can give a fact of the document back through the chat template, with
  only the title in its prompt. Since the document itself is trained on, they measure recall
  of trained text, so they are a floor (no document is left without probes), not the first
  choice.

Both are graded as every probe is (``seal.grading``): the normalized gold answer must appear
in the first sentence of the greedy answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from seal.grading import normalize
from seal.selfedit import QA

#: The longest gold answer a generated probe keeps (SQuAD's answers are mostly this short).
MAX_SPAN_WORDS = 6
#: Words of the sentence shown on each side of a cloze's blank.
CLOZE_CONTEXT_WORDS = 10

_STOPWORDS = frozenset(
    """a an the of in on at to for by with from and or as is was were are be been being it its
    this that these those which who whom whose what when where why how there their they he she
    his her them than then also not no into over under about after before during between
    has have had do does did can could would should will may might one such other but if so
    because while although though however yet only just very most more many much some any all
    each both either neither""".split()  # noqa: SIM905
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(
    rf"\b(?:(?:{_MONTHS})\s+\d{{1,2}}(?:,\s*\d{{4}})?|\d{{1,2}}\s+(?:{_MONTHS})(?:\s+\d{{4}})?"
    rf"|(?:{_MONTHS})\s+\d{{4}})\b"
)
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\w)|(?<![\w.,])\d+(?:\.\d+)?(?!\w)")
_NUMBER_WORD = re.compile(
    r"\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
    r"fifty|hundred|thousand|million|billion|dozen|first|second|third|fourth|fifth)\b",
    re.I,
)
#: A long word of the sentence: the last resort of a document without names or numbers.
_TERM = re.compile(r"\b[a-z][a-z-]{6,}(?<!ly)\b")
_NAME = re.compile(
    r"\b[A-Z][\w'\u2019-]*(?:\s+(?:(?:of|de|la|le|von|van|der|du|da|and|the)\s+)?[A-Z][\w'\u2019-]*)*"
)


_WHEN = re.compile(
    r"^\s*(?:when|(?:in|by|since|until)?\s*what (?:year|date|century|decade))\b", re.I
)
_HOW_MANY = re.compile(r"^\s*how (?:many|much|long|old|far|large|big|tall|high)\b", re.I)
_WHO = re.compile(r"^\s*(?:who|whom|whose)\b", re.I)
_MONTH = re.compile(rf"\b(?:{_MONTHS})\b")


def _fits(question: str, span: str) -> bool:
    """Whether a span can answer the question's kind: a date for "when", a number for "how
    many", a name for "who"; anything for the other kinds."""
    if _WHEN.match(question):
        return bool(re.search(r"\d", span) or _MONTH.search(span))
    if _HOW_MANY.match(question):
        return bool(re.search(r"\d", span) or _NUMBER_WORD.search(span))
    if _WHO.match(question):
        return any(w[:1].isupper() for w in span.split())
    return True


def _stem(word: str) -> str:
    """A crude stem, so that "makes" counts as a word of "What does it make?"."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def answer_span(question: str, answer: str, passage: str, title: str = "") -> str | None:
    """The gold answer a written pair is graded on: the answer itself when it is a short span
    of the passage, else the longest short span of the passage inside the answer that fits
    the question's kind (a date for "when", ...) and neither starts nor ends with a word the
    question already has (among equally long ones, one with a name or a number first); None
    when there is no such span. The title is in every probe's prompt, so its words count as
    asked."""
    text_norm = f" {normalize(passage)} "
    asked = {_stem(w) for w in normalize(f"{title} {question}").split()}
    # each normalized word with the original token it came from, to give the span back as
    # the answer wrote it
    tokens = answer.split()
    pieces = [(w, i) for i, tok in enumerate(tokens) for w in normalize(tok).split()]
    words = [w for w, _ in pieces]
    if not words:
        return None

    def informative(span: Sequence[str]) -> bool:
        return any(w not in _STOPWORDS and _stem(w) not in asked for w in span)

    if len(words) <= MAX_SPAN_WORDS and f" {' '.join(words)} " in text_norm:
        whole = answer.strip().rstrip(".")
        return whole if informative(words) and _fits(question, whole) else None
    for size in range(min(MAX_SPAN_WORDS, len(words)), 0, -1):
        found = []
        for start in range(len(words) - size + 1):
            span = words[start : start + size]
            # one that starts or ends with a word the question has is found at a shorter size
            if {_stem(span[0]), _stem(span[-1])} & asked:
                continue
            if span[0] in _STOPWORDS or span[-1] in _STOPWORDS:
                continue
            if not informative(span) or f" {' '.join(span)} " not in text_norm:
                continue
            first, last = pieces[start][1], pieces[start + size - 1][1]
            text = " ".join(tokens[first : last + 1]).strip(".,;:!?\"'()[]")
            if _fits(question, text):
                found.append(text)
        if found:
            named = [t for t in found if any(w[:1].isupper() or w[:1].isdigit() for w in t.split())]
            return (named or found)[0]
    return None


def probe_pairs(passage: str, pairs: Sequence[QA], title: str = "") -> list[QA]:
    """The written pairs that can grade the passage, with their span as the gold answer;
    one per distinct question and per distinct answer."""
    kept: list[QA] = []
    questions: set[str] = set()
    answers: set[str] = set()
    for qa in pairs:
        question = qa.question.strip()
        if not question.endswith("?") or len(question.split()) < 3:
            continue
        span = answer_span(question, qa.answer, passage, title)
        if span is None or normalize(question) in questions or normalize(span) in answers:
            continue
        kept.append(QA(question, span))
        questions.add(normalize(question))
        answers.add(normalize(span))
    return kept


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]


def _blanks(sentence: str, title_norm: str) -> list[tuple[int, int]]:
    """Where a sentence's dates, numbers and names are, best first: dates and numbers, then
    names of several words, then single names (not its first word, not words of the title),
    then number words, then long words (terms)."""
    found: list[tuple[int, int, int]] = []
    patterns = ((0, _DATE), (1, _NUMBER), (2, _NAME), (4, _NUMBER_WORD), (5, _TERM))
    for rank, pattern in patterns:
        for m in pattern.finditer(sentence):
            span, start = m.group(0).strip(), m.start()
            first, _, rest = span.partition(" ")
            if rank == 2 and rest and first.lower() in _STOPWORDS:  # "The Grainger Market"
                span, start = rest, start + len(first) + 1
            end = start + len(span)
            if any(s <= start < e or start <= s < end for s, e, _ in found):
                continue
            norm = normalize(span)
            if not norm or all(w in _STOPWORDS for w in norm.split()):
                continue
            if f" {norm} " in f" {title_norm} ":
                continue  # the title is in the prompt: no test at all
            if rank == 2:
                if " " not in span:
                    if start == 0 or len(span) < 3:
                        continue
                    rank = 3
                elif start == 0 and norm.split()[0] in _STOPWORDS:
                    continue
            found.append((start, end, rank))
    # terms: the longest first (the rarest, as a rule); the others in the sentence's order
    order = sorted(found, key=lambda f: (f[2], -(f[1] - f[0]) if f[2] == 5 else f[0]))
    return [(s, e) for s, e, _ in order]


def cloze_questions(title: str, text: str, n: int) -> list[QA]:
    """Up to n cloze questions on the document's dates, numbers and names, spread over its
    sentences (one per sentence before a second from any), deterministic."""
    if n <= 0:
        return []
    title_norm = normalize(title)
    per_sentence: list[list[QA]] = []
    for sentence in _sentences(text):
        qas = []
        for start, end in _blanks(sentence, title_norm):
            answer = sentence[start:end]
            left = sentence[:start].split()[-CLOZE_CONTEXT_WORDS:]
            right = sentence[end:].split()[:CLOZE_CONTEXT_WORDS]
            context = " ".join([*left, "___", *right]).strip()
            if f" {normalize(answer)} " in f" {normalize(context)} ":
                continue  # the blank is given away elsewhere in the window
            qas.append(QA(f'What fills the blank in "{context}"?', answer))
        if qas:
            per_sentence.append(qas)
    picked: list[QA] = []
    seen: set[str] = set()
    depth = 0
    while len(picked) < n and any(depth < len(q) for q in per_sentence):
        for qas in per_sentence:
            if depth < len(qas) and len(picked) < n and normalize(qas[depth].answer) not in seen:
                picked.append(qas[depth])
                seen.add(normalize(qas[depth].answer))
        depth += 1
    return picked


def with_cloze(title: str, text: str, written: Sequence[QA], n: int) -> list[QA]:
    """A document's probe questions: the teacher's ``written`` ones, then cloze questions
    (their answers not among the written ones) up to ``n`` in all."""
    given = {q.answer.lower() for q in written}
    cloze = [qa for qa in cloze_questions(title, text, n) if qa.answer.lower() not in given]
    return [*written, *cloze[: max(0, n - len(written))]]
