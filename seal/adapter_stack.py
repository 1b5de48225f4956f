"""k LoRA adapters of one slot, stacked and applied to the bare base model by forward hooks,
each to the tokens (or rows) it owns.

Two callers run on it: the training and grading of many adapters at once (``seal.multi``) and
the serving engine's batches of mixed adapters (``seal.batching``). It lives apart from the
training module so that the serving engine imports no training code.

- a forward hook on every LoRA-wrapped linear layer adds ``scale * x A_j^T B_j^T`` to the
  tokens owned by adapter j (contiguous spans of the flattened batch, so each adapter is one
  pair of plain matmuls, with no gather), and nothing to those of ``NO_ADAPTER``;
- the adapters' weights are float32; in training they compute in the activations' dtype
  (bf16 on a GPU or on a CPU with bf16 matrix units) and their gradients come back in float32;
- without gradients (decoding), the weights are cast once per ``applied`` (to float32 on a
  CPU, where bf16 products of a few rows are slower) instead of at every call, and spans that
  all hold as many rows are updated by two batched matmuls per layer instead of two per span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.lora import LoraLayer

from seal.lora import AdapterHost, AdapterState

NO_ADAPTER = -1
"""The owner of tokens that run through the bare base model."""

Span = tuple[int, int, int]
"""(adapter index or NO_ADAPTER, start, end) over a flattened batch."""


@dataclass(frozen=True)
class _Site:
    name: str
    module: Any
    scaling: float


class AdapterStack:
    """k adapters of one slot's shape, stacked, applied to the bare base model by hooks."""

    def __init__(self, host: AdapterHost, slot: str, states: Sequence[AdapterState | None]):
        if not states:
            raise ValueError("an AdapterStack needs at least one adapter")
        self.host = host
        self.slot = slot
        self.k = len(states)
        self.dropout = host.specs[slot].dropout
        fresh = host.fresh_state(slot)
        self.sites: list[_Site] = []
        # A[site][j], B[site][j]: separate tensors per adapter (indexing one stacked tensor
        # would make every backward pass fill a zero gradient of the whole stack per adapter)
        self.A: list[list[torch.Tensor]] = []
        self.B: list[list[torch.Tensor]] = []
        self._dtype = next(iter(fresh.values())).dtype
        for name, module in host.model.named_modules():
            if not (isinstance(module, LoraLayer) and slot in module.lora_A):
                continue
            scaling = float(module.scaling[slot])
            self.sites.append(_Site(name, module, scaling))
            for suffix, stacked in (("lora_A.weight", self.A), ("lora_B.weight", self.B)):
                key = f"{name}.{suffix}"
                weights = [(s if s is not None else fresh)[key] for s in states]
                stacked.append([w.to(host.device, torch.float32, copy=True) for w in weights])
        self.layout: tuple[str, list[Span]] = ("rows", [(0, 0, 1 << 62)])
        self._frozen: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] | None = None
        """Without gradients (decoding), each adapter's weights cast once to the compute dtype
        instead of at every call."""
        self._batched: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        """Without gradients, when all spans hold as many rows (k candidates, and maybe the bare
        model, graded on the same probes): per site, the spans' A^T and B^T stacked in span
        order (zeros for the bare model's rows), so each site's update is two batched matmuls
        instead of two per span."""
        self._batched_rows = 0

    def parameters(self, index: int) -> list[torch.Tensor]:
        """Adapter ``index``'s tensors."""
        return [t[index] for t in (*self.A, *self.B)]

    def state(self, index: int) -> AdapterState:
        """Adapter ``index``'s weights, named as PEFT names them."""
        out: AdapterState = {}
        for site, a, b in zip(self.sites, self.A, self.B, strict=True):
            out[f"{site.name}.lora_A.weight"] = a[index].detach().to("cpu", self._dtype, copy=True)
            out[f"{site.name}.lora_B.weight"] = b[index].detach().to("cpu", self._dtype, copy=True)
        return out

    def _spans(self, batch: int, length: int) -> list[Span]:
        unit, spans = self.layout
        if unit == "rows":  # spans of rows: their tokens, whatever the current length
            end = batch * length
            return [(j, min(s * length, end), min(e * length, end)) for j, s, e in spans]
        return spans

    def _hook(self, index: int) -> Callable[..., torch.Tensor]:
        site = self.sites[index]

        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            x = args[0]
            if self._batched is not None and x.shape[0] == self._batched_rows:
                a_t, b_t = self._batched[index]
                grouped = x.reshape(a_t.shape[0], -1, x.shape[-1]).to(a_t.dtype)
                delta = torch.bmm(torch.bmm(grouped, a_t) * site.scaling, b_t)
                return output + delta.view(*output.shape[:-1], -1).to(output.dtype)
            # the adapters' float32 weights compute in the activations' dtype (bf16 on a GPU or
            # a CPU with bf16 matrix units); their gradients come back in float32
            flat = x.reshape(-1, x.shape[-1])
            a, b = self.A[index], self.B[index]
            spans = [(j, st, en) for j, st, en in self._spans(x.shape[0], x.shape[1]) if en > st]
            out_features = b[0].shape[0]
            # split (not slicing): its backward concatenates the pieces' gradients instead of
            # filling a zero gradient of the whole batch for each piece
            pieces = flat.split([en - st for _, st, en in spans]) if len(spans) > 1 else [flat]
            parts = []
            for (j, _, _), chunk in zip(spans, pieces, strict=True):
                if j == NO_ADAPTER:
                    parts.append(chunk.new_zeros(chunk.shape[0], out_features))
                    continue
                if self.dropout and module.training:
                    chunk = F.dropout(chunk, self.dropout, training=True)
                if self._frozen is not None and (index, j) in self._frozen:
                    aj, bj = self._frozen[index, j]  # float32 on a CPU, whatever chunk's dtype
                else:
                    aj, bj = a[j].to(chunk.dtype), b[j].to(chunk.dtype)
                part = ((chunk.to(aj.dtype) @ aj.T) * site.scaling) @ bj.T
                parts.append(part.to(chunk.dtype))
            delta = torch.cat(parts) if len(parts) > 1 else parts[0]
            return output + delta.view(*output.shape[:-1], -1).to(output.dtype)

        return hook

    @contextmanager
    def applied(self, unit: str, spans: Sequence[Span]) -> Iterator[None]:
        """Run the host's model with these adapters: ``spans`` say which adapter owns which
        rows (``unit="rows"``) or flattened tokens (``unit="tokens"``)."""
        self.layout = (unit, list(spans))
        if not torch.is_grad_enabled():
            # bf16 batched products of a few rows are 3x slower than float32 on a CPU (34 us
            # against 10 us for 8 rows of one site, docs/results/2026-12-03-serving.md): there
            # the adapters' small products run in float32 and only their sum is cast back
            dtype = next(self.host.model.parameters()).dtype
            if self.host.device.type == "cpu":
                dtype = torch.float32
            order = [j for j, _, _ in spans]
            sizes = {end - start for _, start, end in spans}
            if unit == "rows" and len(sizes) == 1 and any(j != NO_ADAPTER for j in order):
                self._batched_rows = len(spans) * sizes.pop()

                def stacked(weights: list[torch.Tensor]) -> torch.Tensor:
                    # the bare model's rows get a zero update (B = 0)
                    zero = torch.zeros_like(weights[0].T)
                    return torch.stack([weights[j].T if j != NO_ADAPTER else zero for j in order])

                self._batched = [
                    (stacked(self.A[i]).to(dtype), stacked(self.B[i]).to(dtype))
                    for i in range(len(self.sites))
                ]
            else:
                owners = {j for j in order if j != NO_ADAPTER}
                self._frozen = {
                    (i, j): (self.A[i][j].to(dtype), self.B[i][j].to(dtype))
                    for i in range(len(self.sites))
                    for j in owners
                }
        handles = [s.module.register_forward_hook(self._hook(i)) for i, s in enumerate(self.sites)]
        try:
            if any(getattr(s.module, "disable_adapters", False) for s in self.sites):
                yield  # the PEFT slots are off already (a caller's ``host.use(None)``)
            else:
                with self.host.model.disable_adapter():
                    yield
        finally:
            self._frozen = self._batched = None
            for handle in handles:
                handle.remove()
