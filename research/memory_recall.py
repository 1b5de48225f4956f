"""Hybrid memory's retrieval, measured: ``python -m research.memory_recall``.

One tenant holds the first ``--documents`` passages of a SQuAD file (200 of ``report.json``:
the real shape, many passages of the same articles), each sent as ``POST /v1/documents``
stores it (``service.domain.documents.add_document``, which indexes it). Every real question of
those passages is then looked up as a chat's last user message is (``Topic: <title>\\n<question>``,
``service.domain.memory.recall``, ``SEAL_MEMORY_CHUNKS`` chunks): the question counts as found
when a chunk of its own passage is among them. Prints the share found with a 95% cluster
bootstrap over passages, and the lookup's latency, for each store given (``--database-url``,
repeatable; default: a fresh embedded SQLite file).

What the prompt finally holds may be fewer chunks when the context is short
(``service.domain.prompts.with_memory`` cuts to the budget); with the bundled model's 8,192
tokens, three chunks of about 200 words always fit.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete

from migrations import upgrade
from research.data import load_passages
from seal import stats
from service.domain import documents as document_domain
from service.domain import memory
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.models import Tenant
from service.store.repositories import tenants as tenant_repo

TENANT = "memory-recall-bench"


def measure(url: str, data: Path, documents: int, chunks: int, topic: bool = True) -> str:
    """Index the passages in a tenant of the store at ``url``, look every question up; the
    report's line (the tenant is deleted at the end)."""
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine, write=True)
    passages = load_passages(data)[:documents]
    try:
        with session_scope(sessions) as session:
            session.execute(delete(Tenant).where(Tenant.name == TENANT))
            tenant = tenant_repo.create_tenant(session, name=TENANT)
            ids = [
                document_domain.add_document(
                    session, tenant, title=p.title, text=p.text, questions=[]
                ).document.id
                for p in passages
            ]
            tenant_id = tenant.id
        found: list[list[bool]] = []
        seconds: list[float] = []
        with session_scope(sessions) as session:
            for doc_id, passage in zip(ids, passages, strict=True):
                row = []
                for qa in passage.questions:
                    question = f"Topic: {passage.title}\n{qa.question}" if topic else qa.question
                    started = time.perf_counter()
                    recalled = memory.recall(
                        session, tenant_id=tenant_id, question=question, limit=chunks
                    )
                    seconds.append(time.perf_counter() - started)
                    row.append(any(h.document_id == doc_id for h in recalled))
                found.append(row)
        with session_scope(sessions) as session:
            session.execute(delete(Tenant).where(Tenant.name == TENANT))
    finally:
        engine.dispose()
    total = sum(len(r) for r in found)
    rights, sizes = [sum(r) for r in found], [len(r) for r in found]
    found_share, lo, hi = stats.share(rights, sizes, random.Random(0))
    backend = url.split(":", 1)[0]
    return (
        f"| {backend} | {len(passages)} | {total} | {found_share:.1%} | "
        f"{lo:.1%} to {hi:.1%} | {statistics.median(seconds) * 1000:.1f} ms | "
        f"{sorted(seconds)[int(0.95 * (len(seconds) - 1))] * 1000:.1f} ms |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a SQuAD file of ../shared/data/squad")
    parser.add_argument("--documents", type=int, action="append", help="default: 20 and 200")
    parser.add_argument("--database-url", action="append", help="default: embedded SQLite")
    parser.add_argument(
        "--no-topic", action="store_true", help="ask the question alone, without its title"
    )
    args = parser.parse_args()
    chunks = Settings().memory_chunks
    print(f"found: a chunk of the question's own passage among the {chunks} recalled")
    print("| store | documents | questions | found | 95% CI | median lookup | p95 lookup |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        urls = args.database_url or [f"sqlite:///{folder}/memory.db"]
        for url in urls:
            for n in args.documents or [20, 200]:
                print(measure(url, args.data, n, chunks, not args.no_topic), flush=True)


if __name__ == "__main__":
    main()
