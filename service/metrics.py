"""Prometheus metrics, served at ``GET /metrics`` (the standard client's text format).

Two kinds. What an API process observes (HTTP requests and their latency, chat tokens and
decoding time, time to first token, the chat engine's batch sizes, the adapter cache) lives in
the client's registry; with several API processes (``SEAL_API_WORKERS`` > 1) ``seal process
api`` gives them one ``PROMETHEUS_MULTIPROC_DIR`` and a scrape adds up every process's files
(the client's multiprocess mode). What the store knows (jobs by kind and status, their
durations, the queue, adapter versions by the gate's outcome) is read from it at each scrape,
so it is right whichever process (an API, a worker on another machine) did the work.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.store.models import AdapterVersion, Job, JobStatus, SkillVersion, VersionStatus

__all__ = ["CONTENT_TYPE_LATEST", "MetricsMiddleware", "exposition"]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter(
    "seal_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "seal_http_request_duration_seconds",
    "From a request's arrival to the end of its response body (a stream's last event).",
    ["method", "route"],
    buckets=_LATENCY,
)
CHAT_TOKENS = Counter(
    "seal_chat_completion_tokens",
    "Tokens written by chat completions; with seal_chat_decode_seconds, tokens per second.",
    ["model"],
)
CHAT_DECODE_SECONDS = Counter(
    "seal_chat_decode_seconds",
    "Seconds spent writing chat completions, from the backend call to the last token.",
    ["model"],
)
CHAT_FIRST_TOKEN = Histogram(
    "seal_chat_time_to_first_token_seconds",
    "Streamed chat completions: from the backend call to the first piece of text.",
    ["model"],
    buckets=_LATENCY,
)
CHAT_BATCH = Histogram(
    "seal_chat_batch_size",
    "Requests the chat engine decoded together, per generation.",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
ADAPTER_CACHE = Counter(
    "seal_adapter_cache_requests",
    "Chat requests for a tenant adapter, by whether its weights were loaded already.",
    ["result"],
)
ADAPTER_LOAD = Histogram(
    "seal_adapter_load_seconds",
    "Loading an adapter's weights into the chat engine's cache (a cache miss).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def chat_model(adapter: bool) -> str:
    """The ``model`` label of chat metrics: a tenant adapter or the base model (never a
    tenant's name: the label stays bounded)."""
    return "adapter" if adapter else "base"


def observe_adapter(hit: bool, seconds: float) -> None:
    """The chat engine's report of one adapter lookup (``seal.serving.ChatEngine``)."""
    ADAPTER_CACHE.labels("hit" if hit else "miss").inc()
    if not hit:
        ADAPTER_LOAD.observe(seconds)


def observe_batch(size: int) -> None:
    CHAT_BATCH.observe(size)


class MetricsMiddleware:
    """Counts every HTTP request by its route *template* (``/v1/jobs/{job_id}``, not the id:
    the label stays bounded; ``unmatched`` for a path no route has) and times it to the end
    of its body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)


class StoreCollector(Collector):
    """Jobs, the queue, adapter and skill versions as the store has them at the scrape."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def collect(self) -> Iterator[Metric]:
        session = self.session
        jobs = GaugeMetricFamily(
            "seal_jobs", "Jobs in the store by kind and status.", labels=["kind", "status"]
        )
        for kind, status, count in session.execute(
            select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
        ):
            jobs.add_metric([str(kind), str(status)], count)
        yield jobs

        queued = session.scalar(select(func.count()).where(Job.status == JobStatus.queued))
        yield GaugeMetricFamily(
            "seal_queue_depth", "Jobs queued and not yet started by a worker.", value=queued or 0
        )

        durations = SummaryMetricFamily(
            "seal_job_duration_seconds",
            "Finished jobs, from their start to their end, by kind and status.",
            labels=["kind", "status"],
        )
        for kind, status, count, seconds in session.execute(
            select(Job.kind, Job.status, func.count(), func.sum(_seconds(session)))
            .where(Job.started_at.is_not(None), Job.finished_at.is_not(None))
            .group_by(Job.kind, Job.status)
        ):
            durations.add_metric([str(kind), str(status)], count, float(seconds or 0.0))
        yield durations

        yield _by_status(
            session,
            AdapterVersion.status,
            "seal_adapter_versions",
            "Adapter versions by status: the promotion gate's outcomes (active and retired "
            "versions were promoted, rejected ones were not; candidates are being decided).",
        )
        yield _by_status(
            session,
            SkillVersion.status,
            "seal_skill_versions",
            "Skill versions by status: the held-out gate's outcomes, as for adapter versions.",
        )


def _by_status(
    session: Session, status: InstrumentedAttribute[VersionStatus], name: str, documentation: str
) -> Metric:
    """A gauge of a versioned artifact's rows by their ``status`` column."""
    gauge = GaugeMetricFamily(name, documentation, labels=["status"])
    for value, count in session.execute(select(status, func.count()).group_by(status)):
        gauge.add_metric([str(value)], count)
    return gauge


def _seconds(session: Session):  # type: ignore[no-untyped-def]
    """A job's duration in seconds, in the store's SQL dialect."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0
    return func.extract("epoch", Job.finished_at - Job.started_at)


def _process_registry() -> CollectorRegistry:
    """This process's metrics, or every API process's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition(session: Session) -> bytes:
    """The text a scrape gets: the processes' metrics, then the store's."""
    store = CollectorRegistry(auto_describe=False)
    store.register(StoreCollector(session))
    return generate_latest(_process_registry()) + generate_latest(store)
