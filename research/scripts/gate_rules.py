"""How often would other promotion rules have agreed with the real questions?

Reads the files ``research/scripts/learn_without_questions.py`` writes (each version's probes graded
greedily and as their gold answers' log-likelihood, before and after, and the passage's real
questions) and scores candidate gate rules against the verdict "the version answers more of the
real questions than the base model": the service's rule (more probes right), and a rise of the
probes' mean gold-answer log-likelihood by more than a margin, on all probes or on one source.
Choose on the tuning passages, then report the chosen rule on the others.

    .venv/bin/python research/scripts/gate_rules.py var/eval/tune-passage-30-59.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Rule = Callable[[dict[str, Any], list[int]], bool]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _picked(entry: dict[str, Any], key: str, keep: list[int]) -> list[Any]:
    return [entry[key][i] for i in keep]


def greedy(entry: dict[str, Any], keep: list[int]) -> bool:
    return sum(_picked(entry, "probe_after", keep)) > sum(_picked(entry, "probe_before", keep))


def not_worse(entry: dict[str, Any], keep: list[int]) -> bool:
    return sum(_picked(entry, "probe_after", keep)) >= sum(_picked(entry, "probe_before", keep))


def loglik(margin: float) -> Rule:
    def rule(entry: dict[str, Any], keep: list[int]) -> bool:
        before = _mean(_picked(entry, "probe_logprob_before", keep))
        after = _mean(_picked(entry, "probe_logprob_after", keep))
        return after - before > margin

    return rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    rules: dict[str, Rule] = {
        "greedy (more probes right)": greedy,
        "greedy, ties promote": not_worse,
    }
    for margin in (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0):
        rules[f"log-likelihood up > {margin}"] = loglik(margin)
    for path in args.runs:
        run = json.loads(path.read_text())
        for fmt in run["settings"]["formats"]:
            rows = [
                (d, d["formats"][fmt])
                for d in run["passages"]
                if d["formats"][fmt].get("probe_after") is not None
            ]
            improved = [sum(e["version_correct"]) > sum(d["base"]) for d, e in rows]
            n = len(rows)
            print(f"\n{path.name} [{fmt}]: {n} versions, {sum(improved)} improved")
            share = sum(improved) / n
            print(f"  always promote {share:.1%}, always reject {1 - share:.1%}")
            for source in ("all", "teacher", "cloze"):
                for name, rule in rules.items():
                    agree = promoted = judged = 0
                    for (_, e), good in zip(rows, improved, strict=True):
                        keep = [
                            i
                            for i, p in enumerate(e["probes"])
                            if source == "all" or p["source"] == source
                        ]
                        if not keep:
                            continue
                        judged += 1
                        decision = rule(e, keep)
                        promoted += decision
                        agree += decision == good
                    if judged:
                        print(
                            f"  {source:<8} {name:<28} agreement {agree}/{judged} "
                            f"({agree / judged:.1%}), promotes {promoted}"
                        )


if __name__ == "__main__":
    main()
