"""How a question is put to the model: closed book (only the document's title, as the probes
ask it) or open book (documents in the system prompt). Plain Python, no torch: the API builds
hybrid memory's prompts with it without loading the model (:mod:`seal.grading` grades the
closed-book answers, :mod:`seal.openbook` writes training items from the open-book ones)."""

from __future__ import annotations

from collections.abc import Sequence

#: The system prompt of every question the evaluation asks.
SYSTEM = "Answer the question directly and concisely, in one sentence."


def question_messages(title: str, question: str) -> list[dict[str, str]]:
    """A question asked closed book, with only its document's title as ``Topic:``."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Topic: {title}\n{question}" if title else question},
    ]


def open_book_messages(
    documents: Sequence[tuple[str, str]], title: str, question: str
) -> list[dict[str, str]]:
    """A question asked as a probe asks it ("Topic: {title}"), with ``documents`` (title, text)
    in the system prompt to answer from."""
    shown = "\n\n".join(f"Document: {t}\n{text}" for t, text in documents)
    return [
        {"role": "system", "content": f"{SYSTEM} Answer from these documents.\n\n{shown}"},
        {"role": "user", "content": f"Topic: {title}\n{question}" if title else question},
    ]
