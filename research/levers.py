"""The teacher's levers, measured as the product runs them: ``python -m research.levers``.

For each SQuAD passage, sent as a tenant would send it (no questions), this does what a
``select`` update does from a fresh tenant: the teacher writes the probe questions the
service writes (its own, then cloze, up to ``SEAL_GENERATED_PROBE_QUESTIONS``) and k
``self-qa`` self-edits at the service's sampling settings; candidates are trained from the
base model and one is chosen per arm; the chosen adapter answers the passage's *real*
questions closed book. The arms share the passage's samples, its passage-alone adapter and
its probes, so a row costs training, not sampling:

- ``passage``: the document alone (plain fine-tuning);
- ``grounded-trim``: the self-edits checked against the document (``seal.grounding``; a
  cut-off self-edit loses only its unfinished last item) and the honest choice
  (``seal.knowledge.choose_candidate``: the passage is the incumbent, the choice is made on
  half of the probes), as the product runs it;
- ``open-book``: the same questions answered by the base model with the document in its
  prompt (``seal.openbook``), checked and chosen as ``grounded-trim``;
- ``sentences``: no teacher, the document's own sentences as items (``seal.augment``),
  chosen as ``grounded-trim``;
- ``anchored``: the ``grounded-trim`` self-edits trained on from the passage-alone adapter
  instead of the base model (``SEAL_ANCHORED_TRAINING``), chosen as ``grounded-trim``.

(The first look, docs/results/2026-12-07-teacher-levers-first-look.md, measured two more:
``old``, the self-edits as written and chosen by the old rule, and ``grounded``, cut-off
self-edits dropped whole.)

Each arm's gate decision (its chosen version against the base model, on the probes that did not
choose it) is recorded beside whether the real questions agree. One
JSON line per passage in the journal, which ``--resume`` continues; ``--summary`` prints the
table with each arm against ``passage``: the difference in accuracy, a 95% cluster-bootstrap
interval over passages, and a paired sign-flip permutation test over passages.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from research.data import load_passages
from seal import stats
from seal.augment import SENTENCES, sentence_drafts
from seal.grading import Probe
from seal.grounding import ground_drafts
from seal.journal import Journal
from seal.knowledge import (
    Candidate,
    InnerLoopConfig,
    Teacher,
    choose_candidate,
    split_probes,
    write_drafts_many,
    write_probe_questions_many,
)
from seal.lora import AdapterHost, load_adapter
from seal.multi import evaluate_many, train_many
from seal.openbook import answer_open_book
from seal.probes import with_cloze
from seal.selfedit import QA, ChatTurn, Passage, training_sequences
from service.settings import Settings
from worker.bundled import BUNDLED_TEACHER_DIR
from worker.config import inner_loop_config
from worker.runtime import student_host

ARMS = ("passage", "grounded-trim", "open-book", "sentences", "anchored")
#: The format each arm's items are parsed as.
FORMAT = {
    "grounded-trim": "self-qa",
    "open-book": "self-qa",
    "sentences": SENTENCES,
    "anchored": "self-qa",
}


def run_passage(
    host: AdapterHost,
    teacher: Teacher,
    config: InnerLoopConfig,
    settings: Settings,
    passage: Passage,
    real: list[QA],
    seed: int,
) -> dict[str, Any]:
    """One passage through every arm; what the journal keeps of it."""
    started = time.perf_counter()
    sample = replace(config.sample, seed=seed)
    written = write_probe_questions_many(
        host, [passage], settings.generated_probe_questions, teacher, seed=seed
    )[0]
    probes = with_cloze(passage.title, passage.text, written, settings.generated_probe_questions)
    drafts = write_drafts_many(host, [passage], "self-qa", config.num_candidates, sample, teacher)[
        0
    ]
    open_drafts = answer_open_book(host, [passage], [drafts], config.answer_max_tokens)[0]
    own = sentence_drafts(passage, config.num_candidates, seed)
    probed = Passage(passage.title, passage.text, tuple(probes))
    grounded = {
        "grounded-trim": ground_drafts(drafts, "self-qa", probed, on_truncated="trim"),
        "open-book": ground_drafts(open_drafts, "open-book", probed, on_truncated="drop"),
        "sentences": ground_drafts(own, SENTENCES, probed),
    }
    sets = {arm: g.texts for arm, g in grounded.items()}
    sets["anchored"] = sets["grounded-trim"]
    texts = [(arm, t) for arm, ts in sets.items() for t in ts]

    def sequences(arm: str, text: str) -> list[str | ChatTurn]:
        edits = [(FORMAT[arm], text)] if arm != "passage" else []
        return training_sequences(passage, edits, qa_form=config.qa_form)

    # every candidate from the base model trained side by side, the passage alone last; then
    # the anchored ones from the passage-alone adapter
    train = replace(config.train, seed=seed)
    free = [(arm, t) for arm, t in texts if arm != "anchored"] + [("passage", "")]
    trained = train_many(host, [sequences(a, t) for a, t in free], train, init=None)
    anchored = [(arm, t) for arm, t in texts if arm == "anchored"]
    if anchored:
        trained += train_many(
            host, [sequences(a, t) for a, t in anchored], train, init=trained[-1].state
        )
    order = [*free, *anchored]
    asked = [Probe(passage.title, qa) for qa in [*probes, *real]]
    # the base model alone, then the adapters together (a batch mixing the bare model with
    # adapters is not what the product runs)
    base = evaluate_many(host, [None], asked, config.answer_max_tokens)[0]
    evaluations = evaluate_many(host, [t.state for t in trained], asked, config.answer_max_tokens)
    n = len(probes)

    def part(evaluation: Any, lo: int, hi: int) -> Any:
        return replace(evaluation, graded=evaluation.graded[lo:hi])

    candidates = []
    for (arm, text), result, evaluation in zip(order, trained, evaluations, strict=True):
        c = Candidate(
            text,
            [],
            trained=result,
            evaluation=part(evaluation, 0, n),
            passage_alone=arm == "passage",
        )
        c.reward = c.accuracy - part(base, 0, n).accuracy
        candidates.append((arm, c, part(evaluation, n, n + len(real))))
    plain = next(c for c in candidates if c[1].passage_alone)
    chosen_on, judged_on = split_probes(n, seed)
    row: dict[str, Any] = {
        "probes": n,
        "real": len(real),
        "base_real": part(base, n, n + len(real)).correct,
        "truncated_drafts": sum(d.truncated for d in drafts),
        "items_kept": {arm: g.items for arm, g in grounded.items()},
    }
    for arm in ARMS:
        row[arm] = _arm(arm, candidates, plain[1], base, n, (chosen_on, judged_on))
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def _arm(
    arm: str,
    candidates: list[tuple[str, Candidate, Any]],
    plain: Candidate,
    base: Any,
    n: int,
    halves: tuple[list[int], list[int]],
) -> dict[str, Any]:
    """What the journal keeps of one arm: the choice among its candidates and the passage
    alone (made on the first half of the probes), its real answers, and its gate's decision
    (on the other half; the passage arm on all of them)."""
    chosen_on, judged_on = halves
    pool = [c for a, c, _ in candidates if a == arm] + ([plain] if arm != "passage" else [])
    if arm == "passage":
        chosen, judge = plain, list(range(n))
    else:
        chosen, judge = choose_candidate(pool, chosen_on), judged_on
    real_eval = next(r for _, c, r in candidates if c is chosen)
    before = sum(base.graded[i].correct for i in judge)
    after = sum(chosen.evaluation.graded[i].correct for i in judge) if chosen.evaluation else 0
    return {
        "real": real_eval.correct,
        # each of its own candidates' real answers, before any choice
        "each": [r.correct for a, _, r in candidates if a == arm],
        "candidates": len(pool),
        "self_edit": not chosen.passage_alone,
        "promoted": after >= before,
    }


def summarize(entries: list[dict[str, Any]]) -> str:
    """The table: each arm's real accuracy, and against ``passage`` the difference with a
    95% cluster-bootstrap interval and a paired sign-flip permutation p over passages; then
    the same for the mean of each arm's candidates (what the lever teaches before any choice;
    an arm left without a candidate counts as the passage alone)."""
    if not entries:
        return "no passages yet"
    arms = [k for k, v in entries[0].items() if isinstance(v, dict) and "real" in v]
    total = sum(e["real"] for e in entries)
    sizes = [e["real"] for e in entries]
    lines = [
        f"{len(entries)} passages, {total} real questions",
        "| arm | right | accuracy | vs passage | 95% CI | p | self-edit kept | gate agrees |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rng = random.Random(0)
    for arm in arms:
        right = sum(e[arm]["real"] for e in entries)
        diffs = [e[arm]["real"] - e["passage"]["real"] for e in entries]
        share, lo, hi, p = stats.paired(diffs, sizes, rng)
        # the gate agrees when it promotes a version that answers more real questions than the
        # base model or the same, and refuses one that answers fewer
        agree = sum((e[arm]["promoted"]) == (e[arm]["real"] >= e["base_real"]) for e in entries)
        kept = sum(e[arm]["self_edit"] for e in entries)
        lines.append(
            f"| {arm} | {right} | {right / max(1, total):.1%} | {share:+.1%} | "
            f"{lo:+.1%} to {hi:+.1%} | {p:.3f} | {kept} | {agree}/{len(entries)} |"
        )
    base = sum(e["base_real"] for e in entries)
    lines.append(f"base model: {base} right ({base / max(1, total):.1%})")
    if all("each" in e[arm] for e in entries for arm in arms):
        lines += [
            "",
            "each arm's candidates, before any choice (mean per passage):",
            "| arm | right | accuracy | vs passage | 95% CI | p |",
            "|---|---|---|---|---|---|",
        ]
        for arm in arms:
            means = [
                sum(e[arm]["each"]) / len(e[arm]["each"])
                if e[arm]["each"]
                else e["passage"]["real"]
                for e in entries
            ]
            diffs = [m - e["passage"]["real"] for m, e in zip(means, entries, strict=True)]
            share, lo, hi, p = stats.paired(diffs, sizes, rng)
            lines.append(
                f"| {arm} | {sum(means):.1f} | {sum(means) / max(1, total):.1%} | "
                f"{share:+.1%} | {lo:+.1%} to {hi:+.1%} | {p:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a SQuAD file of ../shared/data/squad")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--end", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--summary", action="store_true", help="print the table and stop")
    args = parser.parse_args()
    settings = Settings()
    config = inner_loop_config(settings, "self-qa")
    plan = {
        "data": args.data.name, "start": args.start, "end": args.end, "seed": args.seed,
        "k": config.num_candidates, "probes": settings.generated_probe_questions,
        "dtype": settings.dtype, "epochs": config.train.epochs,
        "stop_loss": config.train.stop_loss, "max_tokens": config.sample.max_new_tokens,
        "arms": list(ARMS),
    }  # fmt: skip
    journal = Journal(args.journal, plan, resume=args.resume or args.summary)
    if args.summary:
        print(summarize(journal.entries))
        return
    host = student_host(settings, with_teacher=True)
    teacher = Teacher(state=load_adapter(BUNDLED_TEACHER_DIR))
    done = {e["index"] for e in journal.entries}
    passages = load_passages(args.data)[args.start : args.end]
    for index, with_questions in enumerate(passages, args.start):
        if index in done:
            continue
        # sent as a tenant sends it: without its questions, which only grade it
        passage = Passage(with_questions.title, with_questions.text)
        real = list(with_questions.questions)
        row = run_passage(host, teacher, config, settings, passage, real, args.seed * 1000 + index)
        journal.append({"index": index, **row})
        print(json.dumps({"index": index, **row}), flush=True)
    # what the journal holds now: the passages of earlier runs and of this one
    print(summarize(Journal(args.journal, plan, resume=True).entries))


if __name__ == "__main__":
    main()
