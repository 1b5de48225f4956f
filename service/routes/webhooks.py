"""A tenant's webhook endpoints: events pushed to its own URLs, signed as the Standard Webhooks
specification says (``standardwebhooks`` verifies them), each delivery and attempt listed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from service.deps import CurrentTenant, SessionDep, SettingsDep
from service.domain import webhooks as webhook_domain
from service.errors import COMMON_ERRORS, WRITE_ERRORS, error_responses
from service.schemas import MAX_NUMBER, Page
from service.store.repositories import webhooks as webhook_repo
from service.webhook_schemas import (
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)

router = APIRouter(prefix="/v1", tags=["webhooks"], responses=error_responses(*COMMON_ERRORS))


def _created(endpoint: object) -> WebhookCreated:
    return WebhookCreated.model_validate(endpoint, from_attributes=True)


@router.post(
    "/webhooks",
    response_model=WebhookCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422, *WRITE_ERRORS),
)
def create_webhook(
    body: WebhookCreate, session: SessionDep, settings: SettingsDep, tenant: CurrentTenant
) -> WebhookCreated:
    """A new endpoint; the answer holds its signing `secret`, shown this once."""
    endpoint = webhook_domain.create(
        session,
        settings,
        tenant,
        url=str(body.url),
        events=body.events,
        description=body.description,
    )
    return _created(endpoint)


@router.get("/webhooks", response_model=list[WebhookPublic])
def list_webhooks(session: SessionDep, tenant: CurrentTenant) -> list[WebhookPublic]:
    return [
        WebhookPublic.model_validate(e)
        for e in webhook_repo.list_endpoints(session, tenant_id=tenant.id)
    ]


@router.get("/webhooks/{endpoint_id}", response_model=WebhookPublic, responses=error_responses(404))
def get_webhook(endpoint_id: str, session: SessionDep, tenant: CurrentTenant) -> WebhookPublic:
    return WebhookPublic.model_validate(webhook_domain.get(session, tenant, endpoint_id))


@router.patch(
    "/webhooks/{endpoint_id}",
    response_model=WebhookPublic,
    responses=error_responses(404, 422, *WRITE_ERRORS),
)
def update_webhook(
    endpoint_id: str,
    body: WebhookUpdate,
    session: SessionDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
) -> WebhookPublic:
    """Change its `url`, `events`, `description`, or `enabled` (true: send again)."""
    fields = body.model_dump(exclude_unset=True, mode="json")
    endpoint = webhook_domain.get(session, tenant, endpoint_id)
    return WebhookPublic.model_validate(webhook_domain.change(session, settings, endpoint, fields))


@router.delete(
    "/webhooks/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(404, *WRITE_ERRORS),
)
def delete_webhook(endpoint_id: str, session: SessionDep, tenant: CurrentTenant) -> Response:
    """Delete an endpoint and its deliveries; nothing more is sent to it."""
    webhook_repo.delete_endpoint(session, endpoint=webhook_domain.get(session, tenant, endpoint_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/webhooks/{endpoint_id}/rotate-secret",
    response_model=WebhookCreated,
    responses=error_responses(404, *WRITE_ERRORS),
)
def rotate_secret(endpoint_id: str, session: SessionDep, tenant: CurrentTenant) -> WebhookCreated:
    """A new signing secret, shown this once; for 24 hours the old one signs beside it."""
    endpoint = webhook_domain.get(session, tenant, endpoint_id)
    return _created(webhook_domain.rotate_secret(session, endpoint))


@router.post(
    "/webhooks/{endpoint_id}/test",
    response_model=DeliveryPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, *WRITE_ERRORS),
)
def test_webhook(endpoint_id: str, session: SessionDep, tenant: CurrentTenant) -> DeliveryPublic:
    """Send a `webhook.test` event to this endpoint now; follow it in its deliveries."""
    endpoint = webhook_domain.get(session, tenant, endpoint_id)
    return DeliveryPublic.model_validate(webhook_repo.add_test_delivery(session, endpoint=endpoint))


@router.get(
    "/webhooks/{endpoint_id}/deliveries",
    response_model=Page[DeliveryPublic],
    responses=error_responses(404),
)
def list_deliveries(
    endpoint_id: str,
    session: SessionDep,
    tenant: CurrentTenant,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_NUMBER)] = 0,
) -> Page[DeliveryPublic]:
    """Its deliveries, newest first, each with every attempt (time, status code or error)."""
    endpoint = webhook_domain.get(session, tenant, endpoint_id)
    items, total = webhook_repo.list_deliveries(
        session, endpoint_id=endpoint.id, limit=limit, offset=offset
    )
    return Page(
        items=[DeliveryPublic.model_validate(d) for d in items],
        total=total,
        limit=limit,
        offset=offset,
    )
