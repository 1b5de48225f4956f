"""What a streamed chat's text costs: ``ReplyStream`` decodes the whole reply so far at every
token (so that stop strings and half characters are cut exactly as ``generate`` cuts them),
which is quadratic in the reply's length. This times that decoding alone, for replies of
dev.json text of a few lengths, with the default model's tokenizer.

    .venv/bin/python research/scripts/stream_decode.py 256 1024 4096
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from seal.modeling import resolve_model_path
from service.settings import Settings

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "squad" / "dev.json"


def main() -> None:
    from transformers import AutoTokenizer

    lengths = [int(a) for a in sys.argv[1:]] or [256, 1024, 4096]
    settings = Settings()
    path = resolve_model_path(settings.student_model, settings.resolved_model_cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    text = " ".join(p["context"] for p in json.loads(DATA.read_text()))
    ids = tokenizer(text)["input_ids"][: max(lengths)]
    for n in lengths:
        started = time.perf_counter()
        for k in range(1, n + 1):
            tokenizer.decode(ids[:k], skip_special_tokens=True)
        total = time.perf_counter() - started
        print(
            f"reply of {n} tokens: {total:.2f} s decoding every prefix, "
            f"{1000 * total / n:.2f} ms per token on average",
            flush=True,
        )


if __name__ == "__main__":
    main()
