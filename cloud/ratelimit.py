"""Sign-in throttling: after a few wrong passwords for a name, further attempts for it
are refused for a while, right password or not; an address gets more (a whole alarm
centre may sign in from one), but not unlimited.

In memory, per replica: with N replicas an attacker gets at most N times the attempts,
still a handful a minute rather than thousands.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_KEYS = 100_000  # memory bound: the oldest keys are forgotten first


def _default_limits() -> dict[str, int]:
    return {"user": 5, "ip": 50}


@dataclass
class LoginLimiter:
    # Failures allowed in ``window_s``, by the kind of key ("user:anna", "ip:10.0.0.7").
    limits: dict[str, int] = field(default_factory=_default_limits)
    window_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, *keys: str) -> float:
        """Seconds until these keys may try again (0: now)."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            times = self._seen.get(key)
            if not times:
                continue
            while times and now - times[0] > self.window_s:
                times.popleft()
            if len(times) >= self._limit(key):
                wait = max(wait, self.window_s - (now - times[0]))
        return wait

    def failed(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            times = self._seen.pop(key, None) or deque(maxlen=self._limit(key))
            times.append(now)
            self._seen[key] = times  # re-inserted: most recently failed last
        while len(self._seen) > MAX_KEYS:
            del self._seen[next(iter(self._seen))]

    def _limit(self, key: str) -> int:
        return self.limits.get(key.split(":", 1)[0], min(self.limits.values()))

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._seen.pop(key, None)
