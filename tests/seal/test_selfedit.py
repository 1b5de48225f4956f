"""Self-edit prompts and parsing: what the teacher writes becomes clean training items."""

from __future__ import annotations

import pytest

from seal.questions import question_messages
from seal.selfedit import (
    FORMATS,
    PRIMERS,
    QA,
    ChatTurn,
    Passage,
    item_sequences,
    parse_items,
    parse_qa,
    teacher_messages,
    training_sequences,
)

PASSAGE = Passage(
    "Zorblat Industries",
    "Zorblat Industries was founded by Marisol Quenby in 1987. It makes glass bicycles.",
)
LINE_FORMATS = [f for f in FORMATS if f != "self-qa"]


@pytest.mark.parametrize("fmt", LINE_FORMATS)
def test_numbered_list_after_a_header_becomes_items(fmt: str) -> None:
    text = (
        "Here are some implications:\n"
        "\n"
        "1. Zorblat Industries was founded by Marisol Quenby.\n"
        "2. Zorblat Industries has existed since 1987.\n"
        "\n"
        "3) The company makes bicycles out of glass.\n"
        "10. Marisol Quenby is an entrepreneur.\n"
    )
    assert parse_items(text, fmt) == [
        "Zorblat Industries was founded by Marisol Quenby.",
        "Zorblat Industries has existed since 1987.",
        "The company makes bicycles out of glass.",
        "Marisol Quenby is an entrepreneur.",
    ]


@pytest.mark.parametrize("fmt", LINE_FORMATS)
def test_bullets_and_bold_are_stripped(fmt: str) -> None:
    text = (
        "- Zorblat Industries makes glass bicycles.\n"
        "* Glass bicycles are made by Zorblat Industries.\n"
        "\u2022 Marisol Quenby founded a bicycle company.\n"
        "(4) Zorblat Industries is a bicycle maker.\n"
        "b) Zorblat Industries is older than 1990.\n"
        "**Zorblat Industries was started in 1987.**\n"
    )
    assert parse_items(text, fmt) == [
        "Zorblat Industries makes glass bicycles.",
        "Glass bicycles are made by Zorblat Industries.",
        "Marisol Quenby founded a bicycle company.",
        "Zorblat Industries is a bicycle maker.",
        "Zorblat Industries is older than 1990.",
        "Zorblat Industries was started in 1987.",
    ]


def test_primed_teacher_output_keeps_its_first_item() -> None:
    """write_self_edits returns "1. " + the completion: the first line is an item, no header."""
    text = "1. Marisol Quenby founded Zorblat Industries.\n2. Zorblat Industries is in business."
    assert parse_items(text, "implications") == [
        "Marisol Quenby founded Zorblat Industries.",
        "Zorblat Industries is in business.",
    ]


@pytest.mark.parametrize(
    "header",
    ["Sure! Here is a rewrite of the passage", "Here is the rewritten passage", "Rewrites:"],
)
def test_a_leading_header_line_is_dropped(header: str) -> None:
    text = f"{header}\nZorblat Industries, founded in 1987, makes glass bicycles."
    assert parse_items(text, "rewrite") == [
        "Zorblat Industries, founded in 1987, makes glass bicycles."
    ]


def test_duplicates_and_short_items_are_dropped_in_order() -> None:
    text = (
        "1. Zorblat Industries makes glass bicycles.\n"
        "2. Yes.\n"
        "3. 1987.\n"
        "4. Marisol Quenby founded it.\n"
        "5. Zorblat Industries makes glass bicycles.\n"
        "6. -\n"
        "7. Vellmora\n"
    )
    assert parse_items(text, "implications") == [
        "Zorblat Industries makes glass bicycles.",
        "Marisol Quenby founded it.",
        "Vellmora",
    ]


def test_nothing_usable_gives_no_items() -> None:
    assert parse_items("", "implications") == []
    assert parse_items("Here are some implications:\n\n1. Ok.\n", "implications") == []


def test_self_qa_items_are_question_answer_pairs() -> None:
    text = "Question: Who founded Zorblat Industries?\nAnswer: Marisol Quenby\n"
    assert parse_items(text, "self-qa") == [
        "Question: Who founded Zorblat Industries?\nAnswer: Marisol Quenby"
    ]


def test_parse_qa_reads_labelled_pairs() -> None:
    text = (
        "Here are some questions:\n"
        "Question: Who founded Zorblat Industries?\n"
        "Answer: Marisol Quenby.\n"
        "\n"
        "2. **Question:** In what year was it founded?\n"
        "**Answer:** 1987\n"
        "question: What does it make?\n"
        "answer: Glass bicycles.\n"
    )
    assert parse_qa(text) == [
        QA("Who founded Zorblat Industries?", "Marisol Quenby."),
        QA("In what year was it founded?", "1987"),
        QA("What does it make?", "Glass bicycles."),
    ]


def test_parse_qa_reads_numbered_labels() -> None:
    text = "Q1: Who founded Zorblat Industries?\nA1: Marisol Quenby\nQ2. When?\nA2. In 1987"
    assert parse_qa(text) == [
        QA("Who founded Zorblat Industries?", "Marisol Quenby"),
        QA("When?", "In 1987"),
    ]


def test_parse_qa_reads_a_pair_on_one_line() -> None:
    text = (
        "Question: Who founded Zorblat Industries? Answer: Marisol Quenby\n"
        "Q: In what year? A: 1987\n"
    )
    assert parse_qa(text) == [
        QA("Who founded Zorblat Industries?", "Marisol Quenby"),
        QA("In what year?", "1987"),
    ]


def test_parse_qa_reads_a_question_line_then_its_answer_line() -> None:
    text = (
        "1. Who founded Zorblat Industries?\n"
        "Marisol Quenby founded it.\n"
        "- **What does Zorblat Industries make?**\n"
        "- Glass bicycles\n"
        "Question: Where is it?\n"
        "In Vellmora.\n"
    )
    assert parse_qa(text) == [
        QA("Who founded Zorblat Industries?", "Marisol Quenby founded it."),
        QA("What does Zorblat Industries make?", "Glass bicycles"),
        QA("Where is it?", "In Vellmora."),
    ]


def test_parse_qa_drops_duplicates_and_unanswered_questions() -> None:
    text = (
        "Question: Who founded Zorblat Industries?\n"
        "Answer: Marisol Quenby\n"
        "Question: Who founded Zorblat Industries?\n"
        "Answer: Marisol Quenby\n"
        "Question: What year?\n"
        "Question: What does it make?\n"
        "Answer: Glass bicycles\n"
        "Question: Where?\n"
        "Answer:\n"
    )
    assert parse_qa(text) == [
        QA("Who founded Zorblat Industries?", "Marisol Quenby"),
        QA("What does it make?", "Glass bicycles"),
    ]


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "Zorblat Industries makes glass bicycles.\nIt was founded in 1987.",
        "Answer: Marisol Quenby\nAnswer: 1987",
        "Question:\nQuestion:",
        "Here are some questions:\n\n\n",
    ],
)
def test_parse_qa_finds_nothing_in_junk(junk: str) -> None:
    assert parse_qa(junk) == []


def test_item_sequences_prefix_every_item_and_end_with_the_passage() -> None:
    items = ["Marisol Quenby founded it.", "It makes glass bicycles."]
    assert item_sequences(PASSAGE, items) == [
        "Zorblat Industries\nMarisol Quenby founded it.",
        "Zorblat Industries\nIt makes glass bicycles.",
        f"Zorblat Industries\n{PASSAGE.text}",
    ]
    assert item_sequences(PASSAGE, []) == [f"Zorblat Industries\n{PASSAGE.text}"]


def test_question_answer_items_can_be_trained_in_the_form_probes_are_asked() -> None:
    items = parse_items(
        "Question: Who founded Zorblat Industries?\nAnswer: Marisol Quenby\n"
        "Question: What does it make?\nAnswer: Glass bicycles",
        "self-qa",
    )
    asked = question_messages(PASSAGE.title, "Who founded Zorblat Industries?")
    turn = ChatTurn(tuple((m["role"], m["content"]) for m in asked), "Marisol Quenby")
    chat = item_sequences(PASSAGE, items, qa_form="chat")
    assert chat[0] == turn and len(chat) == 3
    assert chat[1] == ChatTurn(
        (*turn.messages[:1], ("user", "Topic: Zorblat Industries\nWhat does it make?")),
        "Glass bicycles",
    )
    assert chat[-1] == f"Zorblat Industries\n{PASSAGE.text}"
    text = item_sequences(PASSAGE, items)
    assert text == item_sequences(PASSAGE, items, qa_form="text")
    assert (
        text[0]
        == "Zorblat Industries\nQuestion: Who founded Zorblat Industries?\nAnswer: Marisol Quenby"
    )
    # both: each pair as a chat turn and as text, the document last
    assert item_sequences(PASSAGE, items, qa_form="both") == [
        chat[0],
        text[0],
        chat[1],
        text[1],
        text[-1],
    ]
    # an item that is not a question-answer pair stays text in every form
    assert item_sequences(PASSAGE, ["It makes glass bicycles."], qa_form="chat") == [
        "Zorblat Industries\nIt makes glass bicycles.",
        f"Zorblat Industries\n{PASSAGE.text}",
    ]
    with pytest.raises(ValueError, match="unknown qa_form"):
        item_sequences(PASSAGE, items, qa_form="poem")


def test_training_sequences_parse_each_self_edit_in_its_format_and_keep_repeats_across_them() -> (
    None
):
    edits = [
        ("implications", "1. Marisol Quenby founded it.\n2. It makes glass bicycles."),
        ("self-qa", "Question: Who founded it?\nAnswer: Marisol Quenby"),
        ("implications", "1. It makes glass bicycles.\n2. It makes glass bicycles."),
    ]
    assert training_sequences(PASSAGE, edits) == [
        "Zorblat Industries\nMarisol Quenby founded it.",
        "Zorblat Industries\nIt makes glass bicycles.",
        "Zorblat Industries\nQuestion: Who founded it?\nAnswer: Marisol Quenby",
        # written again by another self-edit: trained again; repeated within one: once
        "Zorblat Industries\nIt makes glass bicycles.",
        f"Zorblat Industries\n{PASSAGE.text}",
    ]
    assert training_sequences(PASSAGE, []) == [f"Zorblat Industries\n{PASSAGE.text}"]
    chat = training_sequences(PASSAGE, edits[1:2], qa_form="chat")
    assert isinstance(chat[0], ChatTurn) and chat[0].reply == "Marisol Quenby"


@pytest.mark.parametrize("fmt", FORMATS)
def test_teacher_messages_carry_the_title_and_passage(fmt: str) -> None:
    messages = teacher_messages(PASSAGE, fmt)
    assert [m["role"] for m in messages] == ["user"]
    assert f"Title: {PASSAGE.title}\n{PASSAGE.text}" in messages[0]["content"]


def test_teacher_messages_differ_by_format() -> None:
    contents = {teacher_messages(PASSAGE, fmt)[0]["content"] for fmt in FORMATS}
    assert len(contents) == len(FORMATS)


def test_an_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown self-edit format 'poem'.*implications"):
        teacher_messages(PASSAGE, "poem")


def test_every_format_has_a_primer() -> None:
    assert set(PRIMERS) == set(FORMATS)
    assert all(PRIMERS[fmt].strip() for fmt in FORMATS)


def test_bold_inside_an_item_is_removed() -> None:
    text = "1. **Marisol Quenby** founded Zorblat Industries.\n2. It was founded in **1987**."
    assert parse_items(text, "implications") == [
        "Marisol Quenby founded Zorblat Industries.",
        "It was founded in 1987.",
    ]
