"""The teacher-free ``sentences`` format: the document's own sentences as items."""

from __future__ import annotations

from itertools import pairwise

from seal.augment import REORDERINGS, SENTENCES, sentence_drafts, split_sentences
from seal.grounding import ground_drafts
from seal.selfedit import Passage, parse_items, training_sequences

DOC = Passage(
    "Zorblat Industries",
    "Zorblat Industries was founded by Dr. Marisol Quenby in 1987. It makes glass bicycles "
    'in Vellmora! Were they popular? "Very," said J. R. Hollis, its first buyer. '
    "Sales reached 4.5 million by 2001.",
)


def test_sentences_split_at_their_ends_not_at_initials_or_abbreviations() -> None:
    assert split_sentences(DOC.text) == [
        "Zorblat Industries was founded by Dr. Marisol Quenby in 1987.",
        "It makes glass bicycles in Vellmora!",
        'Were they popular? "Very," said J. R. Hollis, its first buyer.',
        "Sales reached 4.5 million by 2001.",
    ]


def test_a_fragment_too_short_to_be_a_sentence_rides_with_the_next() -> None:
    assert split_sentences("No way. The bridge opened in 1932 after nine years of work.") == [
        "No way. The bridge opened in 1932 after nine years of work."
    ]
    assert split_sentences("Too short.") == ["Too short."]


def test_the_three_variants_cut_the_same_sentences_differently() -> None:
    sentences = split_sentences(DOC.text)
    alone, pairs, reordered, again = (
        parse_items(d.text, SENTENCES) for d in sentence_drafts(DOC, 4, seed=0)
    )
    assert alone == sentences
    assert pairs == [f"{a} {b}" for a, b in pairwise(sentences)]
    assert len(reordered) == REORDERINGS
    for item in reordered:  # every sentence once, in some order
        assert sorted(split_sentences(item)) == sorted(sentences)
    assert again == alone  # the fourth starts the cycle again
    assert sentence_drafts(DOC, 3, seed=0) == sentence_drafts(DOC, 3, seed=0)
    assert sentence_drafts(DOC, 3, seed=0)[2] != sentence_drafts(DOC, 3, seed=1)[2]


def test_sentence_items_pass_grounding_and_train_after_the_title() -> None:
    drafts = sentence_drafts(DOC, 3, seed=0)
    grounded = ground_drafts(drafts, SENTENCES, DOC)
    assert grounded.texts == [d.text for d in drafts]
    assert not grounded.dropped
    sequences = training_sequences(DOC, [(SENTENCES, grounded.texts[0])])
    assert (
        sequences[0]
        == f"{DOC.title}\nZorblat Industries was founded by Dr. Marisol Quenby in 1987."
    )
    assert sequences[-1] == f"{DOC.title}\n{DOC.text}"
    assert len(sequences) == 5


def test_a_one_sentence_document_gives_that_sentence_in_every_variant() -> None:
    one = Passage("Vellmora", "Vellmora is a town of glassblowers on the river Quell.")
    for draft in sentence_drafts(one, 3, seed=0):
        assert parse_items(draft.text, SENTENCES) == [one.text]
