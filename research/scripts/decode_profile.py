"""Where one single-stream decoding step of the default model spends its time.

One chat prompt, 64 greedy tokens, the bare base model, in each dtype named (default: float32
and bfloat16): tokens/s through ``seal.generation.generate`` (Hugging Face's ``generate``, the
serial engine's path), through a bare loop (one forward pass with a ``DynamicCache`` and an
argmax per token: what any engine must pay), the same loop with one thread, and the bare loop's
operators by their own CPU time (``torch.profiler``), the Python between them included as the
gap to the wall clock.

    .venv/bin/python research/scripts/decode_profile.py [float32] [bfloat16]
"""

from __future__ import annotations

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import DynamicCache

from seal.generation import SampleConfig, generate, narrow_head
from seal.lora import STUDENT, AdapterHost
from seal.modeling import load_model
from service.settings import Settings
from worker.config import student_spec

TOKENS = 64
QUESTION = "Explain in a few sentences how a harbour town grows over a century."


def bare_loop(host: AdapterHost, tokens: int) -> float:
    """Seconds for ``tokens`` greedy steps after the prefill, one forward pass each."""
    tok = host.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False
    )
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    with host.use(None) as model, narrow_head(model), torch.inference_mode():
        cache = DynamicCache(config=model.config)
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        token = logits.logits[:, -1].argmax(-1, keepdim=True)
        started = time.perf_counter()
        for _ in range(tokens):
            out = model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        return time.perf_counter() - started


def through_generate(host: AdapterHost, tokens: int) -> float:
    config = SampleConfig(max_new_tokens=tokens, temperature=0.0, seed=0, batch_size=1)
    started = time.perf_counter()
    out = generate(host, [[{"role": "user", "content": QUESTION}]], config)
    seconds = time.perf_counter() - started
    return seconds * tokens / max(out[0].completion_tokens, 1)


def main() -> None:
    settings = Settings()
    threads = torch.get_num_threads()
    for dtype in sys.argv[1:] or ("float32", "bfloat16"):
        loaded = load_model(
            settings.student_model, settings.resolved_model_cache_dir, device="cpu", dtype=dtype
        )
        host = AdapterHost(loaded, {STUDENT: student_spec(settings)})
        bare_loop(host, 4)  # warm-up
        for label, run in (("generate", through_generate), ("bare loop", bare_loop)):
            best = min(run(host, TOKENS) for _ in range(3))
            print(
                f"{dtype} {label}: {1000 * best / TOKENS:.1f} ms/token, {TOKENS / best:.1f} tok/s"
            )
        torch.set_num_threads(1)
        one = min(bare_loop(host, TOKENS) for _ in range(2))
        torch.set_num_threads(threads)
        print(f"{dtype} bare loop, 1 thread: {1000 * one / TOKENS:.1f} ms/token")
        started = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            bare_loop(host, 16)
        wall = (time.perf_counter() - started) * 1e6
        events = prof.key_averages()
        ops = sum(e.self_cpu_time_total for e in events)
        print(f"{dtype} profile of 16 steps: operators {ops / wall:.0%} of the wall clock")
        print(events.table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
