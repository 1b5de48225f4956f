"""The teacher of configurations: it reads a task's demonstrations and writes training
configurations (the few-shot self-edits); ReST-EM trains it on those that solved held-out
cases."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch

from seal.generation import MIN_SAMPLING_TEMPERATURE
from seal.lora import AdapterHost, AdapterState
from seal.selfedit import ChatTurn
from seal.skills.config import CONFIG_PROMPT, STRATEGIES, ConfigBounds, SkillConfig
from seal.skills.tasks import SkillTask
from seal.skills.ttt import ConfigResult

LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
"""The learning rates a configuration is written with (``write_configs``)."""


def config_prompt(task: SkillTask, char_budget: int = 4000) -> list[dict[str, str]]:
    """The teacher's prompt for ``task``: its demonstrations, as many of the first ones as fit
    in ``char_budget`` characters, then ``CONFIG_PROMPT`` (the paper's ``get_prompt``)."""
    shown = ""
    for demo in task.demos:
        block = f"Input:\n{demo.input}\n\nOutput:\n{demo.output}\n\n"
        if len(shown) + len(block) > char_budget:
            break
        shown += block
    return [{"role": "user", "content": f"{shown}------\n\n{CONFIG_PROMPT}"}]


def menu(bounds: ConfigBounds = ConfigBounds()) -> list[SkillConfig]:
    """Every configuration ``write_configs`` can write: each choice of augmentations and
    strategy, each of ``LEARNING_RATES`` and each number of epochs within ``bounds``."""
    rates = [r for r in LEARNING_RATES if bounds.min_learning_rate <= r <= bounds.max_learning_rate]
    return [
        SkillConfig(basic, size, chain, repeat, strategy, rate, epochs)
        for basic, size, chain, repeat in itertools.product((True, False), repeat=4)
        for strategy in STRATEGIES
        for rate in rates
        for epochs in range(bounds.min_epochs, bounds.max_epochs + 1)
    ]


_END = -1


def _trie(sequences: Sequence[Sequence[int]]) -> dict[int, Any]:
    root: dict[int, Any] = {}
    for ids in sequences:
        node = root
        for token in ids:
            node = node.setdefault(token, {})
        node[_END] = {}
    return root


def write_configs(
    host: AdapterHost,
    teacher_slot: str | None,
    teacher_state: AdapterState | None,
    task: SkillTask,
    k: int,
    seed: int,
    temperature: float = 0.8,
) -> list[str]:
    """k configurations for ``task`` sampled from the teacher (``teacher_state`` in
    ``teacher_slot``; slot None: the base model), each the JSON of one of ``menu()``.

    The reply is decoded under the configuration's grammar: at each step only the tokens that
    continue some configuration of the menu may be sampled (the model's own probabilities,
    renormalized over them, at ``temperature``), so the keys and punctuation are forced and the
    teacher chooses every value. Free decoding gave nothing to learn from: of 40 replies of the
    default model (SmolLM2-135M-Instruct, ``generate`` of ``config_prompt`` with
    ``SampleConfig(max_new_tokens=128, temperature=0.8, seed=0)`` and 8 sequences for each of
    ARC tasks 6150a2bd, 5582e5ca, 6e02f1e3, 67e8384a and 8be77c9e, 2026-12-03), none parsed
    (``parse_config``): it wrote prose. With the reply prefilled with the JSON's opening,
    ``{"data_generation": {"use_basic_augmentations":``, none parsed either: it wrote
    ``"boolean"`` for the values, repeated keys and made up others. ReST-EM would have had no
    configuration with a reward to train the teacher on. Under the grammar all 40 parse, and
    the choices vary: of 16 samples for ARC task 44f52bb0 (seed 1), 10 chose every
    augmentation and 3 none, learning rates 1e-5 (8), 1e-2 (4), 1e-4 and 1e-3 (2 each), 1 to 8
    epochs; all chose the loss on all tokens."""
    tok = host.tokenizer
    options = [c.to_json() for c in menu()]
    encoded = tok(options, add_special_tokens=False)["input_ids"]
    trie = _trie(encoded)
    prompt = str(
        tok.apply_chat_template(config_prompt(task), add_generation_prompt=True, tokenize=False)
    )
    enc = tok([prompt], return_tensors="pt", add_special_tokens=False).to(host.device)
    width = enc["input_ids"].shape[1]
    eos = tok.eos_token_id

    def allowed(_row: int, ids: torch.Tensor) -> list[int]:
        node = trie
        for token in ids[width:].tolist():
            node = node.get(token, {})
        return [t for t in node if t != _END] or [eos]

    sampled = temperature >= MIN_SAMPLING_TEMPERATURE
    kwargs: dict[str, Any] = (
        dict(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        if sampled
        else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    )
    session = host.use(None) if teacher_slot is None else host.use(teacher_slot, teacher_state)
    with session as model, torch.inference_mode():
        torch.manual_seed(seed)
        out = model.generate(
            **enc,
            max_new_tokens=max(map(len, encoded)) + 1,
            num_return_sequences=k if sampled else 1,  # greedy replies are all the same
            prefix_allowed_tokens_fn=allowed,
            pad_token_id=tok.pad_token_id,
            eos_token_id=eos,
            **kwargs,
        )
    texts = [str(tok.decode(row[width:], skip_special_tokens=True)).strip() for row in out]
    return texts if sampled else texts * k


def teacher_turns(scored: Sequence[tuple[SkillTask, ConfigResult]]) -> list[ChatTurn]:
    """ReST-EM's training data: (``config_prompt(task)`` -> what the teacher wrote) for each
    configuration that solved some of its held-out cases (reward > 0)."""
    return [
        ChatTurn(tuple((m["role"], m["content"]) for m in config_prompt(task)), result.text)
        for task, result in scored
        if result.config is not None and result.reward > 0
    ]
