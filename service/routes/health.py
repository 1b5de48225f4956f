from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from service.deps import SessionDep
from service.errors import error_responses
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses=error_responses(503))
def healthz(session: SessionDep) -> Health:
    session.execute(text("SELECT 1"))
    return Health(status="ok", database="ok")
