"""The chat-completions request and its replies, in OpenAI's shape (the rest of the API's
models: :mod:`service.schemas`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service import limits
from service.memory_schemas import MemoryUsed
from service.store.models import MemoryMode

#: One stop sequence.
StopText = Annotated[str, Field(max_length=limits.MAX_STOP_CHARS)]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str = Field(max_length=limits.MAX_CHAT_CHARS)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: (
        Annotated[str, Field(max_length=limits.MAX_CHAT_CHARS)]
        | Annotated[list[TextPart], Field(max_length=limits.MAX_TEXT_PARTS)]
    )

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = Field(
        False, description="Send a last chunk with the token usage (and no choices)."
    )


class ChatCompletionCreate(BaseModel):
    """The OpenAI chat-completions request; fields it does not know are ignored.

    Unlike OpenAI, ``temperature`` defaults to 0 (greedy decoding), so that answers are
    reproducible; 0 always means greedy.
    """

    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        min_length=1,
        max_length=limits.MAX_MODEL_NAME_CHARS,
        description='"base": the base model; "skill:<name>": the skill\'s active version alone, '
        "the last user message its input; anything else: the tenant's active adapter.",
    )
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=limits.MAX_CHAT_MESSAGES,
        description=f"At most {limits.MAX_CHAT_CHARS:,} characters in all; the prompt they "
        "make must also fit the model's context with `max_tokens` to spare.",
    )
    max_tokens: int | None = Field(None, ge=1, le=limits.MAX_CHAT_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=limits.MAX_CHAT_TOKENS)
    temperature: float = Field(
        0.0, ge=0.0, le=2.0, description="0 (the default), or below 0.001: greedy."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(
        None,
        ge=-(2**63),
        le=2**63 - 1,
        description="Seeds sampling (temperature > 0): the same request and seed give the same "
        "reply. A 64-bit integer.",
    )
    stop: StopText | Annotated[list[StopText], Field(max_length=limits.MAX_STOPS)] | None = None
    n: int = Field(1, description="Only 1 is supported.")
    stream: bool = Field(
        False, description="Send the reply as server-sent events, a piece at a time."
    )
    stream_options: StreamOptions | None = None
    memory: MemoryMode | None = Field(
        None,
        description="Not OpenAI's (the `openai` client sends it through `extra_body`): "
        '`"hybrid"`, the best chunks of the tenant\'s documents for the last user message in '
        'the prompt; `"weights"`, the adapter alone. Default: the tenant\'s `memory` for its '
        'own model, `"weights"` for `"base"` and skills.',
    )

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported")
        return value

    @field_validator("messages")
    @classmethod
    def _chars(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        chars = sum(len(message.text()) for message in value)
        if chars > limits.MAX_CHAT_CHARS:
            raise ValueError(
                f"the messages hold {chars:,} characters, more than {limits.MAX_CHAT_CHARS:,}"
            )
        return value

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return [s for s in stops if s] or None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionPublic(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    memory: MemoryUsed = Field(description="What the reply drew on besides the weights.")


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed chat completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    memory: MemoryUsed | None = Field(
        None, description="On the last chunk only: what the reply drew on besides the weights."
    )
