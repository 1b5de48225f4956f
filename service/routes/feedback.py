from __future__ import annotations

from fastapi import APIRouter, status

from service.deps import CurrentTenant, SessionDep
from service.errors import NotFound
from service.schemas import FeedbackCreate, FeedbackPublic
from service.store.models import ProbeSource
from service.store.repositories import documents as document_repo
from service.store.repositories import feedback as feedback_repo

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])


@router.post("", response_model=FeedbackPublic, status_code=status.HTTP_201_CREATED)
def create_feedback(
    body: FeedbackCreate, session: SessionDep, tenant: CurrentTenant
) -> FeedbackPublic:
    """Record feedback. A question-answer pair about a named document also becomes one of
    that document's probe questions."""
    if body.document_id is not None and (
        document_repo.get_document(session, tenant_id=tenant.id, document_id=body.document_id)
        is None
    ):
        raise NotFound(f"document {body.document_id} not found")
    if body.completion_id is not None and (
        feedback_repo.get_completion(session, tenant_id=tenant.id, completion_id=body.completion_id)
        is None
    ):
        raise NotFound(f"completion {body.completion_id} not found")
    probe_id = None
    if body.document_id is not None and body.question is not None and body.answer is not None:
        probe = document_repo.add_probe_question(
            session,
            tenant_id=tenant.id,
            document_id=body.document_id,
            question=body.question,
            answer=body.answer,
            source=ProbeSource.feedback,
        )
        probe_id = probe.id
    feedback = feedback_repo.create_feedback(
        session,
        tenant_id=tenant.id,
        question=body.question,
        answer=body.answer,
        document_id=body.document_id,
        rating=body.rating,
        completion_id=body.completion_id,
        probe_question_id=probe_id,
    )
    return FeedbackPublic.model_validate(feedback)
