"""Feedback and the stored chat completions it can refer to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.models import Completion, Feedback, new_completion_id


def create_completion(
    session: Session,
    *,
    tenant_id: str,
    model: str,
    adapter_version_id: str | None,
    messages: list[dict[str, Any]],
    output: str,
    prompt_tokens: int,
    completion_tokens: int,
    completion_id: str | None = None,
    skill_version_id: str | None = None,
) -> Completion:
    """Record a chat completion (``completion_id``: one already sent to the client, as a
    stream does; None makes a new one) and what answered it: an adapter version, a skill
    version, or neither (the base model)."""
    completion = Completion(
        id=completion_id or new_completion_id(),
        tenant_id=tenant_id,
        model=model,
        adapter_version_id=adapter_version_id,
        skill_version_id=skill_version_id,
        messages=messages,
        output=output,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    session.add(completion)
    session.flush()
    return completion


def get_completion(session: Session, *, tenant_id: str, completion_id: str) -> Completion | None:
    stmt = select(Completion).where(
        Completion.id == completion_id, Completion.tenant_id == tenant_id
    )
    return session.scalar(stmt)


def create_feedback(
    session: Session,
    *,
    tenant_id: str,
    question: str | None = None,
    answer: str | None = None,
    document_id: str | None = None,
    rating: int | None = None,
    completion_id: str | None = None,
    probe_question_id: str | None = None,
) -> Feedback:
    feedback = Feedback(
        tenant_id=tenant_id,
        question=question,
        answer=answer,
        document_id=document_id,
        rating=rating,
        completion_id=completion_id,
        probe_question_id=probe_question_id,
    )
    session.add(feedback)
    session.flush()
    return feedback
