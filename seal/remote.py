"""A teacher that is not ours: any OpenAI-compatible chat endpoint writes the self-edits.

Enterprises may keep the small student in house and let a large hosted model (vLLM, OpenAI,
another SEAL instance) write its training data: the decoupled teacher-student setting of the
SEAL paper. Each self-edit is one ``POST {url}/chat/completions`` with ``n`` = 1 (the one
value every such server accepts) and its own seed; a passage's k requests and the passages'
requests run a few at a time. A request that fails for a reason that may pass (a timeout, a
dropped connection, 408, 409, 429, 5xx) is tried again after a growing pause; any other
answer, or the last failed try, raises ``TeacherUnavailable`` with what the server said.

The reply is taken as it comes: a remote model cannot be primed with the start of its reply
the way the bundled teacher is (``seal.selfedit.PRIMERS``), and a large one needs no primer.
Its weights are not ours either, so ReST-EM cannot train it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from seal.generation import Messages, SampleConfig

#: Statuses worth another try: the server was busy, overloaded or restarting.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class TeacherUnavailable(RuntimeError):
    """The external teacher did not write a self-edit: unreachable, or it refused."""


@dataclass(frozen=True)
class RemoteTeacher:
    """An OpenAI-compatible chat endpoint as the teacher."""

    url: str
    """The API's base URL, up to and including ``/v1`` (``.../v1/chat/completions`` is
    called)."""
    model: str
    api_key: str | None = None
    timeout_s: float = 120.0
    """Per request: connecting, and waiting for the whole reply."""
    retries: int = 3
    """Tries after the first for a failure that may pass."""
    backoff_s: float = 1.0
    """The pause before the first retry; it doubles for each further one."""
    concurrency: int = 4
    """Requests in flight at once."""

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/chat/completions"

    def complete_many(
        self,
        conversations: Sequence[Messages],
        sample: SampleConfig,
        k: int,
        *,
        on_done: Callable[[int], None] | None = None,
    ) -> list[list[str]]:
        """k replies to each conversation (seeds ``sample.seed + j``, j < k); ``on_done(i)``
        after conversation i has all of its replies."""
        replies = self.complete_many_finished(conversations, sample, k, on_done=on_done)
        return [[text for text, _ in row] for row in replies]

    def complete_many_finished(
        self,
        conversations: Sequence[Messages],
        sample: SampleConfig,
        k: int,
        *,
        on_done: Callable[[int], None] | None = None,
    ) -> list[list[tuple[str, bool]]]:
        """:meth:`complete_many`, each reply with whether the token limit cut it off
        (``finish_reason`` "length")."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        jobs = [(i, j) for i in range(len(conversations)) for j in range(k)]
        replies: dict[tuple[int, int], tuple[str, bool]] = {}
        with (
            httpx.Client(timeout=self.timeout_s, headers=headers) as client,
            ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool,
        ):

            def one(job: tuple[int, int]) -> tuple[tuple[int, int], tuple[str, bool]]:
                i, j = job
                return job, self._complete(client, conversations[i], sample, j)

            left = {i: k for i in range(len(conversations))}
            for job, text in pool.map(one, jobs):
                replies[job] = text
                left[job[0]] -= 1
                if on_done is not None and left[job[0]] == 0:
                    on_done(job[0])
        return [[replies[(i, j)] for j in range(k)] for i in range(len(conversations))]

    def _complete(
        self, client: httpx.Client, messages: Messages, sample: SampleConfig, index: int
    ) -> tuple[str, bool]:
        body: dict[str, object] = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": sample.max_new_tokens,
            "temperature": sample.temperature,
            "top_p": sample.top_p,
            "n": 1,
        }
        if sample.seed is not None:
            body["seed"] = sample.seed + index
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = client.post(self.endpoint, json=body)
            except httpx.HTTPError as exc:  # connection refused, reset, timed out
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUSES:
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                continue
            if response.status_code != 200:
                raise TeacherUnavailable(
                    f"the teacher at {self.endpoint} refused the request with HTTP "
                    f"{response.status_code}: {response.text[:300]}"
                )
            return _reply_text(response, self.endpoint)
        raise TeacherUnavailable(
            f"the teacher at {self.endpoint} did not answer after {self.retries + 1} tries "
            f"({problem})"
        )


def _reply_text(response: httpx.Response, endpoint: str) -> tuple[str, bool]:
    """The reply's text, and whether the token limit cut it off."""
    try:
        choice = response.json()["choices"][0]
        content = choice["message"]["content"]
        truncated = choice.get("finish_reason") == "length"
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise TeacherUnavailable(
            f"the teacher at {endpoint} answered something that is not a chat completion "
            f"({type(exc).__name__}: {response.text[:200]})"
        ) from exc
    return str(content or "").strip(), truncated
