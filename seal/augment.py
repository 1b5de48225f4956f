"""Teacher-free self-edits: the document's own sentences, as separate items.

A small model trained on a passage as one sequence memorizes it, but often cannot extract a
fact of it when asked (Allen-Zhu and Li, "Physics of Language Models, Part 3.1": without
augmentation, knowledge stored is not knowledge extractable). The cheapest augmentation needs
no teacher at all: each sentence of the document becomes a training item of its own (after
the title, like every item), so every fact is seen once more, out of the passage's order and
next to the document's name. The format ``sentences`` writes k such self-edits, each a
different cut of the same sentences:

0. every sentence alone;
1. every pair of neighbouring sentences (a fact whose subject the previous sentence named
   keeps it);
2. the whole document with its sentences reordered, three times over (the passage's facts
   without its order).

Every item is the document's own text, so the grounding checks pass and nothing a teacher
could invent is ever trained.
"""

from __future__ import annotations

import random
import re
from itertools import pairwise

from seal.selfedit import Draft, Passage

#: The format name (``SEAL_SELF_EDIT_FORMAT=sentences``).
SENTENCES = "sentences"

# a sentence ends at ., ! or ? (a closing quote or bracket may follow) before a space and
# a capital, a digit or an opening quote; not after an initial ("J. Smith") or a common
# abbreviation ("Mr.", "St.", "e.g.")
_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_ABBREVIATION = re.compile(
    r"(?:\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|St|Mt|Jr|Sr|Prof|Gen|Col|Lt|Rev|No|vs|etc|e\.g|i\.e|U\.S|"
    r"Inc|Ltd|Co|Corp|ca|c))\.$"
)
#: How many reorderings of the whole document variant 2 holds.
REORDERINGS = 3


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, in order (a sentence too short to be one joins the next)."""
    pieces: list[str] = []
    start = 0
    for match in _END.finditer(text):
        head = text[start : match.start()].strip()
        if _ABBREVIATION.search(head):
            continue
        pieces.append(head)
        start = match.end()
    pieces.append(text[start:].strip())
    sentences: list[str] = []
    carry = ""
    for piece in pieces:
        piece = f"{carry} {piece}".strip() if carry else piece
        if len(piece) < 20:  # a fragment ("No. 5.") rides with what follows
            carry = piece
            continue
        sentences.append(piece)
        carry = ""
    if carry:
        if sentences:
            sentences[-1] = f"{sentences[-1]} {carry}"
        else:
            sentences.append(carry)
    return [s for s in sentences if s]


def _numbered(items: list[str]) -> str:
    return "\n".join(f"{n}. {item}" for n, item in enumerate(items, start=1))


def sentence_drafts(passage: Passage, k: int, seed: int) -> list[Draft]:
    """k ``sentences`` self-edits of ``passage`` (the variants of the module's docstring, in
    turn; the reorderings are seeded by ``seed``, the draft's number and the title)."""
    sentences = [" ".join(s.split()) for s in split_sentences(passage.text)]
    drafts: list[Draft] = []
    for i in range(k):
        variant = i % 3
        if variant == 0 or len(sentences) < 2:
            items = sentences
        elif variant == 1:
            items = [f"{a} {b}" for a, b in pairwise(sentences)]
        else:
            rng = random.Random(f"{seed}:{i}:{passage.title}")
            items = []
            for _ in range(REORDERINGS):
                order = sentences[:]
                rng.shuffle(order)
                items.append(" ".join(order))
        drafts.append(Draft(_numbered(items)))
    return drafts
