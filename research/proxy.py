"""A cheap reward: rank self-edits without training an adapter for each.

The full reward trains a LoRA adapter per self-edit and grades it, which is most of SEAL's cost.
The proxy asks instead how much the self-edit *would* tell the student: the student reads the
self-edit's items in its context and the proxy is the gain in log-likelihood it gives each
probe's gold answer, against the same question asked with no context, averaged over the probes
(nats per answer token). One batched forward pass per document, no backward, no decoding.

Agreement with the full reward is measured by ``seal eval proxy`` (Spearman rank correlation
and how often the proxy's pick is a best candidate).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from seal.grading import Probe
from seal.knowledge import (
    InnerLoopConfig,
    Teacher,
    evaluate_state,
    probes_of,
    score_candidates,
    write_self_edits,
)
from seal.lora import AdapterHost, AdapterState
from seal.questions import SYSTEM
from seal.selfedit import Passage


def _context_messages(notes: Sequence[str], probe: Probe) -> list[dict[str, str]]:
    system = SYSTEM
    if notes:
        system = f"{SYSTEM}\n\nNotes:\n" + "\n".join(f"- {n}" for n in notes)
    title = probe.title
    question = f"Topic: {title}\n{probe.qa.question}" if title else probe.qa.question
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


@torch.inference_mode()
def answer_logprobs(
    host: AdapterHost,
    requests: Sequence[tuple[Sequence[str], Probe]],
    *,
    slot: str | None = None,
    state: AdapterState | None = None,
    batch_size: int = 16,
) -> list[float]:
    """Mean log-probability per token of each probe's gold answer, given the notes (if any)
    in the system prompt; with the adapter ``state`` in ``slot`` or the bare base model."""
    tok = host.tokenizer
    rows: list[tuple[list[int], int]] = []
    for notes, probe in requests:
        prompt = str(
            tok.apply_chat_template(
                _context_messages(notes, probe), add_generation_prompt=True, tokenize=False
            )
        )
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        answer = tok(probe.qa.answer, add_special_tokens=False)["input_ids"]
        rows.append((ids + answer, len(ids)))
    out: list[float] = []
    with host.use(slot, state) as model:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, (ids, _) in enumerate(chunk):
                input_ids[r, : len(ids)] = torch.tensor(ids)
                mask[r, : len(ids)] = 1
            logits = model(
                input_ids=input_ids.to(host.device), attention_mask=mask.to(host.device)
            ).logits.float()
            logprobs = F.log_softmax(logits[:, :-1], dim=-1)
            for r, (ids, answer_from) in enumerate(chunk):
                targets = torch.tensor(ids[answer_from:], device=host.device)
                picked = logprobs[r, answer_from - 1 : len(ids) - 1].gather(1, targets.unsqueeze(1))
                out.append(float(picked.mean()) if len(targets) else 0.0)
    return out


def proxy_rewards(
    host: AdapterHost,
    item_sets: Sequence[Sequence[str]],
    probes: Sequence[Probe],
    *,
    slot: str | None = None,
    state: AdapterState | None = None,
) -> list[float]:
    """One proxy reward per candidate (its training items): the mean gain in gold-answer
    log-likelihood the items give in context. Higher is better; 0 when there are no probes."""
    if not probes:
        return [0.0 for _ in item_sets]
    requests: list[tuple[Sequence[str], Probe]] = [((), p) for p in probes]
    requests += [(tuple(items), p) for items in item_sets for p in probes]
    scores = answer_logprobs(host, requests, slot=slot, state=state)
    q = len(probes)
    bare = scores[:q]
    rewards = []
    for c in range(len(item_sets)):
        own = scores[q + c * q : q + (c + 1) * q]
        rewards.append(sum(o - b for o, b in zip(own, bare, strict=True)) / q)
    return rewards


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            ranks[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson on average ranks); None when either side is
    constant or there are fewer than two pairs."""
    if len(a) != len(b):
        raise ValueError("spearman needs two sequences of the same length")
    if len(a) < 2:
        return None
    ra, rb = average_ranks(a), average_ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    if va == 0 or vb == 0:
        return None
    return cov / (va * vb) ** 0.5


@dataclass
class ProxyAgreement:
    """How the proxy's ranking agrees with the full reward's over a set of documents."""

    pooled_spearman: float | None
    """Over every candidate of every document."""
    mean_spearman: float | None
    """Mean of the per-document correlations (documents whose full rewards all tie skipped)."""
    documents_ranked: int
    top_pick_is_best: float
    """Share of documents where the proxy's pick has the highest full reward."""
    pick_reward: float
    """Mean full reward of the proxy's pick."""
    best_reward: float
    """Mean full reward of the best candidate (what the full inner loop picks)."""
    mean_reward: float
    """Mean full reward of all candidates (what a random pick gets)."""


def agreement(full: Sequence[Sequence[float]], proxy: Sequence[Sequence[float]]) -> ProxyAgreement:
    per_doc = [spearman(f, p) for f, p in zip(full, proxy, strict=True)]
    ranked = [r for r in per_doc if r is not None]
    flat_full = [x for f in full for x in f]
    flat_proxy = [x for p in proxy for x in p]
    picks = [max(range(len(p)), key=lambda i: p[i]) for p in proxy]
    docs = len(full) or 1
    return ProxyAgreement(
        pooled_spearman=spearman(flat_full, flat_proxy),
        mean_spearman=sum(ranked) / len(ranked) if ranked else None,
        documents_ranked=len(ranked),
        top_pick_is_best=sum(f[i] == max(f) for f, i in zip(full, picks, strict=True)) / docs,
        pick_reward=sum(f[i] for f, i in zip(full, picks, strict=True)) / docs,
        best_reward=sum(max(f) for f in full) / docs,
        mean_reward=sum(sum(f) / len(f) for f in full) / docs,
    )


@dataclass
class ProxyRecord:
    """One document of a proxy-vs-full comparison."""

    title: str
    texts: list[str]
    full: list[float]
    proxy: list[float]
    full_seconds: float
    """Training and grading the k candidates (the full inner loop, batched)."""
    proxy_seconds: float


def compare_on(
    host: AdapterHost,
    passages: Sequence[Passage],
    config: InnerLoopConfig,
    *,
    teacher: Teacher | None = None,
    on_record: Callable[[ProxyRecord], None] | None = None,
) -> list[ProxyRecord]:
    """For each passage: k self-edits, their full rewards (the inner loop) and their proxy
    rewards, with the time each took."""
    teacher = teacher or Teacher()
    records = []
    for passage in passages:
        probes = probes_of(passage)
        texts = write_self_edits(
            host, passage, config.format, config.num_candidates, config.sample, teacher
        )
        started = time.perf_counter()
        baseline = evaluate_state(host, None, probes, config.answer_max_tokens)
        candidates = score_candidates(host, passage, texts, config, init=None, baseline=baseline)
        full_seconds = time.perf_counter() - started
        started = time.perf_counter()
        proxy = proxy_rewards(
            host, [[f"{passage.title}\n{item}" for item in c.items] for c in candidates], probes
        )
        record = ProxyRecord(
            title=passage.title,
            texts=list(texts),
            full=[c.reward for c in candidates],
            proxy=proxy,
            full_seconds=full_seconds,
            proxy_seconds=time.perf_counter() - started,
        )
        records.append(record)
        if on_record:
            on_record(record)
    return records


def proxy_summary(
    records: Sequence[ProxyRecord], *, data: str, k: int, seed: int, fmt: str, total: int
) -> dict[str, Any]:
    """The JSON of a comparison, whole or cut short (``complete`` says which)."""
    result = agreement([r.full for r in records], [r.proxy for r in records])
    return {
        "data": data,
        "k": k,
        "seed": seed,
        "format": fmt,
        "passages": len(records),
        "complete": len(records) == total,
        "agreement": asdict(result),
        "full_seconds": sum(r.full_seconds for r in records),
        "proxy_seconds": sum(r.proxy_seconds for r in records),
        "records": [asdict(r) for r in records],
    }


def proxy_table(records: Sequence[ProxyRecord], *, k: int, fmt: str) -> str:
    """What ``seal eval proxy`` prints at the end."""
    result = agreement([r.full for r in records], [r.proxy for r in records])
    full_s = sum(r.full_seconds for r in records)
    proxy_s = sum(r.proxy_seconds for r in records)

    def signed(x: float | None) -> str:
        return "n/a (no ranking)" if x is None else f"{x:+.3f}"

    return (
        f"proxy vs full reward on {len(records)} passages x k={k} ({fmt}):\n"
        f"  Spearman, all candidates pooled:   {signed(result.pooled_spearman)}\n"
        f"  Spearman, mean per passage:        {signed(result.mean_spearman)} "
        f"({result.documents_ranked} passages whose full rewards are not all tied)\n"
        f"  proxy's pick is a best candidate:  {result.top_pick_is_best:.0%}\n"
        f"  mean full reward: proxy's pick {result.pick_reward:+.3f}, best "
        f"{result.best_reward:+.3f}, all candidates {result.mean_reward:+.3f}\n"
        f"  time: full reward {full_s:.1f} s, proxy {proxy_s:.1f} s "
        f"({full_s / max(proxy_s, 1e-9):.0f}x less)"
    )
