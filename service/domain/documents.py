"""A tenant's documents: adding one (the same content twice is one document, its questions
merged) and deleting one (with ``forget``, a rebuild without it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.domain import memory, quotas
from service.domain.errors import Conflict, NotFound
from service.domain.updates import open_rebuild
from service.store.models import (
    AdapterVersion,
    Document,
    ProbeQuestion,
    ProbeSource,
    Tenant,
    UpdateMode,
)
from service.store.models import DocumentStatus as Status
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import learning as learning_repo
from service.store.repositories import teachers as teacher_repo


@dataclass
class AddedDocument:
    document: Document
    questions: list[ProbeQuestion]
    """All of the document's probe questions, those this request added included."""
    created: bool
    """False when the same title and text already were a document of the tenant."""
    superseded: list[str]
    """The volatile documents of the same title that the new one deleted."""


def add_document(
    session: Session,
    tenant: Tenant,
    *,
    title: str,
    text: str,
    questions: Sequence[tuple[str, str]],
    volatile: bool = False,
    limits: Mapping[str, int] | None = None,
) -> AddedDocument:
    """Add a document with its probe questions, ``(question, answer)`` pairs, and put it in
    the tenant's memory (:mod:`service.domain.memory`), where the next chat finds it. The same
    title and text again is the same document (also when two requests send it at once): the
    questions it does not have yet are added to it, which may make it learnable again. A new
    document supersedes the tenant's volatile documents of the same title; a ``volatile`` one
    is answered from memory only, never learned. A new document counts against the tenant's
    ``documents`` and ``stored_bytes`` quotas (``limits``); the same one again does not."""
    digest = document_repo.content_hash(title=title, text=text)
    document = document_repo.get_document_by_hash(session, tenant_id=tenant.id, content_hash=digest)
    created = document is None
    known: list[ProbeQuestion] = []
    if document is None:
        if limits is not None:
            size = document_repo.size_bytes(title=title, text=text)
            quotas.check_room_for_document(session, limits, tenant.id, size)
        try:
            # SQLite's writer holds the write lock since its BEGIN: no one can insert the same
            # content between the lookup and the insert, so it needs no SAVEPOINT around it
            sqlite = session.get_bind().dialect.name == "sqlite"
            with nullcontext() if sqlite else session.begin_nested():
                document = document_repo.create_document(
                    session, tenant_id=tenant.id, title=title, text=text, volatile=volatile
                )
        except IntegrityError:  # the same content arrived in a concurrent request
            document = document_repo.get_document_by_hash(
                session, tenant_id=tenant.id, content_hash=digest
            )
            if document is None:
                raise
            created = False
    superseded: list[str] = []
    if created:
        memory.index_document(session, document)
        superseded = document_repo.delete_volatile_by_title(
            session, tenant_id=tenant.id, title=title, keep_id=document.id
        )
    else:
        known = list(
            document_repo.probe_questions_for_documents(session, document_ids=[document.id])[
                document.id
            ]
        )
    seen = {(q.question, q.answer) for q in known}
    added = 0
    for question, answer in questions:
        if (question, answer) in seen:
            continue
        seen.add((question, answer))
        known.append(
            document_repo.add_probe_question(
                session,
                tenant_id=tenant.id,
                document_id=document.id,
                question=question,
                answer=answer,
                source=ProbeSource.document,
            )
        )
        added += 1
    if added:
        session.flush()  # the questions' ids and times
        if not created:  # questions may make it learnable
            session.refresh(document, ["status", "error", "updated_at"])
    return AddedDocument(document, known, created, superseded)


@dataclass
class DocumentDeletion:
    document: Document
    """As it was before the deletion."""
    learned_version: int | None
    teacher_versions: list[int]
    rebuild_job_id: str | None


def delete_document(
    session: Session, tenant: Tenant, document_id: str, *, forget: bool
) -> DocumentDeletion:
    """Delete a document with its probe questions, self-edits and their rewards; a conflict
    while an update is learning it. With ``forget``, a learned document also gets a rebuild:
    the adapter trained again without it (a conflict, deleting nothing, while an update of
    another mode is open)."""
    document = document_repo.get_document(session, tenant_id=tenant.id, document_id=document_id)
    if document is None:
        raise NotFound(f"document {document_id} not found")
    learned = document.status == Status.learned
    edits = learning_repo.list_self_edits(
        session, tenant_id=tenant.id, document_id=document.id, limit=None
    )
    teachers = teacher_repo.teacher_versions_trained_on(
        session, tenant_id=tenant.id, self_edit_ids=[e.id for e, _ in edits]
    )
    version = (
        session.get(AdapterVersion, document.learned_version_id)
        if document.learned_version_id
        else None
    )
    deletion = DocumentDeletion(
        document=document,
        learned_version=version.number if version else None,
        teacher_versions=[t.number for t in teachers],
        rebuild_job_id=None,
    )
    if not document_repo.delete_document(session, tenant_id=tenant.id, document_id=document_id):
        if document_repo.document_status(session, document_id=document_id) is None:
            raise NotFound(f"document {document_id} not found")  # deleted meanwhile
        job = job_repo.get_open_update_job(session, tenant_id=tenant.id)
        by = f"update job {job.id}" if job else "an update"
        cancel = f" (or cancel it: POST /v1/jobs/{job.id}/cancel)" if job else ""
        raise Conflict(
            f"document {document_id} is being learned by {by}; delete it when the job "
            f"has ended{cancel}"
        )
    if forget and learned:
        # after the delete: a rebuild that is running sees the document gone when it commits
        params = {"mode": UpdateMode.rebuild.value}
        deletion.rebuild_job_id = open_rebuild(session, tenant.id, params).id
    return deletion
