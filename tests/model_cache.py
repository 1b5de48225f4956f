"""The default model, converted once per machine into a cache the tests share."""

from __future__ import annotations

import os
from pathlib import Path

from seal.modeling import resolve_model_path

ROOT = Path(__file__).resolve().parent.parent
#: Kept between runs (git ignores var/): the first run converts the GGUF file (~20 s).
CACHE = Path(os.environ.get("SEAL_TEST_MODEL_CACHE", ROOT / "var" / "test-models"))


def default_model_dir() -> Path:
    return resolve_model_path("smollm2", CACHE)
