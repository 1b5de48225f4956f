"""OpenAI-compatible chat completions, served by the tenant's active adapter (or a skill's)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from service import metrics
from service.chat_schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionCreate,
    ChatCompletionPublic,
    ChunkChoice,
    ChunkDelta,
    Usage,
)
from service.deps import ChatBackendDep, ReadingTenant, ReadSessionDep, SettingsDep
from service.domain import completions, memory, quotas
from service.domain import skills as skill_domain
from service.domain.prompts import check_prompt, with_memory
from service.errors import COMMON_ERRORS, WRITE_ERRORS, InvalidRequest, error_responses
from service.inference import AdapterRef, ChatBackend, ChatRequest, ChatResult, ChatStream
from service.memory_schemas import MemoryDocument, MemoryUsed
from service.settings import Settings
from service.store.models import MemoryMode, Tenant, new_completion_id
from service.store.repositories import adapters as adapter_repo
from service.store.repositories.memory import Found

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["chat"], responses=error_responses(*COMMON_ERRORS))

#: The model name that asks for the base model, without the tenant's adapter.
BASE_MODEL = "base"
#: ``skill:<name>`` asks for the tenant's skill ``name``.
SKILL_PREFIX = "skill:"


def _finish_reason(result: ChatResult) -> Literal["stop", "length"]:
    return "length" if result.finish_reason == "length" else "stop"


def _usage(result: ChatResult) -> Usage:
    return Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletionPublic,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "With `stream: true`, `chat.completion.chunk` server-sent events "
            "ending with `data: [DONE]`.",
        },
        **error_responses(404, 409, *WRITE_ERRORS),
    },
)
def create_chat_completion(
    body: ChatCompletionCreate,
    request: Request,
    session: ReadSessionDep,
    tenant: ReadingTenant,
    backend: ChatBackendDep,
    settings: SettingsDep,
) -> Any:
    """``model: "base"`` answers with the base model; ``"skill:<name>"`` with that skill's
    active version alone, the last user message its input and the skill's newest examples its
    context (404 for a skill the tenant does not have, 409 while it has no active version);
    any other name with the tenant's active adapter (the base model while it has none).
    ``memory`` ``hybrid`` (the tenant's setting, for its own model) puts the tenant's chunks
    that best match the last user message first in the prompt, as many as the context leaves
    room for (:func:`with_memory`); the reply names their documents. ``temperature`` 0, the
    default, is greedy decoding. A prompt the model's context cannot hold with ``max_tokens``
    to spare is a 422 (:func:`check_prompt`). Runs in the threadpool,
    as the backend blocks. The request only reads; its completion is recorded, once the reply
    is written, in a transaction of its own."""
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    mode, found = _recall(session, settings, tenant, body, messages)
    adapter: AdapterRef | None
    if body.model.startswith(SKILL_PREFIX):
        messages, adapter, answered_by = _skill(session, settings, tenant, body.model, messages)
    else:
        adapter, answered_by = _adapter(session, tenant, body.model)
    chat = ChatRequest(
        messages=messages,
        adapter=adapter,
        max_tokens=body.max_completion_tokens or body.max_tokens or settings.chat_max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stop_list(),
    )
    record: dict[str, Any] = dict(tenant_id=tenant.id, model=body.model, messages=messages)
    record.update(answered_by)
    # What the reply needs is read: end the read transaction, so that none stays open while
    # the model writes (nothing to commit: the completion is recorded by record_completion)
    session.close()
    check_prompt(backend, chat)  # before the request is queued for decoding
    chat, used = _remember(backend, chat, mode, found)
    # one of the tenant's concurrent chats until its reply is written (429 past its quota)
    limit = quotas.limits_of(settings, tenant)["concurrent_chats"]
    release = request.app.state.counters.open_chat(tenant.id, limit)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        started = time.perf_counter()
        try:
            pieces = backend.stream(chat)
        except BaseException:
            release()
            raise
        adapted = chat.adapter is not None
        return _stream(request, pieces, record, include_usage, adapted, started, used, release)

    return _complete(request, backend, chat, body.model, record, used, release)


def _complete(
    request: Request,
    backend: ChatBackend,
    chat: ChatRequest,
    model: str,
    record: dict[str, Any],
    used: MemoryUsed,
    release: Callable[[], None],
) -> ChatCompletionPublic:
    """The whole reply at once, recorded; the chat counts against the tenant's
    ``concurrent_chats`` until it is decoded (``release``)."""
    started = time.perf_counter()
    try:
        result = backend.complete(chat)
    finally:
        release()
    _observe(chat, result, time.perf_counter() - started)
    completion_id = new_completion_id()
    completions.record_completion(request.app.state.sessionmaker, record, result, completion_id)
    return ChatCompletionPublic(
        id=completion_id,
        created=int(time.time()),
        model=model,
        choices=[
            ChatChoice(
                index=0,
                message=AssistantMessage(content=result.text),
                finish_reason=_finish_reason(result),
            )
        ],
        usage=_usage(result),
        memory=used,
    )


def _recall(
    session: Session,
    settings: Settings,
    tenant: Tenant,
    body: ChatCompletionCreate,
    messages: list[dict[str, str]],
) -> tuple[MemoryMode, list[Found]]:
    """What the chat answers from, and (``hybrid``) the tenant's chunks that best match its
    last user message."""
    own_model = body.model != BASE_MODEL and not body.model.startswith(SKILL_PREFIX)
    mode = memory.memory_mode(tenant.memory, body.memory, own_model=own_model)
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if mode != MemoryMode.hybrid or not question:
        return mode, []
    found = memory.recall(
        session, tenant_id=tenant.id, question=question, limit=settings.memory_chunks
    )
    return mode, found


def _remember(
    backend: ChatBackend, chat: ChatRequest, mode: MemoryMode, found: list[Found]
) -> tuple[ChatRequest, MemoryUsed]:
    """The chat with the chunks its context holds in its prompt, and what it shows."""
    if found:
        chat, found = with_memory(backend, chat, found)
    documents = [MemoryDocument(id=i, title=t) for i, t in memory.documents_used(found)]
    return chat, MemoryUsed(mode=mode, documents=documents)


def _adapter(
    session: Session, tenant: Tenant, model: str
) -> tuple[AdapterRef | None, dict[str, str | None]]:
    """The tenant's active adapter (None for the base model, asked for or while it has none)
    and the version to record."""
    version = None
    if model != BASE_MODEL:
        version = adapter_repo.active_adapter(session, tenant_id=tenant.id)
    if version is None or not version.artifact_uri:
        return None, {"adapter_version_id": None}
    adapter = AdapterRef(uri=version.artifact_uri, checksum=version.checksum or "")
    return adapter, {"adapter_version_id": version.id}


def _skill(
    session: Session,
    settings: Settings,
    tenant: Tenant,
    model: str,
    messages: list[dict[str, str]],
) -> tuple[list[dict[str, str]], AdapterRef, dict[str, str | None]]:
    """The prompt a chat with a skill sends (its input: the last user message), the skill
    version's adapter, and that version to record."""
    query = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
    if query is None:
        raise InvalidRequest("body.messages: a chat with a skill needs a user message, its input")
    name = model.removeprefix(SKILL_PREFIX)
    prompt = skill_domain.skill_prompt(session, settings, tenant, name, query)
    version = prompt.version
    assert version.artifact_uri is not None
    adapter = AdapterRef(uri=version.artifact_uri, checksum=version.checksum or "")
    return prompt.messages, adapter, {"adapter_version_id": None, "skill_version_id": version.id}


def _observe(chat: ChatRequest, result: ChatResult, seconds: float) -> None:
    model = metrics.chat_model(chat.adapter is not None)
    metrics.CHAT_TOKENS.labels(model).inc(result.completion_tokens)
    metrics.CHAT_DECODE_SECONDS.labels(model).inc(seconds)


def _event(data: BaseModel | str) -> str:
    """One server-sent event: a model as JSON without its null fields, or a plain string."""
    text = data.model_dump_json(exclude_none=True) if isinstance(data, BaseModel) else data
    return f"data: {text}\n\n"


def _chunk(
    completion_id: str,
    created: int,
    model: str,
    delta: ChunkDelta,
    finish: Literal["stop", "length"] | None = None,
) -> ChatCompletionChunk:
    """One ``chat.completion.chunk`` of a streamed reply."""
    return ChatCompletionChunk(
        id=completion_id,
        created=created,
        model=model,
        choices=[ChunkChoice(delta=delta, finish_reason=finish)],
    )


def _stream(
    request: Request,
    pieces: ChatStream,
    record: dict[str, Any],
    include_usage: bool,
    request_adapter: bool,
    started: float,
    used: MemoryUsed,
    release: Callable[[], None],
) -> StreamingResponse:
    """The reply as server-sent events, as OpenAI sends them: a chunk with the role, a chunk
    per piece of text, one with the finish reason, optionally one with the usage, then
    ``[DONE]``; the last chunk carries the reply's ``memory``. The first piece is decoded
    before the response starts, so that an error there (a missing adapter, say) is an error
    response. The completion is recorded when the reply is complete, under the id its chunks
    carried; a client that leaves early stops the decoding and leaves no record. The chat
    counts against the tenant's ``concurrent_chats`` until the stream ends, however it ends
    (``release``)."""
    completion_id = new_completion_id()
    chunk = partial(_chunk, completion_id, int(time.time()), record["model"])

    def save(result: ChatResult) -> None:
        completions.record_completion(request.app.state.sessionmaker, record, result, completion_id)

    try:
        first = next(pieces)
        metrics.CHAT_FIRST_TOKEN.labels(metrics.chat_model(request_adapter)).observe(
            time.perf_counter() - started
        )
    except BaseException:
        pieces.close()
        release()
        raise

    async def events() -> AsyncIterator[str]:
        try:
            yield _event(chunk(ChunkDelta(role="assistant", content="")))
            item: str | ChatResult | None = first
            while isinstance(item, str):
                yield _event(chunk(ChunkDelta(content=item)))
                item = await run_in_threadpool(next, pieces, None)
            if item is None:
                raise RuntimeError("the reply ended without its result")
            metrics.CHAT_TOKENS.labels(metrics.chat_model(request_adapter)).inc(
                item.completion_tokens
            )
            metrics.CHAT_DECODE_SECONDS.labels(metrics.chat_model(request_adapter)).inc(
                time.perf_counter() - started
            )
            await run_in_threadpool(save, item)
            last = [chunk(ChunkDelta(), _finish_reason(item))]
            if include_usage:  # a chunk with the usage and empty choices
                last.append(chunk(ChunkDelta()).model_copy(update={"choices": []}))
                last[-1].usage = _usage(item)
            last[-1].memory = used
            for event in last:
                yield _event(event)
            yield _event("[DONE]")
        except Exception:  # the response has started: the error goes in the stream
            log.exception("streamed chat completion %s failed", completion_id)
            # the exception is for the log; the client reads what happened and what to quote
            message = f"the reply failed on an internal error; quote completion {completion_id}"
            error = {"error": {"type": "server_error", "message": message}}
            yield _event(json.dumps(error))
        finally:
            pieces.close()  # also while a thread waits in next(): decoding ends at its next step
            release()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # also when the client left before the stream started (the events never ran)
        background=BackgroundTask(release),
    )
