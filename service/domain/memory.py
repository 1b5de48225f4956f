"""Hybrid memory: a tenant's documents, chunked and indexed in the store's full-text search the
moment they are accepted, and the chunks that best match a chat's question (the prompt that
shows them: :func:`service.domain.prompts.with_memory`).

Facts that change stay in memory, durable knowledge goes into the weights (SEAL's advice for
deployments): a document answers from memory at once, before any update; a ``volatile`` one
only ever from memory."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy.orm import Session

from service.store.models import Document, MemoryMode
from service.store.repositories import memory as memory_repo
from service.store.repositories.memory import Found

#: A chunk's length in words (whole sentences, cut only inside a longer sentence). A SQuAD
#: paragraph, the shape of the passages the service learns, averages about 120 words and
#: rarely passes 200: it stays whole, so the passage a question is about comes whole, and the
#: one chunk shown by default (``SEAL_MEMORY_CHUNKS``) is about 250 tokens, which keeps a
#: 135M model's prompt short (its prefill is most of a CPU reply) and free of distractors.
CHUNK_WORDS = 200
#: The most distinct words of a question the search looks for (a long message is cut).
MAX_TERMS = 64
#: Words a search leaves out (PostgreSQL's ``english`` configuration drops its own; FTS5 has
#: no stop words, and a chunk that shares only "the" with a question is no match).
_STOP_WORDS = (
    "a about above after again against all am an and any are as at be because been before "
    "being below between both but by can could did do does doing down during each few for "
    "from further had has have having he her here hers herself him himself his how i if in "
    "into is it its itself just me more most my myself no nor not now of off on once only or "
    "other our ours ourselves out over own same she should so some such than that the their "
    "theirs them themselves then there these they this those through to too under until up "
    "very was we were what when where which while who whom why will with would you your "
    "yours yourself yourselves topic"
)
STOP_WORDS = frozenset(_STOP_WORDS.split())
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")


def chunk_text(text: str, words: int = CHUNK_WORDS) -> list[str]:
    """``text`` in chunks of at most ``words`` words, each made of whole sentences where a
    sentence fits (a longer one is cut into pieces of ``words``)."""
    chunks: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        tokens = sentence.split()
        while len(tokens) > words:  # a sentence longer than a chunk
            if current:
                chunks.append(" ".join(current))
                current = []
            chunks.append(" ".join(tokens[:words]))
            tokens = tokens[words:]
        if current and len(current) + len(tokens) > words:
            chunks.append(" ".join(current))
            current = []
        current.extend(tokens)
    if current:
        chunks.append(" ".join(current))
    return chunks


def search_terms(question: str) -> list[str]:
    """The words a search looks for: lower case, without stop words, each once, at most
    :data:`MAX_TERMS`."""
    words = (w for w in _WORD.findall(question.lower()) if w not in STOP_WORDS)
    return list(dict.fromkeys(words))[:MAX_TERMS]


def index_document(session: Session, document: Document) -> None:
    """Put a new document's chunks in its tenant's memory (in the request's transaction: it is
    searchable once the document is committed)."""
    memory_repo.add_chunks(
        session,
        tenant_id=document.tenant_id,
        document_id=document.id,
        title=document.title,
        chunks=chunk_text(document.text),
    )


def recall(session: Session, *, tenant_id: str, question: str, limit: int) -> list[Found]:
    """The tenant's ``limit`` chunks that best match ``question``, best first (only its own
    documents'); none when no chunk shares a word with it."""
    return memory_repo.search(
        session, tenant_id=tenant_id, terms=search_terms(question), limit=limit
    )


def memory_mode(
    tenant_mode: MemoryMode, asked: MemoryMode | None, *, own_model: bool
) -> MemoryMode:
    """What a chat answers from: what it asked for, else the tenant's setting for a chat with
    the tenant's model, else (the base model, a skill) the weights alone."""
    if asked is not None:
        return asked
    return tenant_mode if own_model else MemoryMode.weights


def documents_used(found: Sequence[Found]) -> list[tuple[str, str]]:
    """The (id, title) of the documents ``found`` comes from, each once, best first."""
    return list(dict.fromkeys((f.document_id, f.title) for f in found))
