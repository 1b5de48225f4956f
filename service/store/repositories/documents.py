"""Documents (deduplicated per tenant by content hash) and their probe questions."""

from __future__ import annotations

import hashlib
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, selectinload

from service.store.base import utcnow
from service.store.models import Document, DocumentStatus, ProbeQuestion, ProbeSource


def _normalize(value: str) -> str:
    return " ".join(unicodedata.normalize("NFC", value).split())


def content_hash(*, title: str, text: str) -> str:
    """SHA-256 of the normalized (NFC, whitespace-collapsed) title + newline + text."""
    payload = _normalize(title) + "\n" + _normalize(text)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def size_bytes(*, title: str, text: str) -> int:
    """The UTF-8 bytes of a document's title and text: what it counts against the tenant's
    ``stored_bytes`` quota."""
    return len(title.encode()) + len(text.encode())


def get_document_by_hash(session: Session, *, tenant_id: str, content_hash: str) -> Document | None:
    stmt = select(Document).where(
        Document.tenant_id == tenant_id, Document.content_hash == content_hash
    )
    return session.scalar(stmt)


def create_document(
    session: Session, *, tenant_id: str, title: str, text: str, volatile: bool = False
) -> Document:
    """A new document: ``pending`` (to be learned), or ``memory`` when ``volatile``."""
    now = utcnow()
    document = Document(
        tenant_id=tenant_id,
        created_at=now,
        updated_at=now,
        title=title,
        text=text,
        content_hash=content_hash(title=title, text=text),
        size_bytes=size_bytes(title=title, text=text),
        status=DocumentStatus.memory if volatile else DocumentStatus.pending,
        volatile=volatile,
    )
    session.add(document)
    session.flush()
    return document


def get_document(
    session: Session, *, tenant_id: str, document_id: str, with_questions: bool = False
) -> Document | None:
    stmt = select(Document).where(Document.id == document_id, Document.tenant_id == tenant_id)
    if with_questions:
        stmt = stmt.options(selectinload(Document.probe_questions))
    return session.scalar(stmt)


def list_documents(
    session: Session,
    *,
    tenant_id: str,
    status: DocumentStatus | None = None,
    limit: int = 50,
    offset: int = 0,
    with_questions: bool = False,
) -> tuple[list[Document], int]:
    """A page of the tenant's documents, newest first, and the total count."""
    where = [Document.tenant_id == tenant_id]
    if status is not None:
        where.append(Document.status == status)
    total = session.scalar(select(func.count()).select_from(Document).where(*where)) or 0
    stmt = (
        select(Document)
        .where(*where)
        .order_by(Document.created_at.desc(), Document.id)
        .limit(limit)
        .offset(offset)
    )
    if with_questions:
        stmt = stmt.options(selectinload(Document.probe_questions))
    return list(session.scalars(stmt)), total


def list_documents_by_status(
    session: Session, *, tenant_id: str, statuses: Iterable[DocumentStatus]
) -> list[Document]:
    """The tenant's documents in any of ``statuses``, oldest first."""
    stmt = (
        select(Document)
        .where(Document.tenant_id == tenant_id, Document.status.in_(list(statuses)))
        .order_by(Document.created_at, Document.id)
    )
    return list(session.scalars(stmt))


def claim_pending_documents(session: Session, *, tenant_id: str) -> list[Document]:
    """Mark the tenant's pending documents ``learning`` and return them, oldest first.

    One conditional UPDATE claims them, so a document is either claimed or deleted, never
    both: on PostgreSQL its row stays locked until the transaction ends (a concurrent
    ``delete_document`` waits, then finds it learning), and SQLite has one writer at a time.
    Make it the transaction's first statement, so that SQLite takes its write lock on a fresh
    snapshot. A volatile document is never claimed (its status is ``memory``; the flag is
    checked too, so that no way of making it pending could train it)."""
    claimed = session.scalars(
        update(Document)
        .where(
            Document.tenant_id == tenant_id,
            Document.status == DocumentStatus.pending,
            Document.volatile.is_(False),
        )
        .values(status=DocumentStatus.learning, error=None, updated_at=utcnow())
        .returning(Document.id)
        .execution_options(synchronize_session=False)
    ).all()
    if not claimed:
        return []
    stmt = (
        select(Document)
        .where(Document.id.in_(claimed))
        .order_by(Document.created_at, Document.id)
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(stmt))


def delete_volatile_by_title(
    session: Session, *, tenant_id: str, title: str, keep_id: str
) -> list[str]:
    """Delete the tenant's volatile documents titled ``title`` but ``keep_id`` (superseded by
    it), with their chunks; their ids."""
    ids = list(
        session.scalars(
            delete(Document)
            .where(
                Document.tenant_id == tenant_id,
                Document.title == title,
                Document.volatile.is_(True),
                Document.id != keep_id,
            )
            .returning(Document.id)
            .execution_options(synchronize_session="fetch")
        )
    )
    return sorted(ids)


def count_volatile(session: Session, *, tenant_id: str) -> int:
    """How many of the tenant's documents are answered from memory only."""
    stmt = select(func.count()).where(Document.tenant_id == tenant_id, Document.volatile.is_(True))
    return session.scalar(stmt) or 0


def document_status(session: Session, *, document_id: str) -> DocumentStatus | None:
    """A document's status as the store has it now (not a loaded copy), or None if it is gone."""
    return session.scalar(select(Document.status).where(Document.id == document_id))


def delete_document(session: Session, *, tenant_id: str, document_id: str) -> bool:
    """Delete a document that no update is learning, with its probe questions, its
    self-edits and their rewards (the store's cascades); feedback about it stays, unlinked.
    False when it does not exist or is being learned.

    One conditional statement: an update that has locked the document to mark it
    ``learning`` makes it wait and then match nothing, and an update that reads the pending
    documents after it no longer sees the document."""
    result = session.execute(
        delete(Document)
        .where(
            Document.id == document_id,
            Document.tenant_id == tenant_id,
            Document.status != DocumentStatus.learning,
        )
        .execution_options(synchronize_session="fetch")
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def lock_documents(session: Session, *, document_ids: Sequence[str]) -> set[str]:
    """Which of ``document_ids`` still exist, their rows locked until the transaction ends (on
    PostgreSQL; SQLite has one writer at a time), so that none is deleted before it commits."""
    if not document_ids:
        return set()
    stmt = select(Document.id).where(Document.id.in_(list(document_ids))).with_for_update()
    return set(session.scalars(stmt))


def count_documents(
    session: Session, *, tenant_id: str, status: DocumentStatus = DocumentStatus.pending
) -> int:
    """How many of the tenant's documents have ``status`` (pending: waiting to be learned)."""
    stmt = (
        select(func.count())
        .select_from(Document)
        .where(Document.tenant_id == tenant_id, Document.status == status)
    )
    return session.scalar(stmt) or 0


def set_document_status(
    session: Session,
    *,
    document_ids: Sequence[str],
    status: DocumentStatus,
    error: str | None = None,
    learned_version_id: str | None = None,
) -> None:
    """Set the status (and error / learned version) of several documents."""
    for document in session.scalars(select(Document).where(Document.id.in_(document_ids))):
        document.status = status
        document.error = error
        if learned_version_id is not None:
            document.learned_version_id = learned_version_id
        document.updated_at = utcnow()
    session.flush()


def add_probe_question(
    session: Session,
    *,
    tenant_id: str,
    document_id: str | None,
    question: str,
    answer: str,
    source: ProbeSource,
) -> ProbeQuestion:
    probe = ProbeQuestion(
        tenant_id=tenant_id,
        document_id=document_id,
        question=question,
        answer=answer,
        source=source,
    )
    session.add(probe)
    if document_id is not None and source in (ProbeSource.document, ProbeSource.feedback):
        # a document that waited for questions can be learned now
        session.execute(
            update(Document)
            .where(Document.id == document_id, Document.status == DocumentStatus.needs_questions)
            .values(status=DocumentStatus.pending, error=None, updated_at=utcnow())
        )
    session.flush()
    return probe


def probe_questions_for_documents(
    session: Session, *, document_ids: Sequence[str], sources: Iterable[ProbeSource] | None = None
) -> dict[str, list[ProbeQuestion]]:
    """The probe questions of each document (every id is a key, maybe with an empty list)."""
    result: dict[str, list[ProbeQuestion]] = defaultdict(list)
    for document_id in document_ids:
        result[document_id] = []
    stmt = select(ProbeQuestion).where(ProbeQuestion.document_id.in_(list(document_ids)))
    if sources is not None:
        stmt = stmt.where(ProbeQuestion.source.in_(list(sources)))
    for probe in session.scalars(stmt.order_by(ProbeQuestion.created_at, ProbeQuestion.id)):
        assert probe.document_id is not None
        result[probe.document_id].append(probe)
    return dict(result)


def retention_probes(
    session: Session, *, tenant_id: str, limit: int
) -> list[tuple[str, ProbeQuestion]]:
    """The retention set: probe questions of the tenant's learned documents and feedback
    questions about no document, each with its document's title ("" for none); a fixed
    sample of at most ``limit``, spread over the documents (newest questions first)."""
    stmt = (
        select(ProbeQuestion, Document.title)
        .outerjoin(Document, Document.id == ProbeQuestion.document_id)
        .where(
            ProbeQuestion.tenant_id == tenant_id,
            (Document.status == DocumentStatus.learned) | ProbeQuestion.document_id.is_(None),
        )
        .order_by(ProbeQuestion.created_at.desc(), ProbeQuestion.id)
    )
    by_document: dict[str | None, list[tuple[str, ProbeQuestion]]] = defaultdict(list)
    for probe, title in session.execute(stmt):
        by_document[probe.document_id].append((title or "", probe))
    picked: list[tuple[str, ProbeQuestion]] = []
    queues = list(by_document.values())
    while queues and len(picked) < limit:  # round-robin: every document is represented
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
        queues = [q for q in queues if q]
    return picked
