"""A tiny Llama built in the test session (random weights, the default model's tokenizer); its
fixtures are imported by the conftest of each test package that uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from seal.lora import AdapterHost, LoraSpec
from seal.modeling import LoadedModel
from tests.model_cache import default_model_dir

TINY = LlamaConfig(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=True,
    # Large enough that the tied output embeddings can express confident predictions.
    initializer_range=0.3,
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny model folder: random weights, the real tokenizer and chat template."""
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_dir()))
    config = LlamaConfig(**TINY.to_dict())
    config.vocab_size = len(tokenizer)
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.bos_token_id = tokenizer.bos_token_id
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_tiny(path: Path) -> LoadedModel:
    model = LlamaForCausalLM.from_pretrained(str(path)).eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return LoadedModel(model=model, tokenizer=tokenizer, path=path, device=torch.device("cpu"))


SPEC = LoraSpec(rank=8, alpha=16)


@pytest.fixture
def tiny_host(tiny_model_dir: Path) -> AdapterHost:
    return AdapterHost(load_tiny(tiny_model_dir), {"student": SPEC}, seed=0)
