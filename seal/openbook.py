"""Open-book items (context distillation): the teacher asks, the model answers with the
document in its prompt, and the adapter learns to give those answers without it.

With its document in the prompt the bundled model answers about a third of SQuAD's questions;
without it, one in twenty-five, and an adapter trained on the passage about one in four (the
numbers: ``docs/results/``). Its open-book answers are the most faithful training items a small
model can write: the teacher only has to ask (Cartridges' self-study, Knowledge Modules' deep
context distillation). The answers come from a forward pass with the one document being learned
in the prompt, never another. The same prompt (:func:`seal.questions.open_book_messages`, which
needs no torch) serves hybrid memory's chat.

The self-edit is stored as ``Question: ... / Answer: ...`` lines (the ``self-qa`` form), so
ReST-EM can teach the teacher to write the questions whose answers taught most.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from seal.generation import SampleConfig, generate
from seal.grading import first_sentence
from seal.knowledge import Draft, Teacher, write_drafts_many
from seal.lora import AdapterHost
from seal.questions import open_book_messages
from seal.selfedit import Passage, parse_qa

#: The self-edit format whose answers are written open book.
OPEN_BOOK = "open-book"


def write_open_book_many(
    teacher_host: AdapterHost,
    answer_host: AdapterHost,
    passages: Sequence[Passage],
    k: int,
    sample: SampleConfig,
    teacher: Teacher,
    *,
    answer_max_tokens: int = 32,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[list[Draft]]:
    """k open-book self-edits of each passage: the teacher writes k sets of questions (its
    ``self-qa`` prompt; its own answers are dropped), and the base model of ``answer_host``
    answers each question greedily with that passage alone in its prompt (the first sentence
    of the reply is the answer)."""
    written = write_drafts_many(
        teacher_host, passages, "self-qa", k, sample, teacher, on_batch=on_batch
    )
    return answer_open_book(
        answer_host, passages, written, answer_max_tokens, batch_size=sample.batch_size
    )


def answer_open_book(
    answer_host: AdapterHost,
    passages: Sequence[Passage],
    written: Sequence[Sequence[Draft]],
    answer_max_tokens: int = 32,
    *,
    batch_size: int = 32,
) -> list[list[Draft]]:
    """Each written ``self-qa`` draft's questions answered greedily by the base model of
    ``answer_host`` with that passage alone in its prompt, all in shared batches."""
    questions = [
        [list(dict.fromkeys(qa.question for qa in parse_qa(d.text) if qa.question.endswith("?")))
         for d in drafts]
        for drafts in written
    ]  # fmt: skip
    asks = [
        open_book_messages([(p.title, p.text)], p.title, q)
        for p, sets in zip(passages, questions, strict=True)
        for qs in sets
        for q in qs
    ]
    config = SampleConfig(max_new_tokens=answer_max_tokens, temperature=0.0, batch_size=batch_size)
    answers = iter(generate(answer_host, asks, config, slot=None)) if asks else iter(())
    out: list[list[Draft]] = []
    for sets in questions:
        drafts = []
        for qs in sets:
            lines = []
            for q in qs:
                answer = first_sentence(next(answers).text).strip()
                if answer:
                    lines.append(f"Question: {q}\nAnswer: {answer}")
            drafts.append(Draft("\n".join(lines)))
        out.append(drafts)
    return out
