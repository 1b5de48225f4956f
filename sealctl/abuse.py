"""One tenant against the others, measured: ``python -m sealctl.abuse``.

Starts the API alone (the embedded store, the configured model) in a folder of its own, makes
two tenants, then prints what issue "One tenant cannot hurt another" sets targets on:

1. **Bodies before keys**: a 200 MB body sent with a made-up key, alone and 10 at once: the
   seconds to the answer and how much the API process grew (its resident memory, from /proc).
2. **A tenant's chat flood**: tenant A sends ``--chats`` long streamed chats at once (prompts
   of about ``--prompt-words`` words, ``--max-tokens`` each) while a prober asks ``/healthz`` and
   tenant B's ``GET /v1/documents`` every 0.25 s: A's statuses (200, or 429 past its
   ``concurrent_chats`` quota), A's time to first token, and the prober's latencies. One chat
   of B's loads the model first, as in a service in use.

Timings depend on the machine and on what else runs on it: name it beside every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from sealctl.stack import running_stack, stack_env

MB = 1024 * 1024


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid``, in MB (Linux's /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def big_body(url: str, size: int = 200 * MB) -> tuple[float, int]:
    """POST a ``size``-byte JSON body to /v1/documents with a made-up key, as fast as the
    socket takes it, until the server answers; the seconds to its status line, and it."""
    parts = urlsplit(url)
    started = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        head = (
            f"POST /v1/documents HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Authorization: Bearer seal-made-up-key\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n"
        )
        sock.sendall(head.encode())
        chunk = b"{" + b" " * (MB - 1)
        sent = 0
        sock.setblocking(False)
        reply = b""
        while b"\r\n" not in reply:
            try:
                reply += sock.recv(4096)
                if not reply:
                    break
            except BlockingIOError:
                pass
            if sent < size:
                try:
                    sent += sock.send(chunk[: min(MB, size - sent)])
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    time.sleep(0.001)
            else:
                time.sleep(0.001)
        seconds = time.perf_counter() - started
    status = int(reply.split(b" ")[1]) if reply.startswith(b"HTTP/") else 0
    return seconds, status


async def flood(url: str, key_a: str, key_b: str, chats: int, words: int, tokens: int) -> dict:
    """Tenant A's chats at once, tenant B's and /healthz's latencies meanwhile."""
    prompt = " ".join(["the harbour of Poseidonia holds forty ships"] * (words // 7))
    body = {
        "model": "student",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "stream": True,
    }
    statuses: Counter[int | str] = Counter()
    first_token: list[float] = []
    probes: dict[str, list[float]] = {"/healthz": [], "/v1/documents (tenant B)": []}
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=chats + 8)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def chat() -> None:
            try:
                await one_chat()
            except httpx.HTTPError as exc:  # counted, not fatal: the figures say how many
                statuses[type(exc).__name__] += 1

        async def one_chat() -> None:
            started = time.perf_counter()
            headers = {"Authorization": f"Bearer {key_a}"}
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as r:
                statuses[r.status_code] += 1
                seen = False
                async for line in r.aiter_lines():  # read to the end, as a client does
                    content = '"content"' in line and '"content":""' not in line
                    if r.status_code == 200 and content and not seen:
                        first_token.append(time.perf_counter() - started)
                        seen = True

        async def probe() -> None:
            b = {"Authorization": f"Bearer {key_b}"}
            while not done.is_set():
                for path, headers in (("/healthz", {}), ("/v1/documents", b)):
                    t = time.perf_counter()
                    await client.get(path, headers=headers)
                    name = path if path == "/healthz" else "/v1/documents (tenant B)"
                    probes[name].append(time.perf_counter() - t)
                await asyncio.sleep(0.25)

        prober = asyncio.create_task(probe())
        started = time.perf_counter()
        await asyncio.gather(*(chat() for _ in range(chats)))
        elapsed = time.perf_counter() - started
        done.set()
        await prober
    return {"statuses": statuses, "first_token": first_token, "probes": probes, "s": elapsed}


def _stats(values: list[float]) -> str:
    if not values:
        return "none"
    return f"n={len(values)} median {statistics.median(values):.2f} s, max {max(values):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, default=48)
    parser.add_argument("--prompt-words", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--body-mb", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = stack_env(Path(folder), {"SEAL_API_WORKERS": "1"})
        with running_stack(env, Path(folder) / "logs", processes=("api",)) as stack:
            pid = stack.pid("api")
            assert pid is not None
            keys = []
            for name in ("tenant-a", "tenant-b"):
                r = httpx.post(f"{stack.url}/v1/tenants", json={"name": name}, headers=stack.admin)
                keys.append(r.raise_for_status().json()["api_key"])
            print(f"API at {stack.url}, pid {pid}, {rss_mb(pid):.0f} MB resident")
            before = rss_mb(pid)
            seconds, status = big_body(stack.url, args.body_mb * MB)
            print(
                f"1. {args.body_mb} MB body, made-up key: {status} in {seconds:.3f} s; "
                f"the API grew {rss_mb(pid) - before:+.1f} MB"
            )
            before = rss_mb(pid)
            started = time.perf_counter()

            async def ten() -> list[tuple[float, int]]:
                return await asyncio.gather(
                    *(asyncio.to_thread(big_body, stack.url, args.body_mb * MB) for _ in range(10))
                )

            results = asyncio.run(ten())
            print(
                f"   10 at once: statuses {sorted(Counter(s for _, s in results).items())}, "
                f"slowest {max(s for s, _ in results):.3f} s, all in "
                f"{time.perf_counter() - started:.3f} s; the API grew "
                f"{rss_mb(pid) - before:+.1f} MB"
            )
            # a service in use has its model loaded: one chat of tenant B loads it first
            warm = {"model": "student", "messages": [{"role": "user", "content": "hi"}]}
            httpx.post(
                f"{stack.url}/v1/chat/completions",
                json={**warm, "max_tokens": 4},
                headers={"Authorization": f"Bearer {keys[1]}"},
                timeout=600,
            ).raise_for_status()
            before = rss_mb(pid)
            out = asyncio.run(
                flood(stack.url, keys[0], keys[1], args.chats, args.prompt_words, args.max_tokens)
            )
            statuses = sorted(out["statuses"].items(), key=str)
            print(
                f"2. tenant A: {args.chats} streamed chats at once (~{args.prompt_words} words, "
                f"{args.max_tokens} tokens): statuses {statuses} in "
                f"{out['s']:.1f} s; time to first token {_stats(out['first_token'])}; the API "
                f"grew {rss_mb(pid) - before:+.1f} MB"
            )
            for path, values in out["probes"].items():
                print(f"   meanwhile {path}: {_stats(values)}")


if __name__ == "__main__":
    main()
