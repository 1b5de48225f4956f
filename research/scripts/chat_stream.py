"""Streamed chat against a running service: how soon the first piece of a reply arrives, what
streaming costs over the whole reply, and whether a client that leaves early frees the model.

With the service running (`make run`) and a tenant's key:

    .venv/bin/python research/scripts/chat_stream.py --key seal-... --trials 3

Each trial asks the same long reply (greedy, ``--max-tokens``) without and with ``stream``,
alternated so that the machine's drift falls on both. Then it reads 5 pieces of a streamed
reply, disconnects, and times a short request: it waits for the model only if the abandoned
reply kept decoding.
"""

from __future__ import annotations

import argparse
import json
import time

import httpx

PROMPT = "Write a long story about a lighthouse keeper."


def ask(args: argparse.Namespace, max_tokens: int, stream: bool, leave_after: int = 0) -> dict:
    """One request; for a stream, when its first piece came and how many pieces there were."""
    body = {
        "model": "tenant",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    headers = {"Authorization": f"Bearer {args.key}"}
    started = time.perf_counter()
    first, pieces, text = None, 0, ""
    url = f"{args.url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=600) as response:
        response.raise_for_status()
        if not stream:
            text = json.loads(response.read())["choices"][0]["message"]["content"]
        for line in response.iter_lines() if stream else ():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line.removeprefix("data: "))
            content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if content:
                pieces += 1
                text += content
                first = first if first is not None else time.perf_counter() - started
                if leave_after and pieces >= leave_after:
                    break
    return {
        "seconds": time.perf_counter() - started,
        "first": first,
        "pieces": pieces,
        "text": text,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="a tenant's API key")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()

    ask(args, 4, stream=False)  # warm-up: the API loads the model at the first chat
    for trial in range(1, args.trials + 1):
        plain = ask(args, args.max_tokens, stream=False)
        streamed = ask(args, args.max_tokens, stream=True)
        same = "the same text" if streamed["text"] == plain["text"] else "A DIFFERENT TEXT"
        print(
            f"trial {trial}: without stream {plain['seconds']:.2f} s; streamed: first piece "
            f"after {streamed['first']:.2f} s, {streamed['pieces']} pieces in "
            f"{streamed['seconds']:.2f} s, {same}",
            flush=True,
        )
    left = ask(args, args.max_tokens, stream=True, leave_after=5)
    after = ask(args, 8, stream=False)
    print(
        f"left after 5 pieces ({left['seconds']:.2f} s); the next short request took "
        f"{after['seconds']:.2f} s"
    )


if __name__ == "__main__":
    main()
