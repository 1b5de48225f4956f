"""One base model, any number of LoRA adapters beside it.

The teacher and every tenant's student adapter share one copy of the base weights: an adapter
is a small state dict that is loaded into a named PEFT slot when it is used. Adapters are saved
in PEFT's own format (``adapter_config.json`` + ``adapter_model.safetensors``), so
``PeftModel.from_pretrained`` loads them, and are written atomically: a version folder appears
whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from seal.modeling import LoadedModel

AdapterState = dict[str, torch.Tensor]
"""A LoRA adapter's weights, as PEFT names them (without the slot name), on the CPU."""

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
#: The slot names of an :class:`AdapterHost`: the tenant's student adapter and the teacher's.
STUDENT = "student"
TEACHER = "teacher"
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSpec:
    """The shape of a LoRA adapter."""

    rank: int = 32
    """Rank r of the update matrices (paper: 32 for students, 64 for the teacher)."""
    alpha: int = 64
    """Scaling numerator; the update is scaled by alpha / rank (paper: 2 x rank)."""
    dropout: float = 0.0
    """Dropout on the adapter's input (paper: 0)."""
    targets: tuple[str, ...] = field(default=ALL_LINEAR)
    """Names of the linear modules that get an adapter."""

    def peft_config(self, base_model: str = "") -> LoraConfig:
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.targets),
            bias="none",
            task_type="CAUSAL_LM",
            base_model_name_or_path=base_model or None,
        )


class AdapterHost:
    """A base model wrapped by PEFT, with one named slot per adapter shape in use."""

    def __init__(self, loaded: LoadedModel, specs: dict[str, LoraSpec], *, seed: int = 0):
        if not specs:
            raise ValueError("an AdapterHost needs at least one adapter slot")
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        self.specs = dict(specs)
        torch.manual_seed(seed)
        slots = iter(self.specs.items())
        first, spec = next(slots)
        self.model: PeftModel = get_peft_model(
            loaded.model, spec.peft_config(str(loaded.path)), adapter_name=first
        )
        for name, spec in slots:
            self.model.add_adapter(name, spec.peft_config(str(loaded.path)))
        self.model.eval()
        # The freshly initialised weights (B = 0: the identity update) of each slot.
        self._fresh = {name: self.state(name) for name in self.specs}

    def fresh_state(self, slot: str) -> AdapterState:
        return {k: v.clone() for k, v in self._fresh[slot].items()}

    def state(self, slot: str) -> AdapterState:
        raw = get_peft_model_state_dict(self.model, adapter_name=slot)
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in raw.items()}

    def load_state(self, slot: str, state: AdapterState | None) -> None:
        result = set_peft_model_state_dict(
            self.model, state if state is not None else self._fresh[slot], adapter_name=slot
        )
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ValueError(f"adapter weights do not fit slot {slot!r}: {unexpected[:3]}")

    def trainable_parameters(self, slot: str) -> list[torch.nn.Parameter]:
        params = []
        for name, param in self.model.named_parameters():
            mine = "lora_" in name and f".{slot}." in name
            param.requires_grad_(mine)
            if mine:
                params.append(param)
        return params

    @contextmanager
    def use(self, slot: str | None, state: AdapterState | None = None) -> Iterator[PeftModel]:
        """Run the model with ``state`` in ``slot``; ``slot=None`` runs the bare base model."""
        if slot is None:
            with self.model.disable_adapter():
                yield self.model
            return
        if state is not None:
            self.load_state(slot, state)
        self.model.set_adapter(slot)
        yield self.model

    @contextmanager
    def merged(self, slot: str, state: AdapterState | None = None) -> Iterator[PeftModel]:
        """Run the model, for inference only, with ``state`` (None: what ``slot`` holds) folded
        into the base weights (:meth:`folded`) and every slot off, so a decoding step costs
        what the bare model's does instead of running the adapter beside every layer."""
        with self.folded(slot, state), self.model.disable_adapter():
            yield self.model

    @contextmanager
    def folded(self, slot: str, state: AdapterState | None = None) -> Iterator[None]:
        """Swap each target layer's weight for ``W + scale * B A`` of ``state`` (None: what
        ``slot`` holds) while inside, whatever the slots' switches are (a caller that has them
        off already, such as a decoding loop, keeps them off). The original weight tensors are
        put back, untouched, on exit; the slot's own weights are not changed."""
        adapter = state if state is not None else self.state(slot)
        swapped: list[tuple[torch.nn.Module, torch.nn.Parameter]] = []
        try:
            with torch.no_grad():
                for name, module in self.model.named_modules():
                    if not (isinstance(module, LoraLayer) and slot in module.lora_A):
                        continue
                    if slot in module.lora_variant:  # DoRA and the like: not a plain B A
                        raise ValueError(f"slot {slot!r} is not a plain LoRA adapter")
                    a, b = adapter[f"{name}.lora_A.weight"], adapter[f"{name}.lora_B.weight"]
                    base = module.get_base_layer()
                    weight = base.weight
                    assert isinstance(weight, torch.nn.Parameter)
                    a = a.to(weight.device, torch.float32)
                    b = b.to(weight.device, torch.float32)
                    if getattr(module, "fan_in_fan_out", False):
                        a, b = b.T, a.T  # the weight is stored transposed: (B A)^T = A^T B^T
                    # W + scale * B A in one float32 pass, then to the model's dtype
                    folded = torch.addmm(weight.float(), b, a, alpha=module.scaling[slot])
                    folded = folded.to(weight.dtype)
                    swapped.append((base, weight))
                    base.weight = torch.nn.Parameter(folded, requires_grad=False)
            yield
        finally:
            for base, weight in swapped:
                base.weight = weight


def checksum(state: AdapterState) -> str:
    """sha256 of an adapter's weights, independent of how the file was written."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_adapter(
    state: AdapterState,
    spec: LoraSpec,
    target: Path,
    *,
    base_model: str = "",
    extra: dict | None = None,
) -> str:
    """Write an adapter in PEFT format to ``target`` atomically; return its checksum."""
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"adapter folder {target} exists already")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        config = spec.peft_config(base_model).to_dict()
        config["target_modules"] = sorted(config["target_modules"])
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS_FILE))
        digest = checksum(state)
        meta = {"checksum": digest, **(extra or {})}
        (tmp / "seal.json").write_text(json.dumps(meta, indent=2, default=str))
        for path in tmp.iterdir():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return digest


def load_adapter(source: Path, *, expected_checksum: str | None = None) -> AdapterState:
    """Read an adapter's weights; refuse them if they do not match the recorded checksum."""
    state = load_file(str(Path(source) / WEIGHTS_FILE))
    if expected_checksum is not None and checksum(state) != expected_checksum:
        raise ValueError(f"adapter at {source} does not match its checksum")
    return state
