"""What the API counts per tenant as requests come: requests in the last minute (the
``requests_per_minute`` quota, a moving window kept by the ``limits`` library, in this process
or in Redis) and chats being decoded (``concurrent_chats``, in this process, where they decode).

A storage that fails (Redis gone) lets requests through and logs it: the rate limit guards the
service, it must not take it down.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from service.domain.errors import Busy, QuotaExceeded

log = logging.getLogger(__name__)

#: Chats one API process answers at once, whatever their tenants: each holds one of AnyIO's 40
#: worker threads while it decodes, and the other routes (``/healthz`` included) need the
#: rest. Past it a chat is answered 503 with ``Retry-After``.
ALL_CHATS = 32


class TenantCounters:
    """The per-tenant counts of one API process (its ``app.state.counters``)."""

    def __init__(self, storage_uri: str = "memory://", all_chats: int = ALL_CHATS) -> None:
        self.all_chats = all_chats
        self.storage = storage_from_string(storage_uri)
        self.window = MovingWindowRateLimiter(self.storage)
        self._chats: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, per_minute: int, *key: str, what: str) -> tuple[bool, int, int] | None:
        """Count one event under ``key``: whether it is within ``per_minute``, how many
        remain, and the seconds until the window lets one more in; None when the storage
        failed (logged: ``what`` goes through)."""
        item = RateLimitItemPerMinute(per_minute)
        try:
            allowed = self.window.hit(item, *key)
            stats = self.window.get_window_stats(item, *key)
        except Exception:
            log.exception("the rate limit's storage failed; %s goes through", what)
            return None
        return allowed, stats.remaining, max(0, math.ceil(stats.reset_time - time.time()))

    def hit(self, tenant_id: str, per_minute: int) -> dict[str, str]:
        """Count one request; 429 when it is past the tenant's ``per_minute``. Returns the
        ``RateLimit-*`` headers that tell the client where it stands (none when the storage
        cannot tell)."""
        counted = self._count(per_minute, "tenant", tenant_id, what="the request")
        if counted is None:
            return {}
        allowed, remaining, reset = counted
        if allowed:
            return {
                "RateLimit-Limit": str(per_minute),
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(reset),
            }
        raise QuotaExceeded(
            f"over quota requests_per_minute: this tenant sent {per_minute:,} requests in the "
            "last minute, its limit; retry after the Retry-After header's seconds",
            retry_after=reset,
        )

    def requests(self, tenant_id: str, per_minute: int) -> int:
        """The tenant's requests in the last minute (0 when the storage cannot tell)."""
        item = RateLimitItemPerMinute(per_minute)
        try:
            remaining = self.window.get_window_stats(item, "tenant", tenant_id).remaining
        except Exception:
            log.exception("the rate limit's storage failed")
            return 0
        return per_minute - remaining

    def sign_in_failed(self, client: str, per_minute: int) -> int:
        """Count a failed dashboard sign-in from ``client``; the seconds to wait when it is
        past ``per_minute`` of them, else 0 (a failing storage never throttles)."""
        counted = self._count(per_minute, "sign-in", client, what="the sign-in")
        if counted is None or counted[0]:
            return 0
        return max(1, counted[2])

    def open_chat(self, tenant_id: str, limit: int) -> Callable[[], None]:
        """Count one chat of the tenant as decoding; 429 when ``limit`` already are. Returns
        its release, which may be called more than once (only the first counts)."""
        with self._lock:
            if self._chats[tenant_id] >= limit:
                running = self._chats[tenant_id]
                raise QuotaExceeded(
                    f"over quota concurrent_chats: {running} chats of this tenant are being "
                    f"answered, its limit is {limit}; retry when one has finished",
                    retry_after=1,
                )
            if self._chats.total() >= self.all_chats:
                raise Busy(
                    f"this API process is answering {self.all_chats} chats, all it takes at "
                    "once; retry after the Retry-After header's seconds"
                )
            self._chats[tenant_id] += 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                self._chats[tenant_id] -= 1
                if self._chats[tenant_id] <= 0:
                    del self._chats[tenant_id]

        return release

    def chats(self, tenant_id: str) -> int:
        """The tenant's chats being answered by this process."""
        with self._lock:
            return self._chats[tenant_id]
