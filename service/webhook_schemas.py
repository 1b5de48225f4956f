"""The request and response bodies of ``/v1/webhooks``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, UrlConstraints

from service.store.webhook_models import DeliveryStatus

Url = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]
EventType = Annotated[str, StringConstraints(max_length=64)]


class _Create(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class WebhookCreate(_Create):
    url: Url = Field(description="Where events are POSTed (http or https).")
    events: list[EventType] | None = Field(
        None,
        max_length=16,
        description="The event types to send; omitted or null: all of them.",
    )
    description: str | None = Field(None, max_length=500)


class WebhookUpdate(_Create):
    url: Url | None = None
    events: list[EventType] | None = Field(None, max_length=16)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = Field(
        None, description="false stops the deliveries; true sends again and forgets failures."
    )


class WebhookPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    events: list[str] | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(
        description="The signing secret (`whsec_...`), shown only here and on rotation."
    )


class DeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The `webhook-id` header: the same on every retry.")
    event_type: str
    status: DeliveryStatus
    payload: dict[str, Any]
    attempts: list[dict[str, Any]]
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
