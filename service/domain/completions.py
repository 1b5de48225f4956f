"""Chat completions as the service records them (what feedback refers to)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from service.store.db import session_scope
from service.store.repositories import feedback as feedback_repo

if TYPE_CHECKING:
    from service.inference import ChatResult


def record_completion(
    factory: sessionmaker[Session], record: dict[str, Any], result: ChatResult, completion_id: str
) -> None:
    """Record a written reply under ``completion_id`` (what feedback refers to), in a unit of
    work of its own."""
    with session_scope(factory) as session:
        feedback_repo.create_completion(
            session,
            **record,
            output=result.text,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            completion_id=completion_id,
        )
