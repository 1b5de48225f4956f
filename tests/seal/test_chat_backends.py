"""The API's model chat backend, both engines (``SEAL_CHAT_ENGINE``): the same replies,
concurrent chats with different adapters included, streamed or not."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from seal.lora import STUDENT, AdapterHost, LoraSpec, save_adapter
from service.inference import AdapterRef, ChatRequest, ChatResult, ModelChatBackend
from service.settings import Settings
from tests.model_cache import CACHE
from tests.tiny import TINY, load_tiny

QUESTIONS = ["Who founded it?", "Where is the harbour?", "Name the mayor.", "Why?"]


@pytest.fixture
def refs(tiny_model_dir: Path, tmp_path: Path) -> list[AdapterRef | None]:
    """The base model and three saved adapters of the settings' LoRA shape."""
    spec = _spec(_settings(tiny_model_dir, tmp_path, "serial"))
    host = AdapterHost(load_tiny(tiny_model_dir), {STUDENT: spec}, seed=0)
    out: list[AdapterRef | None] = [None]
    for seed in (1, 2, 3):
        generator = torch.Generator().manual_seed(seed)
        state = {
            k: torch.randn(v.shape, generator=generator) * 0.5 if ".lora_B." in k else v
            for k, v in host.fresh_state(STUDENT).items()
        }
        folder = tmp_path / f"adapter-{seed}"
        out.append(AdapterRef(str(folder), save_adapter(state, spec, folder)))
    return out


def _settings(model_dir: Path, tmp_path: Path, engine: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        model_cache_dir=CACHE,
        student_model=str(model_dir),
        lora_rank=8,
        lora_alpha=16,
        chat_engine=engine,  # type: ignore[arg-type]
        # float32: in bf16, batched kernels sum in another order than a batch of one, and a
        # random tiny model's near-equal logits flip (seal bench serve measures how often)
        dtype="float32",
    )


def _spec(settings: Settings) -> LoraSpec:
    s = settings
    return LoraSpec(s.lora_rank, s.lora_alpha, s.lora_dropout, tuple(s.lora_targets))


def _request(question: str, ref: AdapterRef | None) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": question}], adapter=ref, max_tokens=8)


def test_both_engines_give_the_same_replies_and_batching_serves_them_together(
    tiny_model_dir: Path, tmp_path: Path, refs: list[AdapterRef | None]
) -> None:
    requests = [_request(q, ref) for q, ref in zip(QUESTIONS, refs, strict=True)]
    serial = ModelChatBackend(_settings(tiny_model_dir, tmp_path, "serial"))
    expected = [serial.complete(r) for r in requests]
    assert len({e.text for e in expected}) > 2  # the adapters change the replies

    batched = ModelChatBackend(_settings(tiny_model_dir, tmp_path, "batched"))
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(batched.complete, requests))
    assert together == expected
    for request, want in zip(requests, expected, strict=True):
        *pieces, result = list(batched.stream(request))
        assert isinstance(result, ChatResult) and result == want
        assert "".join(pieces) == want.text  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["serial", "batched"])
def test_the_backend_knows_its_context_and_counts_a_prompt_as_the_model_sees_it(
    tiny_model_dir: Path, tmp_path: Path, engine: str
) -> None:
    backend = ModelChatBackend(_settings(tiny_model_dir, tmp_path, engine))
    assert backend.context_tokens() == TINY.max_position_embeddings
    request = ChatRequest(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}],
        adapter=None,
        max_tokens=4,
    )
    counted = backend.prompt_tokens(request.messages)
    assert counted == backend.complete(request).prompt_tokens > 5
