"""``GET /metrics``: Prometheus's text format (``service.metrics``)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.deps import Credentials, ReadSessionDep, SettingsDep
from service.domain.errors import Unauthorized
from service.errors import COMMON_ERRORS, error_responses
from service.metrics import CONTENT_TYPE_LATEST, exposition

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        **error_responses(*COMMON_ERRORS),
    },
)
def metrics(session: ReadSessionDep, settings: SettingsDep, credentials: Credentials) -> Response:
    """The service's metrics for Prometheus: HTTP requests, chat, the adapter cache (this
    host's API processes) and jobs, the queue and adapter versions (the store). Needs the
    metrics key (``SEAL_METRICS_KEY``) or an admin key as a bearer token unless
    ``SEAL_METRICS_PUBLIC`` is true."""
    if not settings.metrics_public:
        key = credentials.credentials if credentials else ""
        if not settings.reads_metrics(key):
            raise Unauthorized(
                "metrics need the metrics key or an admin key (or SEAL_METRICS_PUBLIC=true)"
            )
    return Response(exposition(session), media_type=CONTENT_TYPE_LATEST)
