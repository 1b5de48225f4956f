"""Test-time training of skills: the split never trains on the case it grades, the sequences
are what the configuration asks for, and a tiny model learns a trivial skill."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from seal.lora import AdapterHost, LoraSpec
from seal.modeling import load_model
from seal.selfedit import ChatTurn
from seal.skills import ttt
from seal.skills.config import ALL_TOKENS, DEFAULT_CONFIG, OUTPUT_TOKENS, SkillConfig
from seal.skills.tasks import Demo, SkillTask, grid_text, text_tasks
from seal.skills.ttt import (
    INSTRUCTION,
    SkillScale,
    fit_context,
    leave_one_out,
    matches,
    prompt_messages,
    score,
    score_config,
    split_held_out,
    train_with,
    training_sequences,
)
from seal.train import Example
from tests.model_cache import CACHE, default_model_dir
from tests.tiny import SPEC, TINY, load_tiny

DEMOS = tuple(
    Demo(f"order {word} ref {n}", f"{word.upper()}-{n}")
    for n, word in enumerate(
        ["apple", "birch", "cedar", "dahlia", "elm", "fern", "ginkgo", "hazel"], start=11
    )
)
TASK = SkillTask("codes", DEMOS, "Codes of orders.")
SCALE = SkillScale(max_examples=12, max_steps=6, max_new_tokens=4)
NO_AUGMENTATION = SkillConfig(False, False, False, False, OUTPUT_TOKENS, 1e-3, 2)


def config(strategy: str = OUTPUT_TOKENS, **changes: object) -> SkillConfig:
    values = dict(
        use_basic_augmentations=True,
        use_size_augmentations=True,
        use_chain_augmentations=True,
        use_repeat_augmentations=True,
        strategy=strategy,
        learning_rate=1e-3,
        num_train_epochs=2,
    )
    values.update(changes)
    return SkillConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(default_model_dir()))


def test_leave_one_out_never_puts_the_query_in_its_context() -> None:
    demos = [*DEMOS[:4], DEMOS[0]]  # a repeated demonstration too
    pairs = leave_one_out(demos)
    assert len(pairs) == len(demos)
    for (context, query), expected in zip(pairs, demos, strict=True):
        assert query == expected
        assert query not in context
        assert set(context) == set(demos) - {query}


def test_split_held_out_is_disjoint_repeatable_and_keeps_one_to_train() -> None:
    for seed in range(5):
        train, held = split_held_out(DEMOS, 2, seed)
        assert len(held) == 2 and len(train) == len(DEMOS) - 2
        assert not set(train) & set(held)
        assert set(train) | set(held) == set(DEMOS)
        assert split_held_out(DEMOS, 2, seed) == (train, held)
    assert len({tuple(split_held_out(DEMOS, 1, seed)[1]) for seed in range(20)}) > 3
    train, held = split_held_out(DEMOS[:2], 5, 0)
    assert len(train) == 1 and len(held) == 1
    with pytest.raises(ValueError, match="two distinct"):
        split_held_out([DEMOS[0], DEMOS[0]], 1, 0)


def test_a_held_out_case_is_not_trained_on_through_a_copy_or_its_input() -> None:
    repeated = Demo(DEMOS[0].input, "ANOTHER-ANSWER")
    demos = [*DEMOS[:3], DEMOS[0], repeated]
    for seed in range(10):
        train, held = split_held_out(demos, 1, seed)
        held_inputs = {d.input for d in held}
        assert not any(d.input in held_inputs for d in train)


def test_prompt_messages_show_the_context_and_ask_the_query() -> None:
    messages = prompt_messages(TASK, DEMOS[:2], "order oak ref 99")
    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"]
    assert system.startswith(INSTRUCTION) and "Codes of orders." in system
    for demo in DEMOS[:2]:
        assert f"Input:\n{demo.input}\nOutput:\n{demo.output}" in system
    assert DEMOS[2].input not in system
    assert messages[1]["content"] == "order oak ref 99"
    bare = prompt_messages(SkillTask("t", DEMOS), [], "q")
    assert bare[0]["content"] == INSTRUCTION


def test_training_sequences_follow_the_strategy(tokenizer) -> None:
    train = list(DEMOS[:5])
    turns = training_sequences(TASK, train, config(OUTPUT_TOKENS), SCALE, 0)
    assert 0 < len(turns) <= SCALE.max_examples
    assert all(isinstance(t, ChatTurn) for t in turns)
    assert {t.reply for t in turns if isinstance(t, ChatTurn)} <= {d.output for d in train}
    texts = training_sequences(TASK, train, config(ALL_TOKENS), SCALE, 0, tokenizer=tokenizer)
    assert all(isinstance(t, str) and t.startswith("<|im_start|>system") for t in texts)
    assert all(any(str(t).endswith(d.output) for d in train) for t in texts)
    with pytest.raises(ValueError, match="tokenizer"):
        training_sequences(TASK, train, config(ALL_TOKENS), SCALE, 0)
    assert training_sequences(TASK, train, config(), SCALE, 0) == turns, "not repeatable"


def test_training_sequences_of_a_grid_task_use_its_augmentations() -> None:
    grids = [[[1, 0, 0], [0, 2, 0], [0, 0, 3]], [[0, 4, 0], [5, 0, 0], [0, 0, 6]]]
    task = SkillTask("flip", tuple(Demo(grid_text(g), grid_text(g[::-1])) for g in grids))
    scale = SkillScale(max_examples=40)
    plain = training_sequences(task, task.demos, NO_AUGMENTATION, scale, 0)
    augmented = training_sequences(task, task.demos, config(), scale, 0)
    assert len(augmented) > len(plain) >= 2
    replies = {t.reply for t in augmented if isinstance(t, ChatTurn)}
    assert any(len(r.splitlines()) == 6 for r in replies), "no grid scaled up"


def test_long_contexts_are_cut_to_the_newest_demonstrations_that_fit(tokenizer) -> None:
    long = [Demo(f"item {i} " + "word " * 40, f"out {i}") for i in range(12)]
    kept = fit_context(tokenizer, TASK, long, "item x", 400)
    assert 0 < len(kept) < len(long)
    assert kept == long[-len(kept) :]
    scale = SkillScale(max_seq_len=400)
    task = SkillTask("long", tuple(long))
    for text in training_sequences(task, long, config(ALL_TOKENS), scale, 0, tokenizer=tokenizer):
        assert len(tokenizer(str(text))["input_ids"]) <= 400


def test_matches_is_exact_after_stripping_and_compares_grids_as_grids() -> None:
    assert matches(" APPLE-11\n", "APPLE-11")
    assert not matches("apple-11", "APPLE-11")
    assert not matches("APPLE-11 because", "APPLE-11")
    assert matches("012 \n 340", "012\n340")
    assert not matches("012\n341", "012\n340")
    assert not matches("0 1 2\n3 4 0", "012\n340")


def decoded(host: AdapterHost, examples: list[Example]) -> list[str]:
    return [str(host.tokenizer.decode(e.ids)) for e in examples]


@pytest.mark.parametrize("strategy", [OUTPUT_TOKENS, ALL_TOKENS])
def test_score_config_never_trains_on_a_held_out_case(tiny_host, monkeypatch, strategy) -> None:
    """Whatever the configuration, no training sequence holds a held-out demonstration's
    input or output, and exactly the held-out cases are graded."""
    trained: list[str] = []
    graded: list[Demo] = []
    real_train, real_score = ttt.train_adapter, ttt.score

    def train_spy(host, slot, examples, train_config, **kwargs):
        trained.extend(decoded(host, list(examples)))
        return real_train(host, slot, examples, train_config, **kwargs)

    def score_spy(host, slot, state, task, context, cases, scale):
        graded.extend(cases)
        for demo in cases:
            assert demo not in context
        return real_score(host, slot, state, task, context, cases, scale)

    monkeypatch.setattr(ttt, "train_adapter", train_spy)
    monkeypatch.setattr(ttt, "score", score_spy)
    scale = SkillScale(max_examples=12, max_steps=3, held_out=2, max_new_tokens=4)
    for seed in range(3):
        trained.clear()
        graded.clear()
        result = score_config(tiny_host, "student", TASK, DEMOS, config(strategy), scale, seed)
        _, held = split_held_out(DEMOS, 2, seed)
        assert graded == held
        assert trained, "nothing was trained"
        for text in trained:
            for demo in held:
                assert demo.input not in text and demo.output not in text
        assert result.config == config(strategy) and result.error is None
        assert 0 < result.steps <= scale.max_steps


def test_a_configuration_that_does_not_parse_earns_zero_and_trains_nothing(
    tiny_host, monkeypatch
) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("a configuration that does not parse must not train")

    monkeypatch.setattr(ttt, "train_adapter", no_training)
    result = score_config(tiny_host, "student", TASK, DEMOS, "use rotations, lr 1e-3", SCALE, 0)
    assert result.config is None and result.state is None
    assert result.reward == 0.0 and result.steps == 0
    assert result.error and "not valid JSON" in result.error
    assert result.text == "use rotations, lr 1e-3"


def test_training_is_cut_at_max_steps(tiny_host, monkeypatch) -> None:
    epochs: list[int] = []
    real = ttt.train_adapter

    def spy(host, slot, examples, train_config, **kwargs):
        epochs.append(train_config.epochs)
        assert len(examples) <= 2 * 5
        return real(host, slot, examples, train_config, **kwargs)

    monkeypatch.setattr(ttt, "train_adapter", spy)
    scale = SkillScale(max_examples=10, max_steps=5, batch_size=2)
    steps: list[tuple[int, int]] = []
    state, run = train_with(
        tiny_host,
        "student",
        TASK,
        DEMOS,
        config(num_train_epochs=8),
        scale,
        0,
        on_step=lambda done, total: steps.append((done, total)),
    )
    assert epochs == [1] and run == 5 and steps[-1] == (5, 5)
    assert state.keys() == tiny_host.fresh_state("student").keys()


@pytest.fixture(scope="module")
def untied_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose output head is its own (small) matrix: the tied embeddings of
    tests/tiny.py make a random model repeat its last input token, which a few LoRA steps do
    not undo; this one learns a short fixed answer in a few dozen steps."""
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_dir()))
    config = LlamaConfig(**{**TINY.to_dict(), "tie_word_embeddings": False})
    config.initializer_range = 0.1
    config.vocab_size = len(tokenizer)
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.bos_token_id = tokenizer.bos_token_id
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("untied-tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_test_time_training_teaches_a_tiny_model_a_trivial_skill(untied_tiny_dir) -> None:
    """Every ticket gets the same acknowledgement code: in context alone the random model
    never answers it; after test-time training on four demonstrations it answers the held-out
    ones."""
    host = AdapterHost(load_tiny(untied_tiny_dir), {"student": SPEC}, seed=0)
    tickets = ["printer jam", "reset password", "refund please", "screen broken", "mouse dead"]
    task = SkillTask("ack", tuple(Demo(t, "ACK") for t in tickets))
    scale = SkillScale(max_examples=8, max_steps=32, held_out=1, max_new_tokens=8)
    learned = SkillConfig(False, False, False, False, OUTPUT_TOKENS, 3e-3, 8)
    for seed in (0, 1):
        train, held = split_held_out(task.demos, 1, seed)
        before = score(host, "student", None, task, train, held, scale)
        result = score_config(host, "student", task, task.demos, learned, scale, seed)
        assert before == 0.0
        assert result.reward == 1.0, f"seed {seed}"
        assert result.steps == 32 and result.seconds > 0


@pytest.mark.slow
def test_test_time_training_teaches_the_default_model_a_shipped_text_skill() -> None:
    """SmolLM2-135M-Instruct does not reverse the words of a sentence from ten examples in
    context, and does after test-time training with the fixed configuration at the CPU scale
    (measured on 2026-12-03, AMD EPYC, 2 cores, bf16: 0/4 test cases in context, 3/4 after;
    about a minute alone on the machine)."""
    host = AdapterHost(load_model(str(default_model_dir()), CACHE), {"student": LoraSpec()})
    task, tests = next(t for t in text_tasks() if t[0].name == "word_reversal")
    scale = SkillScale()
    context = fit_context(host.tokenizer, task, task.demos, tests[0].input, scale.max_seq_len)
    before = score(host, "student", None, task, context, tests, scale)
    result = score_config(host, "student", task, task.demos, DEFAULT_CONFIG, scale, 0)
    after = score(host, "student", result.state, task, context, tests, scale)
    assert before == 0.0
    assert after >= 0.5 and result.reward > 0
