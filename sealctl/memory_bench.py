"""``seal bench memory``: hybrid memory measured through the API, as a user meets it.

The service runs as ``seal run`` runs it (an API, a worker and the beat on the embedded store,
or the servers named). Tenants hold the first passages of a SQuAD file, sent as documents
without their questions; every real question of them is asked through chat
(``Topic: <title>\\n<question>``, greedy, ``--max-tokens``) by ``--clients`` concurrent
clients, and graded right when its gold answer is contained in the reply (the first sentence
of the reply too, the harness's stricter grader, beside it). The arms:

- ``base``: the base model, no document (``model: "base"``);
- ``ceiling``: the base model with the question's own passage alone in its prompt (the
  open-book prompt hybrid memory builds, sent as the system message);
- ``hybrid@N``: the tenant holding N documents, before any update (``memory: "hybrid"``);
- ``weights@B`` and ``hybrid@B+update``: the tenant holding the first B, after one update of
  all its documents at the defaults (a nightly batch), closed book and with its memory.

Plus the time from ``POST /v1/documents`` to the first right answer (``hybrid``, each of the
first ``--first`` documents of a fresh tenant), and chat latency and tokens/s with ``hybrid``
against ``weights`` at 1 and ``--clients`` clients. Everything asked is journalled
(``--journal``) with the data folder's tenants, so that ``--resume`` continues a stopped run
(the update included: the worker resumes its job); intervals are 95% cluster bootstraps over
passages (:mod:`seal.stats`)."""

from __future__ import annotations

import math
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from seal import stats
from seal.grading import contained, is_correct
from seal.journal import Journal
from seal.questions import open_book_messages
from seal.selfedit import Passage
from sealctl.stack import Stack, create_tenant, finished, running_stack, wait_job

#: The model name a tenant's own adapter answers to (any name but ``base`` and ``skill:``).
OWN = "own"


@dataclass(frozen=True)
class Ask:
    """One chat of the run: ``arm``, passage ``p``'s question ``q``."""

    arm: str
    p: int
    q: int
    key: str
    body: dict[str, Any]


@dataclass
class Plan:
    passages: list[Passage]
    documents: int
    sizes: list[int]
    batch: int
    clients: int
    max_tokens: int
    first: int
    latency: int
    #: Questions are asked of the first ``ask`` passages of each tenant (all the documents
    #: stay in it: retrieval still searches them all).
    ask: int = 10**9
    #: Whether the arms that do not use the memory (``base``, ``ceiling``) are asked too.
    baselines: bool = True


class Run:
    """A run's journal and its stack: what is done, and doing the rest."""

    def __init__(self, plan: Plan, journal: Journal, stack: Stack, say: Callable[[str], None]):
        self.plan = plan
        self.journal = journal
        self.stack = stack
        self.say = say
        self.lock = threading.Lock()
        self.tenants: dict[str, dict[str, Any]] = {}
        self.asked: dict[tuple[str, int, int], dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        for entry in journal.entries:
            self._note(entry)

    def _note(self, entry: dict[str, Any]) -> None:
        kind = entry.get("kind")
        if kind == "tenant":
            self.tenants[entry["name"]] = entry
        elif kind == "ask":
            self.asked[entry["arm"], entry["p"], entry["q"]] = entry
        else:
            self.events[entry["name"]] = entry

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.journal.append(entry)
            self._note(entry)

    # --- tenants ------------------------------------------------------------------------------
    def tenant(self, name: str, count: int) -> dict[str, Any]:
        """The tenant ``name`` holding the first ``count`` passages (made once, journalled)."""
        if name in self.tenants:
            return self.tenants[name]
        key = create_tenant(self.stack, f"{name}-{time.time_ns()}")
        ids = [self.post(key, p) for p in self.plan.passages[:count]]
        self.record({"kind": "tenant", "name": name, "key": key, "ids": ids})
        self.say(f"tenant {name}: {count} documents")
        return self.tenants[name]

    def post(self, key: str, passage: Passage) -> str:
        r = httpx.post(
            f"{self.stack.url}/v1/documents",
            json={"title": passage.title, "text": passage.text},
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        )
        r.raise_for_status()
        return str(r.json()["id"])

    # --- chats --------------------------------------------------------------------------------
    def body(self, p: int, q: int, *, model: str, memory: str, ceiling: bool = False) -> dict:
        passage = self.plan.passages[p]
        question = passage.questions[q].question
        if ceiling:
            messages = open_book_messages([(passage.title, passage.text)], passage.title, question)
        else:
            messages = [{"role": "user", "content": f"Topic: {passage.title}\n{question}"}]
        return {
            "model": model,
            "messages": messages,
            "max_tokens": self.plan.max_tokens,
            "temperature": 0,
            "memory": memory,
        }

    def chat(self, http: httpx.Client, ask: Ask) -> dict[str, Any]:
        started = time.perf_counter()
        r = http.post(
            f"{self.stack.url}/v1/chat/completions",
            json=ask.body,
            headers={"Authorization": f"Bearer {ask.key}"},
            timeout=1800,
        )
        seconds = time.perf_counter() - started
        r.raise_for_status()
        reply = r.json()
        memory = reply.get("memory") or {}
        return {
            "reply": reply["choices"][0]["message"]["content"],
            "seconds": round(seconds, 4),
            "tokens": reply["usage"]["completion_tokens"],
            "prompt_tokens": reply["usage"]["prompt_tokens"],
            "documents": [d["id"] for d in memory.get("documents", [])],
        }

    def ask_all(self, asks: Sequence[Ask], clients: int) -> float:
        """Ask what the journal lacks with ``clients`` concurrent clients; the seconds it took."""
        todo = [a for a in asks if (a.arm, a.p, a.q) not in self.asked]
        if not todo:
            return 0.0
        self.say(f"{todo[0].arm}: {len(todo)} chats, {clients} clients")
        started = time.perf_counter()
        local = threading.local()
        done = [0]

        def one(ask: Ask) -> None:
            if not hasattr(local, "http"):
                local.http = httpx.Client()
            answer = self.chat(local.http, ask)
            self.record({"kind": "ask", "arm": ask.arm, "p": ask.p, "q": ask.q, **answer})
            with self.lock:
                done[0] += 1
                if done[0] % 50 == 0:
                    self.say(f"  {done[0]}/{len(todo)}")

        with ThreadPoolExecutor(clients) as pool:
            for future in [pool.submit(one, a) for a in todo]:
                future.result()
        return time.perf_counter() - started

    def questions(self, count: int) -> list[tuple[int, int]]:
        """Each question of the first ``count`` passages (at most ``ask``)."""
        passages = self.plan.passages[: min(count, self.plan.ask)]
        return [(p, q) for p, passage in enumerate(passages) for q in range(len(passage.questions))]

    # --- the arms -----------------------------------------------------------------------------
    def run(self) -> None:
        plan = self.plan
        big = self.tenant(f"hybrid@{plan.documents}", plan.documents)
        everything = self.questions(plan.documents)
        for size in plan.sizes:
            tenant = big if size == plan.documents else self.tenant(f"hybrid@{size}", size)
            asks = [
                Ask(
                    f"hybrid@{size}",
                    p,
                    q,
                    tenant["key"],
                    self.body(p, q, model=OWN, memory="hybrid"),
                )
                for p, q in self.questions(size)
            ]
            self.ask_all(asks, plan.clients)
        if plan.baselines:
            asks = [
                Ask(
                    "ceiling",
                    p,
                    q,
                    big["key"],
                    self.body(p, q, model="base", memory="weights", ceiling=True),
                )
                for p, q in everything
            ]
            self.ask_all(asks, plan.clients)
            asks = [
                Ask("base", p, q, big["key"], self.body(p, q, model="base", memory="weights"))
                for p, q in everything
            ]
            self.ask_all(asks, plan.clients)
        self.first_answers()
        self.latency(big["key"])
        if plan.batch:
            self.after_update()

    def first_answers(self) -> None:
        """A fresh tenant; each document posted, then its questions asked (``hybrid``, one
        client) until one is answered right: the seconds from the post to that answer."""
        if "first" in self.events or not self.plan.first:
            return
        key = create_tenant(self.stack, f"first-{time.time_ns()}")
        rows = []
        with httpx.Client() as http:
            for p, passage in enumerate(self.plan.passages[: self.plan.first]):
                started = time.perf_counter()
                self.post(key, passage)
                right = None
                for q, qa in enumerate(passage.questions):
                    body = self.body(p, q, model=OWN, memory="hybrid")
                    answer = self.chat(http, Ask("first", p, q, key, body))
                    if contained(answer["reply"], qa.answer):
                        right = {"asked": q + 1, "seconds": time.perf_counter() - started}
                        break
                rows.append(right)
        self.record({"kind": "event", "name": "first", "rows": rows})

    def latency(self, key: str) -> None:
        """The same questions with ``hybrid`` and with ``weights``, one client then many."""
        count = self.plan.latency
        if not count:
            return
        picks = self.questions(self.plan.documents)[::7][:count]
        for clients in sorted({1, self.plan.clients}):
            for memory in ("weights", "hybrid"):
                arm = f"latency-{memory}-c{clients}"
                asks = [
                    Ask(arm, p, q, key, self.body(p, q, model=OWN, memory=memory)) for p, q in picks
                ]
                seconds = self.ask_all(asks, clients)
                if seconds:
                    self.record({"kind": "event", "name": arm, "seconds": seconds})

    def after_update(self) -> None:
        """One update of every document of the tenant holding the first ``batch`` (a nightly
        batch, at the service's defaults), then its questions closed book and with memory."""
        plan = self.plan
        name = f"hybrid@{plan.batch}"
        tenant = self.tenants[name]
        if "update" not in self.events:
            key = tenant["key"]
            job_id = self.events.get("update-queued", {}).get("job")
            if job_id is None:
                r = httpx.post(
                    f"{self.stack.url}/v1/updates",
                    json={},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=60,
                )
                r.raise_for_status()
                job_id = r.json()["job_id"]
                self.record({"kind": "event", "name": "update-queued", "job": job_id})
            self.say(f"update {job_id} of {plan.batch} documents")
            job = wait_job(
                self.stack.url, key, job_id, until=finished, timeout=24 * 3600, every_s=5
            )
            self.record({"kind": "event", "name": "update", "job": job})
            if job["status"] != "succeeded":
                raise RuntimeError(f"the update {job_id} {job['status']}: {job.get('error')}")
        for arm, memory in ((f"weights@{plan.batch}", "weights"), (f"{name}+update", "hybrid")):
            asks = [
                Ask(arm, p, q, tenant["key"], self.body(p, q, model=OWN, memory=memory))
                for p, q in self.questions(plan.batch)
            ]
            self.ask_all(asks, plan.clients)


def run_memory_bench(
    plan: Plan,
    journal: Journal,
    env: dict[str, str],
    logs: Path,
    say: Callable[[str], None],
) -> None:
    with running_stack(env, logs) as stack:
        Run(plan, journal, stack, say).run()


# --- the report -------------------------------------------------------------------------------
def _rights(
    asked: dict[tuple[str, int, int], dict[str, Any]],
    plan: Plan,
    arm: str,
    count: int,
    grade: Callable[[str, str], bool] = contained,
) -> tuple[list[int], list[int]]:
    """Per passage of the first ``count``: the questions ``arm`` answered right, and asked."""
    rights, sizes = [], []
    for p, passage in enumerate(plan.passages[: min(count, plan.ask)]):
        right = size = 0
        for q, qa in enumerate(passage.questions):
            entry = asked.get((arm, p, q))
            if entry is not None:
                size += 1
                right += grade(entry["reply"], qa.answer)
        rights.append(right)
        sizes.append(size)
    return rights, sizes


def summarize(plan: Plan, entries: list[dict[str, Any]]) -> str:
    """The report's tables, from the journal's entries."""
    asked = {(e["arm"], e["p"], e["q"]): e for e in entries if e.get("kind") == "ask"}
    events = {e["name"]: e for e in entries if e.get("kind") == "event"}
    tenants = {e["name"]: e for e in entries if e.get("kind") == "tenant"}
    rng = random.Random(0)
    counts = {"base": plan.documents, "ceiling": plan.documents}
    for size in plan.sizes:
        counts[f"hybrid@{size}"] = size
    if plan.batch:
        counts[f"weights@{plan.batch}"] = plan.batch
        counts[f"hybrid@{plan.batch}+update"] = plan.batch
    lines = [
        "| arm | passages | questions | right | accuracy | 95% CI | first sentence | "
        "gold passage shown | p50 s | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, count in counts.items():
        rights, sizes = _rights(asked, plan, arm, count)
        if not sum(sizes):
            continue
        acc, lo, hi = stats.share(rights, sizes, rng)
        strict, _ = _rights(asked, plan, arm, count, is_correct)
        mine = [e for (a, _, _), e in asked.items() if a == arm]
        ids = tenants.get(arm.removesuffix("+update"), {}).get("ids")
        shown = "-"
        if ids and arm.startswith("hybrid"):
            hits = sum(ids[e["p"]] in e["documents"] for e in mine)
            shown = f"{hits / len(mine):.1%}"
        seconds = statistics.median(e["seconds"] for e in mine)
        rate = sum(e["tokens"] for e in mine) / sum(e["seconds"] for e in mine)
        lines.append(
            f"| {arm} | {sum(1 for s in sizes if s)} | {sum(sizes)} | {sum(rights)} | {acc:.1%} | "
            f"{lo:.1%} to {hi:.1%} | {sum(strict) / sum(sizes):.1%} | {shown} | {seconds:.2f} | "
            f"{rate:.1f} per client |"
        )
    lines += ["", "| comparison | value | 95% CI |", "|---|---|---|"]

    def compare(first: str, second: str, count: int) -> None:
        a, sizes = _rights(asked, plan, first, count)
        b, other = _rights(asked, plan, second, count)
        if not sum(sizes) or sizes != other:
            return
        value, lo, hi = stats.ratio(a, b, rng)
        lines.append(f"| {first} / {second} | {value:.2f}x | {lo:.2f}x to {hi:.2f}x |")

    for size in plan.sizes:
        compare(f"hybrid@{size}", "ceiling", size)
        compare(f"hybrid@{size}", "base", size)
    if plan.batch:
        b = plan.batch
        compare(f"hybrid@{b}", f"weights@{b}", b)
        compare(f"hybrid@{b}+update", f"hybrid@{b}", b)
        a, sizes = _rights(asked, plan, f"hybrid@{b}+update", b)
        c, other = _rights(asked, plan, f"hybrid@{b}", b)
        if sum(sizes) and sizes == other:
            diff, lo, hi, p = stats.paired([x - y for x, y in zip(a, c, strict=True)], sizes, rng)
            lines.append(
                f"| hybrid@{b}+update - hybrid@{b} | {diff:+.1%} (p = {p:.3f}) | "
                f"{lo:+.1%} to {hi:+.1%} |"
            )
    lines += _time_to_answer(events)
    lines += _latency(asked, events, plan)
    return "\n".join(lines)


def _time_to_answer(events: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    if "first" in events:
        rows = events["first"]["rows"]
        right = [r for r in rows if r is not None]
        if right:
            lines += [
                "",
                f"time to the first right answer with hybrid, from POST /v1/documents: "
                f"{len(right)} of {len(rows)} documents answered; median "
                f"{statistics.median(r['seconds'] for r in right):.1f} s, max "
                f"{max(r['seconds'] for r in right):.1f} s, median "
                f"{statistics.median(r['asked'] for r in right):.0f} question(s) asked",
            ]
    if "update" in events:
        job = events["update"]["job"]
        started, ended = job.get("started_at"), job.get("finished_at")
        lines.append(f"the update (weights): {job['status']}, started {started}, finished {ended}")
    return lines


def _latency(
    asked: dict[tuple[str, int, int], dict[str, Any]], events: dict[str, dict[str, Any]], plan: Plan
) -> list[str]:
    lines = ["", "| latency | chats | p50 s | p90 s | tokens/s in all | prompt tokens |"]
    lines.append("|---|---|---|---|---|---|")
    for clients in sorted({1, plan.clients}):
        for memory in ("weights", "hybrid"):
            arm = f"latency-{memory}-c{clients}"
            mine = [e for (a, _, _), e in asked.items() if a == arm]
            if not mine or arm not in events:
                continue
            seconds = sorted(e["seconds"] for e in mine)
            rate = sum(e["tokens"] for e in mine) / events[arm]["seconds"]
            prompt = statistics.mean(e["prompt_tokens"] for e in mine)
            p50 = statistics.median(seconds)
            p90 = seconds[max(0, math.ceil(0.9 * len(seconds)) - 1)]
            lines.append(
                f"| {memory}, {clients} client(s) | {len(mine)} | {p50:.2f} | "
                f"{p90:.2f} | {rate:.1f} | {prompt:.0f} |"
            )
    return lines
