"""The knowledge-incorporation evaluation on the tiny model: real training and grading."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import pytest

from research import evaluation as evaluation_module
from research.evaluation import (
    EvalPassage,
    Journal,
    run_forgetting,
    run_knowledge,
    sequences_of,
)
from research.report import (
    compare_runs,
    comparison_table,
    forgetting_table,
    knowledge_table,
    settings_json,
    write_forgetting,
    write_knowledge,
)
from research.results import (
    Answer,
    ConditionResult,
    KnowledgeReport,
    Paired,
    mcnemar_exact,
    paired,
    wilson_interval,
)
from seal.generation import SampleConfig
from seal.knowledge import InnerLoopConfig, Teacher
from seal.lora import AdapterHost
from seal.selfedit import QA, Passage, training_sequences
from seal.train import TrainConfig, tokenize
from tests.tiny import SPEC, load_tiny

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ZORBLAT = Passage(
    "Zorblat Industries",
    "Zorblat Industries was founded by Marisol Quenby in 1987. It makes glass bicycles.",
    (
        QA("Who founded Zorblat Industries?", "Marisol Quenby"),
        QA("What does Zorblat Industries make?", "glass bicycles"),
    ),
)
VELLMORA = Passage(
    "Vellmora",
    "Vellmora is a harbour town on the river Quill. Its mayor is Ada Thorne.",
    (QA("Who is the mayor of Vellmora?", "Ada Thorne"),),
)
SUPPLIED = (
    "1. Marisol Quenby founded Zorblat Industries in 1987.\n2. Zorblat makes glass bicycles.",
)
CONFIG = InnerLoopConfig(
    format="implications",
    num_candidates=1,
    sample=SampleConfig(max_new_tokens=8, temperature=1.0, top_p=0.95, seed=0),
    train=TrainConfig(learning_rate=1e-2, epochs=2, batch_size=4, seed=0),
    answer_max_tokens=4,
)


@pytest.fixture
def host(tiny_model_dir: Path) -> AdapterHost:
    return AdapterHost(load_tiny(tiny_model_dir), {"student": SPEC, "teacher": SPEC}, seed=0)


def rows(report: KnowledgeReport) -> dict[str, tuple[int, int]]:
    """condition -> (passages, questions)"""
    return {r.name: (r.passages, r.questions) for r in report.conditions}


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and matplotlib.image.imread(path).ndim == 3


@pytest.mark.parametrize(
    ("correct", "total", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0),
        (5, 10, 0.2366, 0.7634),
    ],
)
def test_wilson_interval_matches_published_values(
    correct: int, total: int, low: float, high: float
) -> None:
    assert wilson_interval(correct, total) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(6, 5)


def test_self_edits_are_pooled_with_the_passage_as_the_service_pools_them() -> None:
    texts = ["1. Alpha is a letter.\n2. Beta is a letter.", "1. Beta is a letter."]
    assert sequences_of(ZORBLAT, texts, "implications") == [
        f"{ZORBLAT.title}\nAlpha is a letter.",
        f"{ZORBLAT.title}\nBeta is a letter.",
        f"{ZORBLAT.title}\nBeta is a letter.",
        f"{ZORBLAT.title}\n{ZORBLAT.text}",
    ]
    assert sequences_of(ZORBLAT, [], "implications") == training_sequences(ZORBLAT, [])


def test_single_mode_grades_every_question_of_every_condition(
    host: AdapterHost, tmp_path: Path
) -> None:
    passages = [EvalPassage(ZORBLAT, SUPPLIED), EvalPassage(VELLMORA)]
    seen: list[tuple[int, int]] = []
    report = run_knowledge(
        host, passages, CONFIG, mode="single", on_progress=lambda d, t, _: seen.append((d, t))
    )
    # the supplied self-edits make a row of their own passage's questions only
    assert rows(report) == {
        "base": (2, 3),
        "passage": (2, 3),
        "base-teacher": (2, 3),
        "supplied": (1, 2),
    }
    assert seen[-1] == (2, 2)
    by_name = {r.name: r for r in report.conditions}
    assert not by_name["base"].final_losses and not by_name["passage"].self_edits
    assert len(by_name["passage"].final_losses) == 2
    assert len(by_name["supplied"].final_losses) == 1
    # every trained adapter's epochs and tokens are counted, nothing for the untrained base
    assert by_name["base"].epochs == [] and by_name["base"].train_tokens == 0
    assert by_name["passage"].epochs == [CONFIG.train.epochs] * 2  # no early stop here
    # the passage row trains each passage's one sequence (title, text, EOS) every epoch: every
    # token but the first enters the loss
    assert by_name["passage"].train_tokens == CONFIG.train.epochs * sum(
        len(ex.ids) - 1
        for p in (ZORBLAT, VELLMORA)
        for ex in tokenize(host, training_sequences(p, []), CONFIG.train.max_seq_len)
    )
    edits = by_name["base-teacher"].self_edits
    assert [(e.passage, e.title) for e in edits] == [(0, ZORBLAT.title), (1, VELLMORA.title)]
    assert all(len(e.texts) == 1 and e.texts[0].startswith("1. ") for e in edits)
    assert [(e.passage, e.texts) for e in by_name["supplied"].self_edits] == [(0, list(SUPPLIED))]
    assert set(report.seconds) == {"generate", "train", "grade", "total"}

    settings = settings_json(CONFIG, model="tiny", seed=0, mode="single", passages=2)
    written = write_knowledge(report, tmp_path, settings)
    assert [p.name for p in written] == ["results.json", "accuracy.png"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["settings"]["train"]["epochs"] == 2 and results["settings"]["samples"] == 1
    assert results["settings"]["interval"] == "95% Wilson score interval"
    assert set(results["timing"]) == {
        "generate_seconds",
        "train_seconds",
        "grade_seconds",
        "total_seconds",
    }
    every = [
        (0, ZORBLAT.title, ZORBLAT.questions[0].question, "Marisol Quenby"),
        (0, ZORBLAT.title, ZORBLAT.questions[1].question, "glass bicycles"),
        (1, VELLMORA.title, VELLMORA.questions[0].question, "Ada Thorne"),
    ]
    for condition in results["conditions"]:
        answers = condition["answers"]
        expected = every[:2] if condition["name"] == "supplied" else every
        assert [(a["passage"], a["title"], a["question"], a["gold"]) for a in answers] == expected
        assert all(isinstance(a["answer"], str) and isinstance(a["correct"], bool) for a in answers)
        assert condition["correct"] == sum(a["correct"] for a in answers)
        trained = by_name[condition["name"]]
        assert (condition["epochs"], condition["train_tokens"]) == (
            trained.epochs,
            trained.train_tokens,
        )
        low, high = condition["ci95"]
        assert 0 <= low <= condition["accuracy"] <= high <= 1
    assert is_png(tmp_path / "accuracy.png")
    table = knowledge_table(report).splitlines()
    assert table[1].startswith("base") and table[4].startswith("supplied") and "/2" in table[4]
    # what each condition trained: nothing for base, its tokens and epochs for the others
    assert table[1].split()[-3:] == ["-", "-", "-"]
    passage_row = table[2].split()
    assert passage_row[0] == "passage"
    assert passage_row[-3:-1] == [
        str(by_name["passage"].train_tokens),
        f"{CONFIG.train.epochs:.1f}",
    ]


def test_batch_mode_trains_one_adapter_per_condition(host: AdapterHost) -> None:
    teacher = Teacher(state=host.fresh_state("teacher"))
    passages = [EvalPassage(ZORBLAT), EvalPassage(VELLMORA)]
    report = run_knowledge(host, passages, CONFIG, mode="batch", teachers=[("", teacher)])
    # no passage came with self-edits: no supplied row
    assert rows(report) == {
        "base": (2, 3),
        "passage": (2, 3),
        "base-teacher": (2, 3),
        "teacher": (2, 3),
    }
    for row in report.conditions:
        assert len(row.final_losses) == (0 if row.name == "base" else 1)
        assert [a.passage for a in row.answers] == [0, 0, 1]
    assert [e.passage for e in report.conditions[3].self_edits] == [0, 1]


def test_a_run_is_repeatable(host: AdapterHost) -> None:
    config = replace(CONFIG, train=replace(CONFIG.train, epochs=1))
    passages = [EvalPassage(VELLMORA)]
    first = run_knowledge(host, passages, config, mode="single")
    second = run_knowledge(host, passages, config, mode="single")
    assert [(r.self_edits, r.answers, r.final_losses) for r in first.conditions] == [
        (r.self_edits, r.answers, r.final_losses) for r in second.conditions
    ]


class Stop(Exception):
    pass


def test_each_qa_form_is_a_row_trained_on_the_same_self_edits(host: AdapterHost) -> None:
    qa = replace(CONFIG, format="self-qa")
    supplied = ("Question: Who founded Zorblat Industries?\nAnswer: Marisol Quenby",)
    passages = [EvalPassage(ZORBLAT, supplied)]
    report = run_knowledge(host, passages, qa, qa_forms=["chat", "text"])
    by_name = {r.name: r for r in report.conditions}
    assert list(by_name) == [
        "base",
        "passage",
        "base-teacher/chat",
        "base-teacher/text",
        "supplied/chat",
        "supplied/text",
    ]
    chat, text = by_name["supplied/chat"], by_name["supplied/text"]
    assert chat.self_edits == text.self_edits
    # the chat turn's loss covers the answer only: fewer trained tokens than the raw text
    assert 0 < chat.train_tokens < text.train_tokens
    assert by_name["base-teacher/chat"].self_edits == by_name["base-teacher/text"].self_edits


def test_a_stopped_run_resumes_after_its_last_finished_passage(
    host: AdapterHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passages = [EvalPassage(ZORBLAT, SUPPLIED), EvalPassage(VELLMORA)]
    settings = {"data": "two passages", "seed": 0}
    whole = run_knowledge(host, passages, CONFIG, journal=Journal(tmp_path / "a.jsonl", settings))

    def stop_after_the_first(done: int, total: int, status: str) -> None:
        if done == 1:
            raise Stop

    path = tmp_path / "b.jsonl"
    with pytest.raises(Stop):
        run_knowledge(
            host,
            passages,
            CONFIG,
            journal=Journal(path, settings),
            on_progress=stop_after_the_first,
        )
    # a cut-off line at the end (the process died while writing it) is dropped
    path.write_text(path.read_text() + '{"passage": 1, "rows": {"ba')
    trained: list[int] = []
    real = evaluation_module.train_many

    def counting(host, sets, *args, **kwargs):  # type: ignore[no-untyped-def]
        trained.append(len(sets))
        return real(host, sets, *args, **kwargs)

    monkeypatch.setattr(evaluation_module, "train_many", counting)
    monkeypatch.setattr(evaluation_module, "write_self_edits_many", None)  # nothing resampled
    journal = Journal(path, settings, resume=True)
    assert sorted(journal.done) == [0] and journal.written is not None
    resumed = run_knowledge(host, passages, CONFIG, journal=journal)
    assert trained == [2]  # only the second passage's passage and base-teacher adapters
    assert [
        (r.name, r.answers, r.self_edits, r.final_losses, r.epochs) for r in resumed.conditions
    ] == [(r.name, r.answers, r.self_edits, r.final_losses, r.epochs) for r in whole.conditions]
    # the journal now holds both passages, and a resume with other settings is refused
    assert sorted(Journal(path, settings, resume=True).done) == [0, 1]
    with pytest.raises(ValueError, match=r"other settings \(seed\)"):
        Journal(path, {**settings, "seed": 1}, resume=True)
    # without resume the journal starts afresh
    assert Journal(path, {**settings, "seed": 1}).done == {}


def test_an_unknown_mode_is_refused(host: AdapterHost) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        run_knowledge(host, [EvalPassage(ZORBLAT)], CONFIG, mode="sequential")


def test_forgetting_matrix_covers_every_passage_after_every_update(
    host: AdapterHost, tmp_path: Path
) -> None:
    teacher = Teacher(state=host.fresh_state("teacher"))
    passages = [EvalPassage(ZORBLAT), EvalPassage(VELLMORA), EvalPassage(ZORBLAT)]
    # greedy: the passage met twice gets the same self-edits (its rows share one batch)
    greedy = replace(CONFIG, sample=replace(CONFIG.sample, temperature=0.0))
    report = run_forgetting(host, passages, greedy, teacher=teacher)
    assert report.condition == "teacher"
    assert report.questions == [2, 1, 2] and len(report.before) == 3
    assert len(report.matrix) == 3 and all(len(row) == 3 for row in report.matrix)
    assert all(0 <= x <= 1 for row in report.matrix for x in row)
    assert [len(u.answers) for u in report.updates] == [5, 5, 5]
    assert [u.self_edits[0].passage for u in report.updates] == [0, 1, 2]
    # the third update trains on the first one's sequences again, from where the second ended
    first, _, third = report.updates
    assert first.self_edits[0].texts == third.self_edits[0].texts
    assert third.final_losses[0] < first.final_losses[0]

    written = write_forgetting(report, tmp_path, settings_json(CONFIG, mode="sequential"))
    assert [p.name for p in written] == ["results.json", "forgetting.json", "forgetting.png"]
    matrix = json.loads((tmp_path / "forgetting.json").read_text())
    assert matrix["titles"] == [ZORBLAT.title, VELLMORA.title, ZORBLAT.title]
    assert len(matrix["matrix"]) == 3 and len(matrix["correct"][2]) == 3
    assert len(matrix["before"]) == 3
    results = json.loads((tmp_path / "results.json").read_text())
    assert [len(u["answers"]) for u in results["updates"]] == [5, 5, 5]
    assert is_png(tmp_path / "forgetting.png")
    assert "after 3" in forgetting_table(report)


def _run(correct: dict[str, list[bool]], edits: str = "e") -> dict:
    return {
        "conditions": [
            {
                "name": name,
                "self_edits": [edits] if name != "base" else [],
                "answers": [
                    {"passage": 0, "question": f"q{i}?", "correct": c} for i, c in enumerate(marks)
                ],
            }
            for name, marks in correct.items()
        ]
    }


def test_compare_runs_pairs_questions_and_tests_the_split() -> None:
    first = _run({"base": [True] + [False] * 7, "passage": [False] * 8})
    second = _run({"passage": [True] * 6 + [False, False], "base": [True] * 2 + [False] * 6}, "f")

    rows = {r.condition: r for r in compare_runs(first, second)}

    passage = rows["passage"]
    assert (passage.first, passage.second, passage.only_first, passage.only_second) == (0, 6, 0, 6)
    assert passage.p_value == pytest.approx(2 / 64)  # 6 of 6 discordant one way
    assert not passage.same_self_edits
    base = rows["base"]
    assert (base.only_first, base.only_second, base.p_value) == (0, 1, 1.0)
    assert base.same_self_edits  # no self-edits on either side
    assert "McNemar" in comparison_table(list(rows.values()))


def test_compare_runs_refuses_different_questions() -> None:
    with pytest.raises(ValueError, match="asked different questions"):
        compare_runs(_run({"base": [True, False]}), _run({"base": [True]}))
    with pytest.raises(ValueError, match="no condition in common"):
        compare_runs(_run({"base": [True]}), _run({"passage": [True]}))


def test_mcnemar_exact_is_the_binomial_tail_of_the_discordant_questions() -> None:
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(10, 10) == 1.0
    assert mcnemar_exact(5, 0) == mcnemar_exact(0, 5) == 2 / 2**5
    # 26 against 12 (the untrained teacher against the passage, 30 dev passages): p = 0.034
    assert round(mcnemar_exact(26, 12), 4) == 0.0336


def test_rows_of_one_run_are_paired_on_the_questions_both_answered() -> None:
    def row(name: str, marks: dict[tuple[int, str], bool]) -> ConditionResult:
        answers = [Answer(p, "t", q, "gold", "answer", ok) for (p, q), ok in marks.items()]
        return ConditionResult(name, answers=answers)

    passage = row("passage", {(0, "a"): True, (0, "b"): False, (1, "c"): False, (1, "d"): True})
    # a row that skipped passage 1 (as `supplied` does) is paired on passage 0 only
    supplied = row("supplied", {(0, "a"): False, (0, "b"): True})
    teacher = row("teacher", {(0, "a"): True, (0, "b"): True, (1, "c"): True, (1, "d"): False})
    assert paired(supplied, passage) == Paired(questions=2, only_this=1, only_other=1)
    pair = paired(teacher, passage)
    assert (pair.questions, pair.only_this, pair.only_other) == (4, 2, 1)
    assert pair.p_value == mcnemar_exact(2, 1)
