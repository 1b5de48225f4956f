"""seal bench memory's report from a journal: each arm's accuracy over its passages, the
ratios it is judged by, and the gold passage found among the documents a reply names. (The
run itself drives a live stack; `seal bench memory` is run by hand, docs/results.)"""

from __future__ import annotations

from seal.selfedit import QA, Passage
from sealctl.memory_bench import Plan, contained, summarize


def test_the_grader_finds_the_gold_answer_anywhere_in_the_reply() -> None:
    assert contained("It was founded, they say, by Marisol Quenby in 1987.", "marisol quenby")
    assert not contained("Marisol founded it.", "Marisol Quenby")
    assert not contained("anything", "")


def test_the_report_compares_arms_on_the_same_passages() -> None:
    passages = [
        Passage(f"T{i}", f"text {i}", (QA("q1", f"gold{i}"), QA("q2", f"other{i}")))
        for i in range(4)
    ]
    plan = Plan(passages, 4, [2, 4], 2, 8, 32, 0, 0)
    ids = ["d0", "d1", "d2", "d3"]
    entries = [
        {"kind": "tenant", "name": f"hybrid@{n}", "key": "k", "ids": ids[:n]} for n in (2, 4)
    ]

    def ask(arm: str, p: int, q: int, right: bool, docs: list[str] | None = None) -> None:
        gold = passages[p].questions[q].answer
        entries.append({
            "kind": "ask", "arm": arm, "p": p, "q": q, "seconds": 1.0, "tokens": 8,
            "prompt_tokens": 50, "documents": docs or [],
            "reply": f"It is {gold}." if right else "I do not know.",
        })  # fmt: skip

    for p in range(4):
        for q in range(2):
            ask("ceiling", p, q, True)
            ask("base", p, q, q == 0 and p == 0)
            ask("hybrid@4", p, q, q == 0, [f"d{p}"] if p < 3 else ["d0"])
    table = summarize(plan, entries)
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert "| hybrid@4 | 4 | 8 | 4 | 50.0% |" in lines["hybrid@4"]
    assert "75.0%" in lines["hybrid@4"]  # the gold passage shown for 6 of 8
    assert "| ceiling | 4 | 8 | 8 | 100.0% |" in lines["ceiling"]
    assert "| hybrid@4 / ceiling | 0.50x |" in table
    assert "| hybrid@4 / base | 4.00x |" in table
    assert "hybrid@2" not in lines  # nothing asked of it yet
