"""Does deleting with ``forget=true`` make the model forget a document, and keep the others?

A tenant in a fresh embedded store learns the first N passages of a SQuAD-shaped file, a few
per update (``--per-update``, ``--mode batch`` as the nightly schedule, or ``select``), with
the service's own job code and settings (the promotion gate included: the passages of a
rejected update stay pending and are left out). Then the M oldest learned passages are
deleted and a ``rebuild`` update runs. Every learned passage's questions are
asked (without the passage, as the gate asks them) of the base model, the version active
before the deletion and the rebuilt version. A forgotten passage should fall back to the
base model's accuracy, and a kept one stay where it was.

    .venv/bin/python research/scripts/forget.py --passages 12 --per-update 4 --forget 4 \
        --out var/bench/forget.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrations import upgrade
from seal.grading import Probe
from seal.lora import STUDENT, AdapterState, load_adapter
from seal.multi import evaluate_many
from seal.selfedit import QA
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.models import DocumentStatus, Job, ProbeSource, UpdateMode
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import tenants as tenant_repo
from worker.jobs.update import run_update
from worker.runtime import Runtime

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "squad" / "dev.json"

Learned = list[tuple[str, dict[str, Any]]]
"""Learned passages, oldest first, each with its document's id."""


def main() -> None:
    args = _arguments()

    passages = json.loads(args.data.read_text())[: args.passages]
    with tempfile.TemporaryDirectory(prefix="seal-forget-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        upgrade(settings.resolved_database_url)
        runtime = Runtime(
            settings=settings,
            sessions=make_sessionmaker(make_engine(settings.resolved_database_url), write=True),
        )
        tenant = _Tenant.create(runtime)
        learned = _learn(tenant, passages, args)
        if len(learned) <= args.forget:
            raise SystemExit(f"only {len(learned)} passages were learned; nothing would be kept")

        forgotten, kept = learned[: args.forget], learned[args.forget :]
        before = tenant.active_state()
        tenant.delete([doc_id for doc_id, _ in forgotten])
        rebuild = tenant.update({"mode": UpdateMode.rebuild, "seed": args.seed})
        print(f"rebuild: {rebuild['message']} ({rebuild['seconds']} s)", flush=True)
        after = tenant.active_state()

        table = _grade(runtime, forgotten, kept, [None, before, after])
        metrics = (rebuild["result"] or {}).get("metrics", {})
        print(
            f"\n{len(forgotten)} forgotten and {len(kept)} kept passages; the rebuild trained "
            f"{metrics.get('train_tokens')} tokens in {metrics.get('train_seconds')} s "
            f"({rebuild['seconds']} s in all)"
        )
        if args.out:
            _write(args, forgotten, kept, rebuild, table)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DATA)
    parser.add_argument("--passages", type=int, default=12, help="passages learned (N)")
    parser.add_argument("--per-update", type=int, default=4, help="passages per update")
    parser.add_argument("--mode", choices=("batch", "select"), default="batch")
    parser.add_argument("--forget", type=int, default=4, help="oldest learned ones deleted (M)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write every answer and grade here (JSON)")
    return parser.parse_args()


@dataclass
class _Tenant:
    """The experiment's one tenant in its fresh store, changed through the service's own
    repositories and updated by the worker's own job code."""

    runtime: Runtime
    id: str

    @classmethod
    def create(cls, runtime: Runtime) -> _Tenant:
        with session_scope(runtime.sessions) as session:
            return cls(runtime, tenant_repo.create_tenant(session, name="forget").id)

    def add(self, passages: list[dict[str, Any]]) -> list[str]:
        """A document of each of ``passages``, its questions added as the gate's probes;
        returns the documents' ids."""

        ids = []
        with session_scope(self.runtime.sessions) as session:
            for passage in passages:
                doc = document_repo.create_document(
                    session, tenant_id=self.id, title=passage["title"], text=passage["context"]
                )
                for qa in passage["questions"]:
                    document_repo.add_probe_question(
                        session,
                        tenant_id=self.id,
                        document_id=doc.id,
                        question=qa["question"],
                        answer=qa["answer"],
                        source=ProbeSource.document,
                    )
                ids.append(doc.id)
        return ids

    def update(self, params: dict[str, Any]) -> dict[str, Any]:
        """Run an update job with ``params`` to its end: its outcome and how long it took."""

        with session_scope(self.runtime.sessions) as session:
            job, _ = job_repo.create_update_job(session, tenant_id=self.id, params=params)
            job_id = job.id
        started = time.perf_counter()
        run_update(self.runtime, job_id)
        with session_scope(self.runtime.sessions) as session:
            done = session.get(Job, job_id)
            assert done is not None
            return {
                "status": done.status,
                "message": done.message,
                "error": done.error,
                "result": done.result,
                "seconds": round(time.perf_counter() - started, 1),
            }

    def keep_if_learned(self, doc_id: str) -> bool:
        """Whether the document was learned; one that was not (its update was rejected) is
        deleted, as it is out of the experiment."""

        with session_scope(self.runtime.sessions) as session:
            status = document_repo.document_status(session, document_id=doc_id)
            if status != DocumentStatus.learned:
                document_repo.delete_document(session, tenant_id=self.id, document_id=doc_id)
        return status == DocumentStatus.learned

    def delete(self, doc_ids: list[str]) -> None:
        with session_scope(self.runtime.sessions) as session:
            for doc_id in doc_ids:
                assert document_repo.delete_document(session, tenant_id=self.id, document_id=doc_id)

    def active_state(self) -> AdapterState:
        with session_scope(self.runtime.sessions) as session:
            active = adapter_repo.active_adapter(session, tenant_id=self.id)
            assert active is not None and active.artifact_uri
            return load_adapter(Path(active.artifact_uri), expected_checksum=active.checksum)


def _learn(tenant: _Tenant, passages: list[dict[str, Any]], args: argparse.Namespace) -> Learned:
    """Learn ``passages`` ``--per-update`` at a time, one update each, and say how each update
    went. The passages of a rejected update are left out."""
    learned: Learned = []
    for start in range(0, len(passages), args.per_update):
        group = passages[start : start + args.per_update]
        ids = tenant.add(group)
        outcome = tenant.update({"mode": args.mode, "seed": args.seed + start})
        for doc_id, passage in zip(ids, group, strict=True):
            if tenant.keep_if_learned(doc_id):
                learned.append((doc_id, passage))
        titles = ", ".join(repr(p["title"]) for p in group)
        why = (outcome["result"] or {}).get("rejected_because")
        print(
            f"{titles}: {outcome['message']}{f' ({why})' if why else ''} ({outcome['seconds']} s)",
            flush=True,
        )
    return learned


def _grade(
    runtime: Runtime, forgotten: Learned, kept: Learned, states: list[AdapterState | None]
) -> dict[str, dict[str, Any]]:
    """The questions of the forgotten and the kept passages asked of each of ``states`` (the
    base model, the version before the deletion, the rebuilt one) in the same batches; prints
    the table and returns it with every answer."""

    on_forgotten = _probes(forgotten)
    every = on_forgotten + _probes(kept)
    graded = evaluate_many(
        runtime.student, states, every, runtime.settings.answer_max_tokens, slot=STUDENT
    )
    split = len(on_forgotten)
    table: dict[str, dict[str, Any]] = {}
    print(f"\n{'model':<34}{'forgotten passages':>20}{'kept passages':>16}")
    names = ("base model", "before (last version)", "rebuilt")
    for name, evaluation in zip(names, graded, strict=True):
        parts = {"forgotten": evaluation.graded[:split], "kept": evaluation.graded[split:]}
        table[name] = {
            key: {
                "correct": sum(g.correct for g in rows),
                "questions": len(rows),
                "answers": [
                    {"question": g.probe.qa.question, "answer": g.answer, "correct": g.correct}
                    for g in rows
                ],
            }
            for key, rows in parts.items()
        }
        cells = [f"{table[name][k]['correct']}/{table[name][k]['questions']}" for k in parts]
        print(f"{name:<34}{cells[0]:>20}{cells[1]:>16}")
    return table


def _probes(group: Learned) -> list[Probe]:
    return [
        Probe(p["title"], QA(q["question"], q["answer"])) for _, p in group for q in p["questions"]
    ]


def _write(
    args: argparse.Namespace,
    forgotten: Learned,
    kept: Learned,
    rebuild: dict[str, Any],
    table: dict[str, dict[str, Any]],
) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "settings": {
                    "passages": args.passages,
                    "per_update": args.per_update,
                    "mode": args.mode,
                    "forget": args.forget,
                    "seed": args.seed,
                },
                "forgotten": [p["title"] for _, p in forgotten],
                "kept": [p["title"] for _, p in kept],
                "rebuild": rebuild,
                "table": table,
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
