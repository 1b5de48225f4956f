"""A tenant's adapter versions, as it sees them, and each as an archive to take away (an
admin's rollback: ``routes/rollback.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response, status
from fastapi import Path as PathParam

from service.deps import CurrentTenant, LimitsDep, SessionDep, SettingsDep
from service.domain import adapter_imports
from service.domain import adapters as adapter_domain
from service.errors import COMMON_ERRORS, WRITE_ERRORS, error_responses
from service.limits import ADAPTER_ARCHIVE_BYTES
from service.presenters import adapter_public
from service.schemas import MAX_NUMBER, AdapterPublic, UpdateAccepted
from service.store.repositories import adapters as adapter_repo

router = APIRouter(prefix="/v1", tags=["adapters"], responses=error_responses(*COMMON_ERRORS))


@router.get("/adapters", response_model=list[AdapterPublic])
def list_adapters(session: SessionDep, tenant: CurrentTenant) -> list[AdapterPublic]:
    """The tenant's adapter versions, newest first."""
    rows = adapter_repo.list_adapter_versions(session, tenant_id=tenant.id)
    return [adapter_public(session, version, parent) for version, parent in rows]


@router.get(
    "/adapters/{version}/archive",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The version as a zip"},
        **error_responses(404, 409, 410),
    },
)
def export_adapter(
    version: Annotated[int, PathParam(ge=1, le=MAX_NUMBER)],
    session: SessionDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
) -> Response:
    """Version ``version`` (its number in ``GET /v1/adapters``) as a zip: PEFT's
    ``adapter_config.json`` and ``adapter_model.safetensors``, which ``PeftModel.from_pretrained``
    loads on the base model unchanged, and ``seal_card.json`` (base model, lineage, metrics,
    checksum). 410 when its weights were deleted; 409 when they no longer match their
    checksum."""
    found = adapter_domain.archive(session, settings, tenant, version)
    return Response(
        found.content,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{found.filename}"',
            "ETag": f'"{found.checksum}"',
        },
    )


@router.post(
    "/adapters",
    response_model=UpdateAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(413, 422, 429, *WRITE_ERRORS),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/zip": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "maxLength": ADAPTER_ARCHIVE_BYTES,
                    }
                }
            },
        }
    },
)
def import_adapter(
    request_body: Annotated[bytes, Body(media_type="application/zip")],
    session: SessionDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    limits: LimitsDep,
) -> UpdateAccepted:
    """Bring an adapter of your own: a zip of PEFT's `adapter_config.json` and
    `adapter_model.safetensors` (safetensors only; a LoRA of this service's rank, alpha and
    target modules, at most 128 MiB), as `GET /v1/adapters/{version}/archive` gives them. A
    job (`adapter_import`) checks it against the base model and judges it through the same
    gate as an update: it becomes a version, promoted or rejected; follow it at
    `/v1/jobs/{job_id}`."""
    job = adapter_imports.request_import(session, settings, tenant, request_body, limits)
    return UpdateAccepted(job_id=job.id, status=job.status)
