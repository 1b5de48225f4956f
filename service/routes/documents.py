"""A tenant's documents and the probe questions that come with them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from service.deps import CurrentTenant, LimitsDep, SessionDep
from service.domain import documents as document_domain
from service.errors import COMMON_ERRORS, WRITE_ERRORS, NotFound, error_responses
from service.memory_schemas import DocumentCreated
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
    Document,
    DocumentStatus,
)
from service.store.repositories import documents as document_repo

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
    response_model=DocumentCreated,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": DocumentCreated, "description": "The same content already exists"},
        **error_responses(409, *WRITE_ERRORS),
    },
)
def create_document(
    body: DocumentCreate,
    session: SessionDep,
    tenant: CurrentTenant,
    limits: LimitsDep,
    response: Response,
) -> DocumentCreated:
    """Add a document; sending the same title and text again returns the existing one (200),
    with any new questions added to it. A new document is in the tenant's memory when this
    answers (chat finds it from the next request); it supersedes the volatile documents of the
    same title. A `volatile` one is answered from memory only and never learned."""
    added = document_domain.add_document(
        session,
        tenant,
        title=body.title,
        text=body.text,
        questions=[(qa.question, qa.answer) for qa in body.questions],
        volatile=body.volatile,
        limits=limits,
    )
    if not added.created:
        response.status_code = status.HTTP_200_OK
    # built from what this request holds, not read back: a new document costs one lookup and
    # its inserts (see docs/results/2026-12-02-concurrency-and-crash-safety.md)
    return DocumentCreated(
        **DocumentPublic.model_validate(added.document).model_dump(),
        questions=[ProbeQuestionPublic.model_validate(q) for q in added.questions],
        text=added.document.text,
        superseded=added.superseded,
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
    "/{document_id}",
    response_model=DocumentDeleted,
    responses=error_responses(404, 409, *WRITE_ERRORS),
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
    deletion = document_domain.delete_document(session, tenant, document_id, forget=forget)
    return DocumentDeleted(
        **DocumentPublic.model_validate(deletion.document).model_dump(),
        learned_version=deletion.learned_version,
        teacher_versions=deletion.teacher_versions,
        rebuild_job_id=deletion.rebuild_job_id,
    )
