"""Reconnect delays: exponential with full jitter, so a fleet does not reconnect in step."""

from __future__ import annotations

import random

URGENT_CAP_S = 0.5


class Backoff:
    def __init__(self, first_s: float = 0.5, cap_s: float = 30.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self, *, urgent: bool = False) -> float:
        """``urgent`` caps the delay at half a second: used while an alarm is waiting."""
        cap = min(self.cap_s, URGENT_CAP_S) if urgent else self.cap_s
        ceiling = min(cap, self.first_s * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return random.uniform(self.first_s / 2, ceiling)
