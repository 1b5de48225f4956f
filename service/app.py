"""The FastAPI application: ``create_app()``; ``uvicorn --factory service.app:create_app``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.audit import AuditMiddleware
from service.edge import EdgeMiddleware
from service.errors import install_error_handlers
from service.metrics import MetricsMiddleware
from service.ratelimit import TenantCounters
from service.routes import (
    adapters,
    admin,
    chat,
    dashboard,
    documents,
    feedback,
    health,
    jobs,
    learning,
    metrics,
    rollback,
    skills,
    teachers,
    updates,
    usage,
    webhooks,
)
from service.settings import Settings, get_settings
from service.store.db import make_engine, make_sessionmaker

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        sender = getattr(app.state, "task_sender", None)
        if sender is not None and hasattr(sender, "close"):
            sender.close()
        engine.dispose()

    app = FastAPI(
        title="SEAL service",
        version="0.1.0",
        description="Teach a tenant's student model its documents: a teacher writes "
        "self-edits, a worker trains per-tenant LoRA adapters.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine, write=True)  # requests that may write
    app.state.read_sessionmaker = make_sessionmaker(engine)
    app.state.task_sender = None  # made on first use from settings.resolved_broker_url
    app.state.counters = TenantCounters(settings.rate_limit_storage)  # rates, running chats
    install_error_handlers(app)
    routers = (
        health, metrics, admin, rollback, documents, feedback, updates, jobs, adapters, learning,
        teachers, skills, chat, usage, webhooks,
    )  # fmt: skip
    for module in (*routers, dashboard):
        app.include_router(module.router)
    app.add_middleware(AuditMiddleware)  # inside the edge: what it lets through is recorded
    app.add_middleware(EdgeMiddleware)  # inside the metrics: its refusals are counted
    app.add_middleware(MetricsMiddleware)
    return app
