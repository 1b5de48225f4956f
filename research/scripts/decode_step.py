"""Milliseconds per decoding step of the default model: bare, wrapped by PEFT with the adapter
disabled, with a teacher adapter in its PEFT slot, and with the same adapter folded into the
weights (``AdapterHost.merged``, what ``generate`` does); the bare model again with the
vocabulary head of few rows computed as ``W x^T`` (``narrow_head``, what ``generate`` does in
float32 on a CPU); in float32 and bf16 (or the dtypes named). ``PROMPTS=N`` in the environment
sets the rows.

Five prompts sampled together for 64 tokens, two trials each, after a short warm-up:

    .venv/bin/python research/scripts/decode_step.py [float32] [bfloat16]
"""

from __future__ import annotations

import os
import sys
import time

import torch

from seal.generation import narrow_head
from seal.lora import STUDENT, TEACHER, AdapterHost
from seal.modeling import load_model
from service.settings import Settings
from worker.config import student_spec, teacher_spec

PROMPTS = int(os.environ.get("PROMPTS", "5"))
TOKENS = 64


def bench(model: torch.nn.Module, tokenizer, label: str) -> None:  # type: ignore[no-untyped-def]
    tokenizer.padding_side = "left"
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Write ten implications of passage {i}."}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i in range(PROMPTS)
    ]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    common = dict(pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=1.0, top_k=0)
    with torch.inference_mode():
        model.generate(**enc, max_new_tokens=4, min_new_tokens=4, **common)  # type: ignore[operator]
        for _ in range(2):
            started = time.perf_counter()
            model.generate(**enc, max_new_tokens=TOKENS, min_new_tokens=TOKENS, **common)  # type: ignore[operator]
            seconds = time.perf_counter() - started
            print(
                f"{label}: {1000 * seconds / TOKENS:.1f} ms/step, "
                f"{PROMPTS * TOKENS / seconds:.1f} tok/s",
                flush=True,
            )


def main() -> None:
    settings = Settings()
    for dtype in sys.argv[1:] or ("float32", "bfloat16"):
        loaded = load_model(
            settings.student_model, settings.resolved_model_cache_dir, device="cpu", dtype=dtype
        )
        bench(loaded.model, loaded.tokenizer, f"{dtype} bare")
        with narrow_head(loaded.model):
            bench(loaded.model, loaded.tokenizer, f"{dtype} bare, narrow head")
        host = AdapterHost(
            loaded, {STUDENT: student_spec(settings), TEACHER: teacher_spec(settings)}
        )
        with host.use(None) as model:
            bench(model, host.tokenizer, f"{dtype} PEFT, adapter disabled")
        # a trained teacher's scale of weights (B = 0 would be the identity update)
        generator = torch.Generator().manual_seed(0)
        teacher = {
            key: torch.randn(value.shape, generator=generator) * 0.02
            for key, value in host.fresh_state(TEACHER).items()
        }
        with host.use(TEACHER, teacher) as model:
            bench(model, host.tokenizer, f"{dtype} PEFT, teacher slot")
        with host.merged(TEACHER, teacher) as model:
            bench(model, host.tokenizer, f"{dtype} teacher folded into the weights")
        del host, loaded


if __name__ == "__main__":
    main()
