"""Admission under load: a concurrent-ingest ceiling (-> 503) and a per-device event rate (-> 429).

Per process, in memory: with several workers each has its own counters (the database is the only shared state).
"""

from __future__ import annotations

import math
import threading

from fastapi.responses import JSONResponse

from core.clock import Clock
from server.settings import Settings


class Overload:
    """Concurrent-ingest ceiling (-> 503) and a per-device token bucket of events (-> 429)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._inflight = 0
        self._buckets: dict[str, tuple[float, float]] = {}

    def enter(self) -> bool:
        with self._lock:
            if self._inflight >= self.settings.max_concurrent_ingest:
                return False
            self._inflight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._inflight -= 1

    def take(self, device_id: str, events: int) -> float:
        """Take ``events`` tokens; 0.0 when allowed, else seconds until the bucket would allow it."""
        rate, burst = self.settings.device_rate_eps, self.settings.device_burst
        now = self.clock.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(device_id, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - last) * rate)
            if events <= tokens:
                self._buckets[device_id] = (tokens - events, now)
                return 0.0
            self._buckets[device_id] = (tokens, now)
            needed = min(events, burst) - tokens
            return max(1.0, needed / rate) if rate > 0 else 60.0


def retry_later(status: int, seconds: float, detail: str) -> JSONResponse:
    """A 429/503 answer with ``Retry-After`` in whole seconds (at least 1)."""
    return JSONResponse(
        {"detail": detail}, status_code=status, headers={"Retry-After": str(max(1, math.ceil(seconds)))}
    )
