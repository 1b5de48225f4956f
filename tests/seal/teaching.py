"""Adapters taught one exact reply, so that the random tiny model says what a test needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from seal.generation import Messages
from seal.lora import AdapterHost, AdapterState
from seal.train import Example, TrainConfig, train_adapter
from tests.tiny import SPEC, load_tiny


def speaking_host(model_dir: Path, slots: Sequence[str] = ("student",)) -> AdapterHost:
    """The tiny model, able to end a reply.

    The tiny model's EOS token is also its pad token, whose embedding row ``nn.Embedding``
    initialises to zero; tied to the output layer, that row makes EOS unreachable. A random row
    lets an adapter learn to stop.
    """
    loaded = load_tiny(model_dir)
    weight = loaded.model.get_input_embeddings().weight
    eos = loaded.tokenizer.eos_token_id
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weight[eos] = 0.3 * torch.randn(weight.shape[1], generator=generator)
    return AdapterHost(loaded, {slot: SPEC for slot in slots}, seed=0)


def teach(
    host: AdapterHost,
    slot: str,
    messages: Messages,
    reply: str,
    *,
    prefix: str = "",
    epochs: int = 15,
) -> AdapterState:
    """An adapter for ``slot`` that answers ``messages`` (its reply started with ``prefix``)
    with ``reply`` and then ends its turn; the loss is on the reply only."""
    tok = host.tokenizer
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefix
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = tok(prompt + reply, add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids, "the reply must not merge into the prompt"
    example = Example(ids=[*ids, tok.eos_token_id], loss_from=len(prompt_ids))
    config = TrainConfig(learning_rate=3e-2, epochs=epochs, batch_size=1)
    return train_adapter(host, slot, [example], config).state
