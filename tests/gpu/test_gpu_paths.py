"""The GPU path, on a GPU: LoRA training, batched serving with mixed adapters, and the chat
backend in bf16. Marked ``gpu``; skipped where no CUDA device is (every CPU machine and CI),
run by ``research/scripts/gpu_check.sh`` when one is lent. ``SEAL_TEST_GPU_DEVICE=cpu`` runs
them on the CPU, to check the tests themselves before a device's scarce minutes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from seal.batching import BatchEngine
from seal.generation import SampleConfig, generate
from seal.lora import STUDENT, AdapterHost, AdapterState, save_adapter
from seal.modeling import LoadedModel
from seal.train import TrainConfig, tokenize, train_adapter
from service.inference import AdapterRef, ChatRequest, ModelChatBackend
from service.settings import Settings
from tests.model_cache import CACHE
from tests.tiny import SPEC, load_tiny
from tests.tiny import tiny_model_dir as tiny_model_dir  # the fixture

DEVICE = os.environ.get("SEAL_TEST_GPU_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
    ),
]
TEXTS = [
    "Zorblat Industries\nZorblat Industries was founded by Marisol Quenby in 1987.",
    "Zorblat Industries\nThe company makes glass bicycles in Vellmora.",
]
PROMPTS = [
    [{"role": "user", "content": "Where is the harbour of Vellmora?"}],
    [{"role": "user", "content": "Who founded Zorblat Industries, and when?"}],
    [{"role": "user", "content": "Who?"}],
]


def _cuda_host(tiny: Path, dtype: torch.dtype) -> AdapterHost:
    loaded = load_tiny(tiny)
    device = torch.device(DEVICE)
    loaded.model.to(device=device, dtype=dtype)
    return AdapterHost(
        LoadedModel(loaded.model, loaded.tokenizer, loaded.path, device), {STUDENT: SPEC}, seed=0
    )


def _noisy(host: AdapterHost, seed: int) -> AdapterState:
    generator = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=generator) * 0.5 if ".lora_B." in k else v
        for k, v in host.fresh_state(STUDENT).items()
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_on_the_gpu_changes_the_adapter_only(tiny_model_dir: Path, dtype) -> None:  # type: ignore[no-untyped-def]
    host = _cuda_host(tiny_model_dir, dtype)
    before = {k: v.detach().clone() for k, v in host.model.named_parameters() if "lora_" not in k}
    config = TrainConfig(learning_rate=3e-2, epochs=15, batch_size=2, seed=0)
    result = train_adapter(host, STUDENT, tokenize(host, TEXTS, 128), config)
    after = dict(host.model.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before), "base weights changed"
    assert result.losses[-1] < 0.7 * result.losses[0]
    assert all(v.device.type == "cpu" for v in result.state.values())  # saved from the CPU


def test_mixed_adapters_batched_on_the_gpu(tiny_model_dir: Path) -> None:
    """float32 on the GPU: a reply decoded beside other adapters' is the reply decoded alone."""
    host = _cuda_host(tiny_model_dir, torch.float32)
    states = [None, _noisy(host, 1), _noisy(host, 2)]
    config = SampleConfig(max_new_tokens=12)
    expected = [
        generate(host, [p], config, slot=STUDENT if s else None, state=s)[0]
        for p, s in zip(PROMPTS, states, strict=True)
    ]
    engine = BatchEngine(host, STUDENT)
    replies = [
        engine.submit(p, adapter=(str(i), s) if s is not None else None, max_tokens=12)
        for i, (p, s) in enumerate(zip(PROMPTS, states, strict=True))
    ]
    assert [r.result() for r in replies] == expected


def test_the_chat_backend_serves_an_adapter_in_bf16(tiny_model_dir: Path, tmp_path: Path) -> None:
    host = _cuda_host(tiny_model_dir, torch.bfloat16)
    folder = tmp_path / "v1"
    digest = save_adapter(_noisy(host, 3), SPEC, folder, base_model=str(tiny_model_dir))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        model_cache_dir=CACHE,
        student_model=str(tiny_model_dir),
        device=DEVICE,
        dtype="bfloat16",
        lora_rank=SPEC.rank,
        lora_alpha=SPEC.alpha,
    )
    backend = ModelChatBackend(settings)
    request = ChatRequest(PROMPTS[0], adapter=AdapterRef(str(folder), digest), max_tokens=12)
    first, again = backend.complete(request), backend.complete(request)
    assert first.completion_tokens > 0 and first.text == again.text  # greedy: repeatable
    base = backend.complete(ChatRequest(PROMPTS[0], adapter=None, max_tokens=12))
    assert base.text != first.text  # the adapter was applied
