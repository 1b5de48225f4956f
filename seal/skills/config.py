"""The few-shot self-edit: a training configuration, parsed strictly and clamped to safe bounds.

The teacher writes the paper's JSON (Continual-Intelligence/SEAL, ``few-shot/self-edit.py``):
which augmentations generate the training data, whether the loss covers every token or the
outputs only, the learning rate and the epochs. What it writes is untrusted text: anything
but one JSON object with exactly those keys and types is refused with a ``ConfigError`` that
says what is wrong (the configuration then earns reward 0), and the numbers are clamped into
``ConfigBounds`` so that no configuration can ask for a diverging or endless training.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

ALL_TOKENS = "train_using_all_tokens"
OUTPUT_TOKENS = "train_using_output_tokens"
STRATEGIES = (ALL_TOKENS, OUTPUT_TOKENS)

_AUGMENTATIONS = (
    "use_basic_augmentations",
    "use_size_augmentations",
    "use_chain_augmentations",
    "use_repeat_augmentations",
)
_TRAINING = ("strategy", "learning_rate", "num_train_epochs")
_SECTIONS = {"data_generation": _AUGMENTATIONS, "training": _TRAINING}


@dataclass(frozen=True)
class SkillConfig:
    """The paper's self-edit for a few-shot task."""

    use_basic_augmentations: bool
    """Rotations, flips and the transpose of every grid."""
    use_size_augmentations: bool
    """Every cell as 2x2, double height, double width."""
    use_chain_augmentations: bool
    """A rotation, flip or transpose, then every cell as 2x2."""
    use_repeat_augmentations: bool
    """The grid tiled twice along the rows, the columns, or both."""
    strategy: str
    """``ALL_TOKENS``: the loss covers the whole conversation; ``OUTPUT_TOKENS``: the
    answer only."""
    learning_rate: float
    num_train_epochs: int

    def as_dict(self) -> dict[str, Any]:
        """The paper's nested shape: ``{"data_generation": {...}, "training": {...}}``."""
        return {
            "data_generation": {name: getattr(self, name) for name in _AUGMENTATIONS},
            "training": {name: getattr(self, name) for name in _TRAINING},
        }

    def to_json(self) -> str:
        """``as_dict`` as one line of JSON, which ``parse_config`` reads back unchanged."""
        return json.dumps(self.as_dict())


@dataclass(frozen=True)
class ConfigBounds:
    """What a configuration may ask for; values outside are clamped to the nearest bound."""

    min_learning_rate: float = 1e-5
    max_learning_rate: float = 1e-2
    """Above this a LoRA of the 135M model diverges within a few steps."""
    min_epochs: int = 1
    max_epochs: int = 8
    """Training is also cut at ``SkillScale.max_steps``, whatever the epochs."""


class ConfigError(ValueError):
    """A configuration that is refused; the message says what is wrong with it."""


_FENCE = re.compile(r"\A```(?:json)?[ \t]*\n(.*)\n[ \t]*```\Z", re.DOTALL | re.IGNORECASE)


def _no_constant(name: str) -> Any:
    raise ConfigError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(f"key {key!r} appears twice")
    return dict(pairs)


def parse_config(text: str, bounds: ConfigBounds = ConfigBounds()) -> SkillConfig:
    """One JSON object, alone: surrounding whitespace and one markdown fence (```json ... ```)
    are allowed, nothing else (no explanation before or after it, no second object). Then
    ``config_of``'s rules. Raises ``ConfigError``."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body:
        raise ConfigError("the configuration is empty")
    decoder = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    try:
        data, end = decoder.raw_decode(body)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if body[end:].strip():
        raise ConfigError(f"text after the JSON object: {body[end:].strip()[:40]!r}")
    return config_of(data, bounds)


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    section = data[name]
    if not isinstance(section, dict):
        raise ConfigError(f"{name!r} must be an object")
    _exact_keys(section, _SECTIONS[name], f"{name!r}")
    return section


def _exact_keys(data: dict[str, Any], expected: tuple[str, ...], where: str) -> None:
    missing = [key for key in expected if key not in data]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(map(repr, missing))}")
    unknown = [key for key in data if key not in expected]
    if unknown:
        raise ConfigError(f"{where} has unknown {', '.join(map(repr, unknown))}")


def config_of(data: Any, bounds: ConfigBounds = ConfigBounds()) -> SkillConfig:
    """A configuration from its parsed JSON: exactly the paper's keys, JSON booleans for the
    augmentations, ``strategy`` one of ``STRATEGIES``, the learning rate a finite number
    > 0, the epochs an integer > 0; the learning rate and the epochs then clamped into
    ``bounds``. Raises ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a JSON object")
    _exact_keys(data, tuple(_SECTIONS), "the configuration")
    generation, training = _section(data, "data_generation"), _section(data, "training")
    for name in _AUGMENTATIONS:
        if not isinstance(generation[name], bool):
            raise ConfigError(f"{name} must be true or false, not {generation[name]!r}")
    strategy = training["strategy"]
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be {STRATEGIES[0]!r} or {STRATEGIES[1]!r}")
    rate = training["learning_rate"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
        raise ConfigError(f"learning_rate must be a number, not {rate!r}")
    if rate <= 0:
        raise ConfigError(f"learning_rate must be > 0, not {rate!r}")
    epochs = training["num_train_epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int):
        raise ConfigError(f"num_train_epochs must be an integer, not {epochs!r}")
    if epochs <= 0:
        raise ConfigError(f"num_train_epochs must be > 0, not {epochs!r}")
    return SkillConfig(
        **{name: generation[name] for name in _AUGMENTATIONS},
        strategy=strategy,
        learning_rate=min(max(float(rate), bounds.min_learning_rate), bounds.max_learning_rate),
        num_train_epochs=min(max(epochs, bounds.min_epochs), bounds.max_epochs),
    )


DEFAULT_CONFIG = SkillConfig(
    use_basic_augmentations=True,
    use_size_augmentations=False,
    use_chain_augmentations=False,
    use_repeat_augmentations=False,
    strategy=OUTPUT_TOKENS,
    learning_rate=1e-3,
    num_train_epochs=2,
)
"""The one fixed configuration (the evaluation's "TTT, fixed config" row). On 2026-12-03
(SmolLM2-135M-Instruct, ``SkillScale()``, AMD EPYC, 2 cores) it got the held-out case of the
shipped ``word_reversal``, ``initials`` and ``house_date`` tasks right and 3 of their 4 test
cases each, against none in context alone; at learning rate 3e-3 it got no held-out case right."""

CONFIG_PROMPT = """You are configuring a model training pipeline by selecting from predefined tools.

You must make two decisions:

1. **Data Generation Tools** (they change grids; a task that is not a grid task is trained
on its examples in other orders either way). For each of the following, choose true or false:
    - use_basic_augmentations (rotations, flips, transposes)
    - use_size_augmentations (larger cells, double height, double width)
    - use_chain_augmentations (a rotation, flip or transpose, then larger cells)
    - use_repeat_augmentations (the grid repeated along rows, columns or both)

2. **Training Configuration** — Choose one of:
    - "train_using_all_tokens"
    - "train_using_output_tokens"

Also specify:
    - learning_rate (float)
    - num_train_epochs (integer)

### Output Format

Respond with a valid JSON object. Do not include any explanation, markdown, or extra text.
Use lowercase `true`/`false` for booleans and ensure correct JSON syntax.

Example output:

{
  "data_generation": {
    "use_basic_augmentations": ...,
    "use_size_augmentations": ...,
    "use_chain_augmentations": ...,
    "use_repeat_augmentations": ...
  },
  "training": {
    "strategy": ...,
    "learning_rate": ...,
    "num_train_epochs": ...
  }
}"""
"""The paper's self-edit prompt (``few-shot/utils/prompts.py``), adapted: what each group of
augmentations does, and that they only change grids."""
