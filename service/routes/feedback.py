"""Feedback: ratings (kept as rewards) and question-answer pairs (kept as probe questions)."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.deps import CurrentTenant, SessionDep
from service.errors import COMMON_ERRORS, WRITE_ERRORS, NotFound, error_responses
from service.schemas import FeedbackCreate, FeedbackPublic
from service.store.models import ProbeSource
from service.store.repositories import documents as document_repo
from service.store.repositories import feedback as feedback_repo
from service.store.repositories import learning as learning_repo

router = APIRouter(
    prefix="/v1/feedback", tags=["feedback"], responses=error_responses(*COMMON_ERRORS)
)

#: The reward metric a feedback rating is kept under.
RATING_METRIC = "rating"


@router.post(
    "",
    response_model=FeedbackPublic,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404, 409, *WRITE_ERRORS),
)
def create_feedback(
    body: FeedbackCreate, session: SessionDep, tenant: CurrentTenant
) -> FeedbackPublic:
    """Record feedback. A question-answer pair becomes a probe question: of the named
    document, or, about no document, one of the retention set. A rating is kept in the
    reward history (metric ``rating``), with the adapter version of the rated completion."""
    if body.document_id is not None and (
        document_repo.get_document(session, tenant_id=tenant.id, document_id=body.document_id)
        is None
    ):
        raise NotFound(f"document {body.document_id} not found")
    completion = None
    if body.completion_id is not None:
        completion = feedback_repo.get_completion(
            session, tenant_id=tenant.id, completion_id=body.completion_id
        )
        if completion is None:
            raise NotFound(f"completion {body.completion_id} not found")
    probe_id = None
    if body.question is not None and body.answer is not None:
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
    if body.rating is not None:
        learning_repo.add_reward(
            session,
            tenant_id=tenant.id,
            metric=RATING_METRIC,
            value=float(body.rating),
            adapter_version_id=completion.adapter_version_id if completion else None,
            document_id=body.document_id,
        )
    return FeedbackPublic.model_validate(feedback)
