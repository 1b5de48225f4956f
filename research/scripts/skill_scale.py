"""Does longer test-time training teach a skill better? The ``ttt-fixed`` row of ``seal eval
skills`` (the fixed configuration, graded on each task's test cases) at the default scale's
sequence length and a larger budget of generated sequences and steps: one table per budget.

    .venv/bin/python research/scripts/skill_scale.py text --budget 48 --out var/eval/scale.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from research.skills import format_skills, run_skills_eval
from seal.skills.tasks import load_tasks
from service.domain.skills import skill_scale
from service.settings import Settings
from worker.runtime import student_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="`text`, a folder of ARC tasks or a JSON file of text tasks")
    parser.add_argument(
        "--budget",
        type=int,
        action="append",
        required=True,
        help="generated sequences and steps at most (the default scale: 24); repeatable",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write every answer here (JSON)")
    args = parser.parse_args()

    settings = Settings().model_copy(update={"seed": args.seed})
    cases = load_tasks(args.data)
    host = student_host(settings)
    out = {}
    for budget in args.budget:
        scale = replace(skill_scale(settings), max_examples=budget, max_steps=budget)
        report = run_skills_eval(
            host,
            cases,
            data=args.data,
            k=1,
            seed=args.seed,
            scale=scale,
            rows=["ttt-fixed"],
            on_done=lambda _r, what: print(f"... {what}", flush=True),
        )
        cases_right = sum(a.correct for a in report.attempts)
        cases_all = sum(a.cases for a in report.attempts)
        print(f"budget {budget}: {cases_right} of {cases_all} test cases right", flush=True)
        print(format_skills(report), flush=True)
        out[str(budget)] = report.to_json()
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
