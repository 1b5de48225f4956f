"""A tenant's memory: its documents' chunks and the store's own full-text search over them
(PostgreSQL: the generated ``tsv`` column and its GIN index; SQLite: the FTS5 table
``memory_chunks_fts``; both made by migration 0005). Every search is filtered by tenant in the
query itself. A chunk goes with its document (the store's cascade; on SQLite a trigger takes it
out of the FTS5 index too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.store.models import MemoryChunk

#: SQLite: bm25 with the title weighted twice the text (FTS5 ranks lower as better).
_SQLITE_SEARCH = text(
    "SELECT c.document_id, c.title, c.text "
    "FROM memory_chunks_fts JOIN memory_chunks AS c ON c.id = memory_chunks_fts.rowid "
    "WHERE memory_chunks_fts MATCH :match AND c.tenant_id = :tenant_id "
    "ORDER BY bm25(memory_chunks_fts, 2.0, 1.0), c.id LIMIT :limit"
)
#: PostgreSQL: the question's words as ``plainto_tsquery`` stems them (stop words dropped),
#: joined by OR instead of its AND, so that a chunk need not hold every word of a question;
#: ranked by ``ts_rank`` (title weighted A, text B), normalized by the chunk's length.
_PG_SEARCH = text(
    "WITH q AS (SELECT CAST(replace(replace(CAST(plainto_tsquery('english', :words) AS text), "
    "'<->', '|'), '&', '|') AS tsquery) AS query) "
    "SELECT c.document_id, c.title, c.text FROM memory_chunks AS c, q "
    "WHERE c.tenant_id = :tenant_id AND c.tsv @@ q.query "
    "ORDER BY ts_rank(c.tsv, q.query, 1) DESC, c.id LIMIT :limit"
)


@dataclass(frozen=True)
class Found:
    document_id: str
    title: str
    text: str


def add_chunks(
    session: Session, *, tenant_id: str, document_id: str, title: str, chunks: Sequence[str]
) -> None:
    """Index a document's chunks (searchable from the transaction's commit on)."""
    session.add_all(
        MemoryChunk(
            tenant_id=tenant_id, document_id=document_id, ordinal=i, title=title, text=chunk
        )
        for i, chunk in enumerate(chunks)
    )
    session.flush()


def search(session: Session, *, tenant_id: str, terms: Sequence[str], limit: int) -> list[Found]:
    """The tenant's ``limit`` chunks that best match any of ``terms`` (plain lower-case words),
    best first; none when no chunk holds any of them."""
    if not terms or limit <= 0:
        return []
    if session.get_bind().dialect.name == "sqlite":
        match = " OR ".join(f'"{term}"' for term in terms)
        params = {"match": match, "tenant_id": tenant_id, "limit": limit}
        rows = session.execute(_SQLITE_SEARCH, params)
    else:
        params = {"words": " ".join(terms), "tenant_id": tenant_id, "limit": limit}
        rows = session.execute(_PG_SEARCH, params)
    return [Found(document_id=r[0], title=r[1], text=r[2]) for r in rows]
