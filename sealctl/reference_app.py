"""The reference of ``seal bench api``: the least a FastAPI + SQLAlchemy app does to accept a
document. It checks the bearer key's hash against the service's ``api_keys`` table and inserts
the same ``documents`` row in one transaction, on an engine made as the service makes its own
(on SQLite: WAL, the busy timeout, the write lock taken up front, without which concurrent
writers fail). No dedup, no questions, no error shape, no task sending.

``uvicorn --factory sealctl.reference_app:create_reference_app`` (the settings' store)."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import select

from service.settings import get_settings
from service.store.db import make_engine, make_sessionmaker
from service.store.models import ApiKey, Document, DocumentStatus
from service.store.repositories.documents import content_hash
from service.store.repositories.tenants import hash_api_key


class DocumentIn(BaseModel):
    title: str
    text: str


class DocumentOut(BaseModel):
    id: str
    title: str
    status: str


def create_reference_app() -> FastAPI:
    settings = get_settings()
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url), write=True)
    app = FastAPI()

    @app.post("/v1/documents", status_code=201)
    def create_document(
        body: DocumentIn, authorization: Annotated[str, Header()] = ""
    ) -> DocumentOut:
        key = authorization.removeprefix("Bearer ")
        with sessions.begin() as session:
            tenant_id = session.scalar(
                select(ApiKey.tenant_id).where(
                    ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None)
                )
            )
            if tenant_id is None:
                raise HTTPException(401, "invalid API key")
            document = Document(
                tenant_id=tenant_id,
                title=body.title,
                text=body.text,
                content_hash=content_hash(title=body.title, text=body.text),
                status=DocumentStatus.pending,
            )
            session.add(document)
            session.flush()
            return DocumentOut(id=document.id, title=document.title, status=document.status)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
