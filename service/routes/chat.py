"""OpenAI-compatible chat completions, served by the tenant's active adapter."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter

from service.deps import ChatBackendDep, CurrentTenant, SessionDep, SettingsDep
from service.inference import AdapterRef
from service.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionCreate,
    ChatCompletionPublic,
    Usage,
)
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import feedback as feedback_repo

router = APIRouter(prefix="/v1", tags=["chat"])

#: The model name that asks for the base model, without the tenant's adapter.
BASE_MODEL = "base"


@router.post("/chat/completions", response_model=ChatCompletionPublic)
def create_chat_completion(
    body: ChatCompletionCreate,
    session: SessionDep,
    tenant: CurrentTenant,
    backend: ChatBackendDep,
    settings: SettingsDep,
) -> ChatCompletionPublic:
    """``model: "base"`` answers with the base model; any other name with the tenant's
    active adapter (the base model while it has none). ``temperature`` 0, the default, is
    greedy decoding. Runs in the threadpool, as the backend blocks."""
    version = None
    if body.model != BASE_MODEL:
        version = adapter_repo.active_adapter(session, tenant_id=tenant.id)
    adapter = None
    if version is not None and version.artifact_uri:
        adapter = AdapterRef(uri=version.artifact_uri, checksum=version.checksum or "")
    else:
        version = None
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    result = backend.complete(
        messages=messages,
        adapter=adapter,
        max_tokens=body.max_completion_tokens or body.max_tokens or settings.chat_max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stop_list(),
    )
    completion = feedback_repo.create_completion(
        session,
        tenant_id=tenant.id,
        model=body.model,
        adapter_version_id=version.id if version else None,
        messages=messages,
        output=result.text,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )
    finish_reason: Literal["stop", "length"] = (
        "length" if result.finish_reason == "length" else "stop"
    )
    return ChatCompletionPublic(
        id=completion.id,
        created=int(time.time()),
        model=body.model,
        choices=[
            ChatChoice(
                index=0,
                message=AssistantMessage(content=result.text),
                finish_reason=finish_reason,
            )
        ],
        usage=Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.prompt_tokens + result.completion_tokens,
        ),
    )
