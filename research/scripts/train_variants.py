"""Training speed of ``train_many`` under variants that might make it faster, alternated in
one process so that the machine's drift falls on all of them alike: five candidates on the
first passage of dev.json (its sentences, each candidate in another order), two epochs, no
early stop, in the service's dtype (``SEAL_DTYPE``).

Variants:

- ``default``: the service as it is;
- ``pack=W``: packed rows of W tokens instead of ``TrainConfig.pack_tokens`` (256);
- ``compiled``: the model's elementwise pieces (RMSNorm, SiLU times the up projection, the
  rotary embedding) compiled by ``torch.compile(dynamic=True)``, fused into one kernel each
  for the forward and the backward pass. The first trial of it includes the compilation.

Each trial prints tokens/s and the first candidate's last epoch loss; at the end, how far
each variant's first adapter is from the first variant's (the largest weight difference).

    .venv/bin/python research/scripts/train_variants.py default compiled pack=512 --trials 3
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from research.data import load_passages
from seal.multi import train_many
from seal.selfedit import item_sequences
from service.settings import Settings
from worker.config import inner_loop_config
from worker.runtime import student_host

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "squad" / "dev.json"


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = x.dtype
    x = x.float()
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)


def _silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def _rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)

    def half_turn(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    return q * cos + half_turn(q) * sin, k * cos + half_turn(k) * sin


@contextmanager
def compiled_pieces() -> Iterator[None]:
    """The Llama modules' elementwise pieces replaced by compiled functions while inside."""
    import transformers.models.llama.modeling_llama as llama

    rms: Any = torch.compile(_rms_norm, dynamic=True)
    silu_mul: Any = torch.compile(_silu_mul, dynamic=True)
    rotary: Any = torch.compile(_rotary, dynamic=True)
    saved = (llama.LlamaRMSNorm.forward, llama.LlamaMLP.forward, llama.apply_rotary_pos_emb)

    def norm_forward(self: Any, x: torch.Tensor) -> Any:
        return rms(x, self.weight, self.variance_epsilon)

    def mlp_forward(self: Any, x: torch.Tensor) -> Any:
        return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))

    def apply_rotary(q: Any, k: Any, cos: Any, sin: Any, unsqueeze_dim: int = 1) -> Any:
        return rotary(q, k, cos, sin)

    targets = (
        (llama.LlamaRMSNorm, "forward"),
        (llama.LlamaMLP, "forward"),
        (llama, "apply_rotary_pos_emb"),
    )
    for (owner, name), new in zip(targets, (norm_forward, mlp_forward, apply_rotary), strict=True):
        setattr(owner, name, new)
    try:
        yield
    finally:
        for (owner, name), old in zip(targets, saved, strict=True):
            setattr(owner, name, old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="default, compiled or pack=W")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    for variant in args.variants:
        if not re.fullmatch(r"default|compiled|pack=\d+", variant):
            parser.error(f"unknown variant {variant!r}: default, compiled or pack=W (W a number)")

    settings = Settings()
    host = student_host(settings)
    if host.loaded.model.config.model_type != "llama" and "compiled" in args.variants:
        raise SystemExit("the compiled variant patches the Llama modules; this model is not one")
    doc = load_passages(DATA)[0]
    sentences = [s.strip() + "." for s in doc.text.split(". ") if s.strip()]
    sets = [item_sequences(doc, sentences[i:] + sentences[:i]) for i in range(5)]
    base = replace(inner_loop_config(settings).train, epochs=2, stop_loss=0.0)

    def run(variant: str) -> tuple[float, list[Any]]:
        config = base
        patch: AbstractContextManager[None] = nullcontext()
        if variant == "compiled":
            patch = compiled_pieces()
        elif variant.startswith("pack="):
            config = replace(base, pack_tokens=int(variant.removeprefix("pack=")))
        with patch:
            started = time.perf_counter()
            results = train_many(host, sets, config, init=None)
            return time.perf_counter() - started, results

    run("default")  # warm-up
    first_adapter: dict[str, Any] = {}  # each variant's first candidate, from its last trial
    for trial in range(args.trials):
        for variant in args.variants:
            seconds, results = run(variant)
            tokens = sum(r.tokens for r in results)
            first_adapter[variant] = results[0].state
            print(
                f"trial {trial + 1} {variant} ({host.loaded.model.dtype}): {seconds:.1f} s, "
                f"{tokens} tokens, {tokens / seconds:.1f} tokens/s, "
                f"last epoch loss {results[0].losses[-1]:.4f}",
                flush=True,
            )
    reference = first_adapter[args.variants[0]]
    for variant in args.variants[1:]:
        gap = max((first_adapter[variant][k] - reference[k]).abs().max().item() for k in reference)
        print(f"{variant}: largest weight difference from {args.variants[0]}: {gap:.2e}")


if __name__ == "__main__":
    main()
