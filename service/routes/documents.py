"""A tenant's documents and the probe questions that come with them."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.deps import CurrentTenant, SessionDep
from service.errors import COMMON_ERRORS, Conflict, NotFound, error_responses
from service.routes.jobs import open_rebuild
from service.schemas import (
    MAX_NUMBER,
    DocumentCreate,
    DocumentDeleted,
    DocumentDetail,
    DocumentListed,
    DocumentPublic,
    Page,
    ProbeQuestionPublic,
)
from service.store.models import (
    AdapterVersion,
    Document,
    DocumentStatus,
    ProbeQuestion,
    ProbeSource,
    UpdateMode,
)
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import learning as learning_repo

router = APIRouter(
    prefix="/v1/documents", tags=["documents"], responses=error_responses(*COMMON_ERRORS)
)


def _listed(document: Document) -> DocumentListed:
    return DocumentListed(
        **DocumentPublic.model_validate(document).model_dump(),
        questions=[ProbeQuestionPublic.model_validate(q) for q in document.probe_questions],
    )


def _detail(document: Document) -> DocumentDetail:
    return DocumentDetail(**_listed(document).model_dump(), text=document.text)


@router.post(
    "",
    response_model=DocumentDetail,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": DocumentDetail, "description": "The same content already exists"},
        **error_responses(409),
    },
)
def create_document(
    body: DocumentCreate, session: SessionDep, tenant: CurrentTenant, response: Response
) -> DocumentDetail:
    """Add a document; sending the same title and text again returns the existing one (200),
    with any new questions added to it."""
    digest = document_repo.content_hash(title=body.title, text=body.text)
    document = document_repo.get_document_by_hash(session, tenant_id=tenant.id, content_hash=digest)
    questions: list[ProbeQuestion] = []
    if document is None:
        try:
            # SQLite's writer holds the write lock since its BEGIN: no one can insert the same
            # content between the lookup and the insert, so it needs no SAVEPOINT around it
            with nullcontext() if _is_sqlite(session) else session.begin_nested():
                document = document_repo.create_document(
                    session, tenant_id=tenant.id, title=body.title, text=body.text
                )
        except IntegrityError:  # the same content arrived in a concurrent request
            document = document_repo.get_document_by_hash(
                session, tenant_id=tenant.id, content_hash=digest
            )
            if document is None:
                raise
            response.status_code = status.HTTP_200_OK
            questions = _questions_of(session, document.id)
    else:
        response.status_code = status.HTTP_200_OK
        questions = _questions_of(session, document.id)
    known = {(q.question, q.answer) for q in questions}
    added = 0
    for qa in body.questions:
        if (qa.question, qa.answer) in known:
            continue
        known.add((qa.question, qa.answer))
        questions.append(
            document_repo.add_probe_question(
                session,
                tenant_id=tenant.id,
                document_id=document.id,
                question=qa.question,
                answer=qa.answer,
                source=ProbeSource.document,
            )
        )
        added += 1
    if added:
        session.flush()  # the questions' ids and times
        if response.status_code == status.HTTP_200_OK:  # questions may make it learnable
            session.refresh(document, ["status", "error", "updated_at"])
    # built from what this request holds, not read back: a new document costs one lookup and
    # its inserts (see docs/results/2026-12-02-concurrency-and-crash-safety.md)
    return DocumentDetail(
        **DocumentPublic.model_validate(document).model_dump(),
        questions=[ProbeQuestionPublic.model_validate(q) for q in questions],
        text=document.text,
    )


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _questions_of(session: Session, document_id: str) -> list[ProbeQuestion]:
    return list(
        document_repo.probe_questions_for_documents(session, document_ids=[document_id])[
            document_id
        ]
    )


@router.get("", response_model=Page[DocumentListed])
def list_documents(
    session: SessionDep,
    tenant: CurrentTenant,
    status: DocumentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_NUMBER)] = 0,
) -> Page[DocumentListed]:
    """A page of the tenant's documents, newest first, each with its status (and, when an
    update could not learn it, why in `error`) and its probe questions with their source."""
    documents, total = document_repo.list_documents(
        session,
        tenant_id=tenant.id,
        status=status,
        limit=limit,
        offset=offset,
        with_questions=True,
    )
    return Page(
        items=[_listed(d) for d in documents],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{document_id}", response_model=DocumentDetail, responses=error_responses(404))
def get_document(document_id: str, session: SessionDep, tenant: CurrentTenant) -> DocumentDetail:
    document = document_repo.get_document(
        session, tenant_id=tenant.id, document_id=document_id, with_questions=True
    )
    if document is None:
        raise NotFound(f"document {document_id} not found")
    return _detail(document)


@router.delete(
    "/{document_id}", response_model=DocumentDeleted, responses=error_responses(404, 409)
)
def delete_document(
    document_id: str,
    session: SessionDep,
    tenant: CurrentTenant,
    forget: Annotated[
        bool,
        Query(
            description="For a learned document, also request a rebuild: the tenant's adapter "
            "trained again from the base model without it (409, deleting nothing, while an "
            "update of another mode is open)."
        ),
    ] = False,
) -> DocumentDeleted:
    """Delete a document with its probe questions, self-edits and their rewards; later updates
    no longer rehearse it. A document being learned answers 409 until its update ends. What an
    adapter version already learned from it stays in that version's weights, unless
    ``forget`` rebuilds the adapter without it."""
    document = document_repo.get_document(session, tenant_id=tenant.id, document_id=document_id)
    if document is None:
        raise NotFound(f"document {document_id} not found")
    learned = document.status == DocumentStatus.learned
    edits = learning_repo.list_self_edits(
        session, tenant_id=tenant.id, document_id=document.id, limit=None
    )
    teachers = learning_repo.teacher_versions_trained_on(
        session, tenant_id=tenant.id, self_edit_ids=[e.id for e, _ in edits]
    )
    version = (
        session.get(AdapterVersion, document.learned_version_id)
        if document.learned_version_id
        else None
    )
    deleted = DocumentDeleted(
        **DocumentPublic.model_validate(document).model_dump(),
        learned_version=version.number if version else None,
        teacher_versions=[t.number for t in teachers],
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
        deleted.rebuild_job_id = open_rebuild(session, tenant.id, {"mode": UpdateMode.rebuild}).id
    return deleted
