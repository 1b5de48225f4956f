"""Documents sent without questions, through the product: are they learned, and can the gate
be trusted?

For each passage of a SQuAD-shaped file, a fresh tenant of each format asked for (the
service's default format, and ``passage``, the document alone) adds the passage *without its
questions*, as most documents come, and runs one ``select`` update with the service's own
job code and settings: the probe questions it writes (teacher, then cloze), its candidates,
its promotion gate. Then the passage's real questions (which the service never saw) are
asked without the passage, as the gate and a chat ask them (the grader's system prompt and
``Topic:`` line), of the base model and of the version the update made, promoted or not.

A version *improved* when it answers more of the real questions than the base model. The gate
is right when it promoted an improved version or rejected one that did not improve. The tenant
*serves* the promoted version, else the base model; the served models of two formats are
compared question by question with the exact McNemar test.

    .venv/bin/python research/scripts/learn_without_questions.py --start 0 --passages 30 \\
        --out var/eval/unprobed-0-29.json

``--resume`` continues a run stopped midway from its last finished passage (the file of
``--out``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from migrations import upgrade
from research.proxy import answer_logprobs
from research.results import mcnemar_exact, wilson_interval
from seal.grading import Probe
from seal.lora import STUDENT, AdapterHost, AdapterState, load_adapter
from seal.multi import evaluate_many
from seal.selfedit import QA
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.models import AdapterVersion, Document, Job
from service.store.repositories import documents as document_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import tenants as tenant_repo
from worker.jobs.update import run_update
from worker.runtime import Runtime

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "squad" / "dev.json"
DEFAULT = "default"


def main() -> None:
    args = _arguments()

    data = json.loads(args.data.read_text())
    indices = list(range(args.start, min(args.start + args.passages, len(data))))
    done: list[dict[str, Any]] = []
    if args.resume and args.out.exists():
        done = json.loads(args.out.read_text())["passages"]
    finished = {d["index"] for d in done}

    with tempfile.TemporaryDirectory(prefix="seal-unprobed-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        upgrade(settings.resolved_database_url)
        runtime = Runtime(
            settings=settings,
            sessions=make_sessionmaker(make_engine(settings.resolved_database_url), write=True),
        )
        for index in indices:
            if index in finished:
                continue
            record = _passage_record(runtime, data[index], index, args)
            done.append(record)
            _write(args, done)
            _print_passage(record, args.formats)
    _report(done, args.formats)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DATA)
    parser.add_argument("--start", type=int, default=0, help="first passage (0-based)")
    parser.add_argument("--passages", type=int, default=30, help="passages from --start")
    parser.add_argument(
        "--formats",
        nargs="+",
        default=[DEFAULT, "passage"],
        help=f"tenant formats ({DEFAULT!r}: the service's default)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="every answer and grade (JSON)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    return parser.parse_args()


def _passage_record(
    runtime: Runtime, passage: dict[str, Any], index: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One passage learned by a tenant of each format, then its real questions asked of the
    base model and of every version in the same batches."""

    real = [Probe(passage["title"], QA(q["question"], q["answer"])) for q in passage["questions"]]
    record: dict[str, Any] = {
        "index": index,
        "title": passage["title"],
        "questions": len(real),
        "formats": {},
    }
    states: list[AdapterState | None] = [None]
    for fmt in args.formats:
        entry, state = _learn_unprobed(runtime, passage, index, fmt, args.seed)
        record["formats"][fmt] = entry
        states.append(state)
    # the base model and every version on the real questions, in the same batches
    host = runtime.student
    max_tokens = runtime.settings.answer_max_tokens
    graded = evaluate_many(host, states, real, max_tokens, slot=STUDENT)
    record["base"] = [g.correct for g in graded[0].graded]
    record["base_logprob"] = answer_logprobs(host, [((), p) for p in real])
    for fmt, evaluation, state in zip(args.formats, graded[1:], states[1:], strict=True):
        entry = record["formats"][fmt]
        entry["version_correct"] = (
            [g.correct for g in evaluation.graded] if state is not None else None
        )
        entry["answers"] = [g.answer for g in evaluation.graded]
        if state is not None:
            _gate_view(host, entry, passage["title"], real, state, max_tokens)
    return record


def _learn_unprobed(
    runtime: Runtime, passage: dict[str, Any], index: int, fmt: str, seed: int
) -> tuple[dict[str, Any], AdapterState | None]:
    """A fresh tenant of format ``fmt`` adds the passage without its questions and runs one
    update: what the job, the document and the probes it wrote show, and the version it made
    (None when it made none), promoted or not."""
    from sqlalchemy import select

    with session_scope(runtime.sessions) as session:
        tenant = tenant_repo.create_tenant(
            session, name=f"{fmt}-{index}", self_edit_format=None if fmt == DEFAULT else fmt
        )
        doc = document_repo.create_document(
            session, tenant_id=tenant.id, title=passage["title"], text=passage["context"]
        )
        job, _ = job_repo.create_update_job(
            session, tenant_id=tenant.id, params={"seed": seed + index}
        )
        tenant_id, doc_id, job_id = tenant.id, doc.id, job.id
    started = time.perf_counter()
    run_update(runtime, job_id)
    seconds = time.perf_counter() - started
    with session_scope(runtime.sessions) as session:
        job_row = session.get(Job, job_id)
        doc_row = session.get(Document, doc_id)
        assert job_row is not None and doc_row is not None
        probes = document_repo.probe_questions_for_documents(session, document_ids=[doc_id])[doc_id]
        version = session.scalars(
            select(AdapterVersion).where(AdapterVersion.tenant_id == tenant_id)
        ).first()
        state = (
            load_adapter(Path(version.artifact_uri), expected_checksum=version.checksum)
            if version is not None and version.artifact_uri
            else None
        )
        result = dict(job_row.result or {})
        entry = {
            "job_status": job_row.status,
            "job_message": job_row.message,
            "error": job_row.error,
            "document_status": doc_row.status,
            "document_error": doc_row.error,
            "promoted": bool(result.get("promoted")),
            "version": version is not None,
            "metrics": result.get("metrics"),
            "probes": [
                {"question": p.question, "answer": p.answer, "source": p.source} for p in probes
            ],
            "seconds": round(seconds, 1),
        }
    return entry, state


def _gate_view(
    host: AdapterHost,
    entry: dict[str, Any],
    title: str,
    real: list[Probe],
    state: AdapterState,
    max_tokens: int,
) -> None:
    """What a gate could see, added to a format's ``entry``: its probes, greedy and as the
    gold answers' log-likelihood, before and after; and the real questions' log-likelihood
    after. Nothing when the update wrote no probes."""

    gate_probes = [Probe(title, QA(q["question"], q["answer"])) for q in entry["probes"]]
    if not gate_probes:
        return
    before, after = evaluate_many(host, [None, state], gate_probes, max_tokens, slot=STUDENT)
    entry["probe_before"] = [g.correct for g in before.graded]
    entry["probe_after"] = [g.correct for g in after.graded]
    entry["probe_answers"] = [g.answer for g in after.graded]
    entry["probe_logprob_before"] = answer_logprobs(host, [((), p) for p in gate_probes])
    entry["probe_logprob_after"] = answer_logprobs(
        host, [((), p) for p in gate_probes], slot=STUDENT, state=state
    )
    entry["version_logprob"] = answer_logprobs(
        host, [((), p) for p in real], slot=STUDENT, state=state
    )


def _write(args: argparse.Namespace, done: list[dict[str, Any]]) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"data": str(args.data), "start": args.start, "passages": args.passages}
    payload = {"settings": {**settings, "formats": args.formats, "seed": args.seed}}
    args.out.write_text(json.dumps({**payload, "passages": done}, indent=1, default=str))


def _print_passage(record: dict[str, Any], formats: list[str]) -> None:
    cells = []
    for fmt in formats:
        entry = record["formats"][fmt]
        after = entry["version_correct"]
        sources = [p["source"] for p in entry["probes"]]
        cells.append(
            f"{fmt}: {len(sources)} probes ({sources.count('teacher')} teacher), "
            f"{'promoted' if entry['promoted'] else 'rejected'}, "
            f"real {sum(record['base'])}->{sum(after) if after is not None else '-'}"
            f"/{record['questions']} ({entry['seconds']} s)"
        )
    print(f"{record['index']:>3} {record['title'][:28]:<28} " + "; ".join(cells), flush=True)


def summarize(done: list[dict[str, Any]], formats: list[str]) -> dict[str, Any]:
    """The figures of a run: per format the probes, the gate's confusion matrix against the
    real questions, and the served models question by question against the base model."""

    base = [c for d in done for c in d["base"]]
    out: dict[str, Any] = {"passages": len(done), "questions": len(base), "formats": {}}
    served: dict[str, list[bool]] = {}
    for fmt in formats:
        entries = [(d, d["formats"][fmt]) for d in done]
        matrix = {"promoted_improved": 0, "promoted_not": 0, "rejected_improved": 0}
        matrix["rejected_not"] = 0
        improved_count = 0
        rows: list[bool] = []
        for d, e in entries:
            after = e["version_correct"]
            improved = after is not None and sum(after) > sum(d["base"])
            improved_count += improved
            key = ("promoted_" if e["promoted"] else "rejected_") + (
                "improved" if improved else "not"
            )
            matrix[key] += 1
            rows.extend(after if e["promoted"] and after is not None else d["base"])
        served[fmt] = rows
        n = len(entries)
        probes = [len(e["probes"]) for _, e in entries]
        sources: dict[str, int] = {}
        for _, e in entries:
            for p in e["probes"]:
                sources[p["source"]] = sources.get(p["source"], 0) + 1
        right = sum(rows)
        agreement = (matrix["promoted_improved"] + matrix["rejected_not"]) / n if n else 0.0
        only_base = sum(1 for b, s in zip(base, rows, strict=True) if b and not s)
        only_served = sum(1 for b, s in zip(base, rows, strict=True) if s and not b)
        out["formats"][fmt] = {
            "with_3_probes": sum(p >= 3 for p in probes),
            "probe_sources": sources,
            "promoted": sum(e["promoted"] for _, e in entries),
            "improved": improved_count,
            "confusion": matrix,
            "agreement": agreement,
            "always_promote": improved_count / n if n else 0.0,
            "always_reject": (n - improved_count) / n if n else 0.0,
            "served_correct": right,
            "served_interval": wilson_interval(right, len(rows)),
            "versus_base": {
                "only_base": only_base,
                "only_served": only_served,
                "p": mcnemar_exact(only_base, only_served),
            },
            "seconds_per_update": sum(e["seconds"] for _, e in entries) / n if n else 0.0,
        }
    for i, first in enumerate(formats):
        for second in formats[i + 1 :]:
            a, b = served[first], served[second]
            only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
            only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
            out[f"{first}_vs_{second}"] = {
                f"only_{first}": only_a,
                f"only_{second}": only_b,
                "p": mcnemar_exact(only_a, only_b),
            }
    out["base_correct"] = sum(base)
    return out


def _report(done: list[dict[str, Any]], formats: list[str]) -> None:
    summary = summarize(done, formats)
    n, q = summary["passages"], summary["questions"]
    print(f"\n{n} passages, {q} real questions; base model {summary['base_correct']}/{q}")
    for fmt, f in summary["formats"].items():
        m = f["confusion"]
        lo, hi = f["served_interval"]
        vs = f["versus_base"]
        print(
            f"\n[{fmt}] {f['with_3_probes']}/{n} documents with >= 3 probes {f['probe_sources']}; "
            f"promoted {f['promoted']}/{n}; improved on the real questions {f['improved']}/{n}\n"
            f"  gate vs reality: promoted & improved {m['promoted_improved']}, promoted & not "
            f"{m['promoted_not']}, rejected & improved {m['rejected_improved']}, rejected & not "
            f"{m['rejected_not']}\n"
            f"  agreement {f['agreement']:.1%} (always promote {f['always_promote']:.1%}, "
            f"always reject {f['always_reject']:.1%})\n"
            f"  served model: {f['served_correct']}/{q} real questions right "
            f"({lo:.1%} - {hi:.1%}); only base {vs['only_base']}, only served "
            f"{vs['only_served']}, McNemar p = {vs['p']:.4f}; {f['seconds_per_update']:.0f} s "
            "per update"
        )
    for key, value in summary.items():
        if "_vs_" in key:
            print(f"\n{key}: {value}")


if __name__ == "__main__":
    main()
