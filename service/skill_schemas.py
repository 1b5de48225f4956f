"""The skills' request and response models (the rest of the API's: :mod:`service.schemas`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from seal.skills.tasks import grid_text
from service import limits
from service.schemas import MAX_NUMBER, JobPublic, _Create, _Public
from service.store.models import VersionStatus

SKILL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


_SIDE = limits.MAX_GRID_SIDE


def _grid_as_text(value: Any) -> Any:
    """A grid (a list of rows of integers 0-9) as its text, one line of digits per row; a
    string is left to the string's own checks."""
    if not isinstance(value, list):
        return value
    if not all(isinstance(row, list) for row in value):
        raise ValueError("a grid is a list of rows, each a list of integers 0-9")
    if len(value) > _SIDE or any(len(row) > _SIDE for row in value):
        raise ValueError(f"a grid has at most {_SIDE} rows of {_SIDE} cells")
    return grid_text(value)


_GRID_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "maxItems": _SIDE,
    "items": {
        "type": "array",
        "minItems": 1,
        "maxItems": _SIDE,
        "items": {"type": "integer", "minimum": 0, "maximum": 9},
    },
}
ExampleText = Annotated[
    str,
    Field(min_length=1, max_length=limits.MAX_EXAMPLE_CHARS),
    BeforeValidator(_grid_as_text),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": limits.MAX_EXAMPLE_CHARS},
                _GRID_SCHEMA,
            ],
            "description": "Text, or a grid: rows of integers 0-9, all the same length (at "
            f"most {_SIDE}x{_SIDE}), kept as one line of digits per row.",
        },
        mode="validation",
    ),
]


class SkillExampleIn(_Create):
    input: ExampleText
    output: ExampleText


class SkillCreate(_Create):
    name: str = Field(
        max_length=limits.MAX_SKILL_NAME_CHARS,
        pattern=SKILL_NAME_PATTERN,
        description='Lower case letters, digits and "_.-", at most 64; chat with it as '
        '`"model": "skill:<name>"`.',
    )
    description: str | None = Field(
        None,
        min_length=1,
        max_length=limits.MAX_SKILL_DESCRIPTION_CHARS,
        description="What the skill does, in a sentence; it goes into every prompt.",
    )
    examples: list[SkillExampleIn] = Field(
        min_length=limits.MIN_NEW_SKILL_EXAMPLES,
        max_length=limits.MAX_REQUEST_EXAMPLES,
        description="Input -> output demonstrations (at least 2 different ones).",
    )


class SkillExamplesCreate(_Create):
    examples: list[SkillExampleIn] = Field(min_length=1, max_length=limits.MAX_REQUEST_EXAMPLES)


class SkillExamplePublic(_Public):
    id: str
    input: str
    output: str
    created_at: datetime


class SkillVersionPublic(BaseModel):
    version: int
    status: VersionStatus
    parent: int | None
    metrics: dict[str, Any]
    config: dict[str, Any] | None = Field(
        description="The training configuration its adapter was trained with."
    )
    created_at: datetime
    promoted_at: datetime | None
    checksum: str | None


class SkillPublic(BaseModel):
    id: str
    name: str
    description: str | None
    examples: int = Field(description="How many examples it has.")
    active_version: int | None = Field(
        description="The version that answers its chats; null: none yet (chats answer 409)."
    )
    job: JobPublic | None = Field(description="Its queued or running job, if any.")
    created_at: datetime
    updated_at: datetime


class SkillDetail(SkillPublic):
    versions: list[SkillVersionPublic] = Field(description="Newest first.")


class SkillLearning(BaseModel):
    skill: SkillPublic
    job: JobPublic = Field(description="The job that learns the skill's next version.")


class SkillRollbackRequest(_Create):
    version: int = Field(
        ge=0,
        le=MAX_NUMBER,
        description="The skill version to make active; 0: none (its chats answer 409).",
    )


class SkillRollbackResult(BaseModel):
    active: SkillVersionPublic | None = Field(description="The active version now; null: none.")
    previous: SkillVersionPublic | None = Field(description="The version that was active before.")
