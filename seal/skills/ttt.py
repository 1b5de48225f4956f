"""Test-time training: a LoRA learns a task from its demonstrations and is graded on held-out
ones.

The paper's few-shot inner loop (Continual-Intelligence/SEAL, ``few-shot/self-edit.py``): the
training data are leave-one-out tasks (each demonstration in turn is the query, the others its
context) over the configuration's augmented copies of the task, the loss on the whole
conversation or on the answer only, and the reward of a configuration is the share of held-out
demonstrations that the adapted model then reproduces exactly. Scaled to two CPU cores by
default (``SkillScale``); the held-out demonstrations never enter the training data.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from seal.generation import SampleConfig, generate
from seal.lora import AdapterHost, AdapterState
from seal.selfedit import ChatTurn
from seal.skills.augment import augmented_tasks
from seal.skills.config import (
    OUTPUT_TOKENS,
    ConfigBounds,
    ConfigError,
    SkillConfig,
    parse_config,
)
from seal.skills.tasks import Demo, SkillTask, grid_of
from seal.train import TrainConfig, tokenize, train_adapter

INSTRUCTION = "Apply the rule of these examples to the input. Answer with the output only."
"""The system prompt's first words (shorter than the paper's: every token of it is in every
training sequence, and training tokens are what test-time training costs)."""


@dataclass(frozen=True)
class SkillScale:
    """How much test-time training a configuration gets. The defaults fit two CPU cores;
    ``paper()`` restores the paper's scale (for a GPU)."""

    max_examples: int = 24
    """Training sequences generated from the demonstrations (paper: 250)."""
    max_steps: int = 24
    """Optimizer steps at most: a configuration that would need more runs the whole epochs
    that fit (the paper zeroed runs over 375 steps)."""
    batch_size: int = 2
    """Sequences per optimizer step (paper: 2)."""
    max_seq_len: int = 512
    """Tokens of a training sequence at most: the contexts of longer ones are cut to their
    newest demonstrations that fit, and a sequence that still does not fit is left out. With
    ``max_steps`` and ``batch_size`` it bounds what a configuration costs: at most 24 x 2 x 512
    tokens, about two minutes of training on two CPU cores (paper: 8192)."""
    held_out: int = 1
    """Demonstrations held out of training to grade a configuration."""
    max_new_tokens: int = 256
    """Tokens decoded per answer at most (a grid needs rows x (cols + 1); paper: 1024)."""

    @classmethod
    def paper(cls) -> SkillScale:
        return cls(max_examples=250, max_steps=375, max_seq_len=8192, max_new_tokens=1024)


def _demo_text(demo: Demo) -> str:
    return f"Input:\n{demo.input}\nOutput:\n{demo.output}"


def prompt_messages(task: SkillTask, context: Sequence[Demo], query: str) -> list[dict[str, str]]:
    """The chat messages that ask for ``query``'s output: the instruction, the task's
    description when it has one and the ``context`` demonstrations as the system message, the
    query as the user's (the paper's layout, ``GPTTextMessageRepresenterV2``)."""
    parts = [INSTRUCTION]
    if task.description:
        parts.append(f"What the task does: {task.description}")
    parts.extend(_demo_text(d) for d in context)
    return [
        {"role": "system", "content": "\n\n".join(parts)},
        {"role": "user", "content": query},
    ]


def _tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def fit_context(
    tokenizer: Any,
    task: SkillTask,
    context: Sequence[Demo],
    query: str,
    max_tokens: int,
    reply: str = "",
) -> list[Demo]:
    """The newest (last) demonstrations of ``context`` that fit, with the rest of the prompt
    for ``query`` and ``reply``, in ``max_tokens`` tokens (a few tokens of slack: the
    demonstrations are counted one by one)."""
    bare = _prompt_text(tokenizer, prompt_messages(task, [], query)) + reply
    budget = max_tokens - _tokens(tokenizer, bare) - 8
    kept: list[Demo] = []
    for demo in reversed(context):
        cost = _tokens(tokenizer, _demo_text(demo)) + 2
        if cost > budget:
            break
        kept.append(demo)
        budget -= cost
    return kept[::-1]


def leave_one_out(demos: Sequence[Demo]) -> list[tuple[list[Demo], Demo]]:
    """(context, query) for each demonstration: the query, and the others as its context (a
    demonstration equal to the query is not in its context)."""
    return [(list(d for d in demos if d != query), query) for query in demos]


def split_held_out(demos: Sequence[Demo], count: int, seed: int) -> tuple[list[Demo], list[Demo]]:
    """(training demonstrations, held-out ones): ``count`` of the distinct demonstrations,
    chosen by ``seed``, are held out (at least one, and at least one is left to train on); a
    demonstration with the input of a held-out one is not trained on either, so the cases
    graded are never seen. Both in their original order."""
    unique = list(dict.fromkeys(demos))
    if len(unique) < 2:
        raise ValueError(
            "at least two distinct demonstrations are needed: one to train on and one to grade"
        )
    order = list(range(len(unique)))
    random.Random(seed).shuffle(order)
    chosen = set(order[: min(max(count, 1), len(unique) - 1)])
    held = [d for i, d in enumerate(unique) if i in chosen]
    inputs = {d.input for d in held}
    train = [d for i, d in enumerate(unique) if i not in chosen and d.input not in inputs]
    if not train:
        raise ValueError("every demonstration has the input of a held-out one")
    return train, held


def training_sequences(
    task: SkillTask,
    demos: Sequence[Demo],
    config: SkillConfig,
    scale: SkillScale,
    seed: int,
    *,
    tokenizer: Any = None,
) -> list[str | ChatTurn]:
    """The training sequences of test-time training, built from ``demos`` only (never the
    task's other demonstrations): leave-one-out tasks over the configuration's augmented copies
    of the task (``augmented_tasks``, the task itself first), at most ``scale.max_examples``.
    ``OUTPUT_TOKENS``: chat turns, the loss on the answer (``seal.train.tokenize``);
    ``ALL_TOKENS``: the conversation rendered by ``tokenizer``'s chat template as plain text,
    the loss on every token (it needs the ``tokenizer``). With a ``tokenizer``, each context is
    cut to the newest demonstrations that fit ``scale.max_seq_len``."""
    if config.strategy != OUTPUT_TOKENS and tokenizer is None:
        raise ValueError("the loss on all tokens trains the rendered chat: pass the tokenizer")
    base = SkillTask(task.name, tuple(demos), task.description)
    if not base.demos:
        return []
    rng = random.Random(seed)
    limit = math.ceil(scale.max_examples / len(base.demos))
    sequences: list[str | ChatTurn] = []
    for variant in augmented_tasks(base, config, rng, limit):
        for context, query in leave_one_out(variant.demos):
            if tokenizer is not None:
                context = fit_context(
                    tokenizer, variant, context, query.input, scale.max_seq_len, query.output
                )
            messages = prompt_messages(variant, context, query.input)
            if config.strategy == OUTPUT_TOKENS:
                turn = tuple((m["role"], m["content"]) for m in messages)
                sequences.append(ChatTurn(turn, query.output))
            else:
                sequences.append(_prompt_text(tokenizer, messages) + query.output)
    return sequences[: scale.max_examples]


def matches(prediction: str, gold: str) -> bool:
    """Exact, after stripping; a grid answer is compared as a grid (each row's surrounding
    whitespace ignored)."""
    gold_grid = grid_of(gold)
    if gold_grid is not None:
        return grid_of(prediction) == gold_grid
    return prediction.strip() == gold.strip()


@dataclass
class ConfigResult:
    """One configuration scored: trained with, then graded on the held-out demonstrations."""

    text: str
    """What the teacher wrote (or the configuration's JSON)."""
    config: SkillConfig | None
    """None: it did not parse (reward 0)."""
    error: str | None
    reward: float
    """Share of the held-out demonstrations reproduced exactly."""
    state: AdapterState | None
    """The adapter trained with it (None when it did not parse)."""
    steps: int = 0
    seconds: float = 0.0


def _answer_tokens(task: SkillTask, context: Sequence[Demo], scale: SkillScale) -> int:
    """Room for an answer twice as long as the longest output seen (a digit of a grid or a
    character of most text is at most one token)."""
    longest = max((len(d.output) for d in (*task.demos, *context)), default=0)
    return max(1, min(scale.max_new_tokens, 2 * longest + 16))


def predict(
    host: AdapterHost,
    slot: str,
    state: AdapterState | None,
    task: SkillTask,
    context: Sequence[Demo],
    queries: Sequence[str],
    scale: SkillScale,
) -> list[str]:
    """The greedy answer to each query given the ``context`` demonstrations, with the adapter
    ``state`` in ``slot`` (None: the base model, in-context learning only)."""
    if not queries:
        return []
    sample = SampleConfig(max_new_tokens=_answer_tokens(task, context, scale), temperature=0.0)
    generations = generate(
        host,
        [prompt_messages(task, context, q) for q in queries],
        sample,
        slot=slot if state is not None else None,
        state=state,
    )
    return [g.text for g in generations]


def score(
    host: AdapterHost,
    slot: str,
    state: AdapterState | None,
    task: SkillTask,
    context: Sequence[Demo],
    cases: Sequence[Demo],
    scale: SkillScale,
) -> float:
    """The share of ``cases`` whose output ``predict`` reproduces exactly (0 for no cases)."""
    if not cases:
        return 0.0
    answers = predict(host, slot, state, task, context, [c.input for c in cases], scale)
    return sum(matches(a, c.output) for a, c in zip(answers, cases, strict=True)) / len(cases)


def train_with(
    host: AdapterHost,
    slot: str,
    task: SkillTask,
    demos: Sequence[Demo],
    config: SkillConfig,
    scale: SkillScale,
    seed: int,
    *,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[AdapterState, int]:
    """Test-time training of a fresh adapter in ``slot`` on ``training_sequences`` of
    ``demos``; the state and the optimizer steps run. The epochs are cut to the whole ones that
    fit ``scale.max_steps`` (at least one, of at most ``max_steps`` batches). When no sequence
    fits ``scale.max_seq_len``, nothing is trained: the fresh adapter and 0 steps."""
    sequences = training_sequences(task, demos, config, scale, seed, tokenizer=host.tokenizer)
    examples = [e for e in tokenize(host, sequences, 1 << 30) if len(e.ids) <= scale.max_seq_len]
    if not examples:
        return host.fresh_state(slot), 0
    examples = examples[: scale.max_steps * scale.batch_size]
    per_epoch = math.ceil(len(examples) / scale.batch_size)
    epochs = max(1, min(config.num_train_epochs, scale.max_steps // per_epoch))
    train = TrainConfig(
        learning_rate=config.learning_rate,
        epochs=epochs,
        batch_size=scale.batch_size,
        max_seq_len=scale.max_seq_len,
        seed=seed,
    )
    result = train_adapter(host, slot, examples, train, on_step=on_step)
    return result.state, epochs * per_epoch


def score_config(
    host: AdapterHost,
    slot: str,
    task: SkillTask,
    demos: Sequence[Demo],
    text_or_config: str | SkillConfig,
    scale: SkillScale,
    seed: int,
    bounds: ConfigBounds = ConfigBounds(),
    *,
    on_step: Callable[[int, int], None] | None = None,
) -> ConfigResult:
    """A configuration's reward: parse it (a text that does not parse earns 0 and trains
    nothing), hold ``scale.held_out`` of ``demos`` out (``split_held_out``), train a fresh
    adapter on the rest, and grade it on the held-out ones with the rest as context (the
    newest that fit ``scale.max_seq_len``). Never trains on a held-out case."""
    started = time.perf_counter()
    if isinstance(text_or_config, SkillConfig):
        config, text = text_or_config, text_or_config.to_json()
    else:
        text = text_or_config
        try:
            config = parse_config(text, bounds)
        except ConfigError as exc:
            return ConfigResult(text, None, str(exc), 0.0, None)
    train, held = split_held_out(demos, scale.held_out, seed)
    state, steps = train_with(host, slot, task, train, config, scale, seed, on_step=on_step)
    longest = max(held, key=lambda d: len(d.input)).input
    context = fit_context(host.tokenizer, task, train, longest, scale.max_seq_len)
    reward = score(host, slot, state, task, context, held, scale)
    return ConfigResult(text, config, None, reward, state, steps, time.perf_counter() - started)
