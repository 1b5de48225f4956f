"""Open-book items: the teacher's questions, answered by the model with the document in its
prompt (seal.openbook), on the tiny model."""

from __future__ import annotations

import pytest

from seal import openbook
from seal.generation import SampleConfig, generate
from seal.grading import first_sentence
from seal.knowledge import Draft, Teacher
from seal.lora import AdapterHost
from seal.openbook import write_open_book_many
from seal.questions import open_book_messages
from seal.selfedit import QA, Passage, parse_items, parse_qa, teacher_messages

PASSAGES = [
    Passage("Zorblat Industries", "Zorblat Industries was founded by Marisol Quenby in 1987."),
    Passage("Vellmora", "Vellmora is a town of glass bicycles on the river Oske."),
]
QUESTIONS = {
    "Zorblat Industries": ["Who founded Zorblat Industries?", "When was it founded?"],
    "Vellmora": ["What does Vellmora make?", "Not a question"],
}


def test_the_answers_come_from_a_pass_with_the_document_in_the_prompt(
    tiny_host: AdapterHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    def teacher_asks(host, passages, fmt, k, sample, teacher, *, on_batch=None):  # type: ignore[no-untyped-def]
        assert fmt == "self-qa"
        return [
            [Draft("\n".join(f"Question: {q}\nAnswer: whatever" for q in QUESTIONS[p.title]))] * k
            for p in passages
        ]

    prompts: list[list[dict[str, str]]] = []
    real = openbook.generate

    def spy(host, conversations, config, **kwargs):  # type: ignore[no-untyped-def]
        prompts.extend(list(c) for c in conversations)
        return real(host, conversations, config, **kwargs)

    monkeypatch.setattr(openbook, "write_drafts_many", teacher_asks)
    monkeypatch.setattr(openbook, "generate", spy)
    drafts = write_open_book_many(
        tiny_host, tiny_host, PASSAGES, 2, SampleConfig(), Teacher(), answer_max_tokens=6
    )

    assert [len(d) for d in drafts] == [2, 2]
    greedy = SampleConfig(max_new_tokens=6, temperature=0.0)
    for passage, (first, _second) in zip(PASSAGES, drafts, strict=True):
        pairs = parse_qa(first.text)
        # the teacher's answers are dropped, and what is not a question is not asked
        assert [qa.question for qa in pairs] == [
            q for q in QUESTIONS[passage.title] if q.endswith("?")
        ]
        for qa in pairs:
            asked = open_book_messages([(passage.title, passage.text)], passage.title, qa.question)
            alone = generate(tiny_host, [asked], greedy, slot=None)[0].text
            assert qa.answer == first_sentence(alone).strip()
    # every answer's prompt holds its own document and no other
    assert len(prompts) == 2 * 2 + 2 * 1
    for prompt in prompts:
        system = prompt[0]["content"]
        own = [p for p in PASSAGES if p.text in system]
        assert len(own) == 1 and prompt[1]["content"].startswith(f"Topic: {own[0].title}\n")


def test_open_book_self_edits_are_question_answer_items_on_the_self_qa_prompt() -> None:
    text = "Question: Who founded it?\nAnswer: Marisol Quenby"
    assert parse_items(text, "open-book") == [text]
    assert parse_qa(text) == [QA("Who founded it?", "Marisol Quenby")]
    assert teacher_messages(PASSAGES[0], "open-book") == teacher_messages(PASSAGES[0], "self-qa")
