"""Counted drops and accepted inputs, with each new kind of bad input logged once."""

from __future__ import annotations

import logging
from collections import Counter
from enum import StrEnum

log = logging.getLogger("trygg.gateway.input")


class DropReason(StrEnum):
    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    UNEXPECTED_VALUE = "unexpected_value"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_TOPIC = "unknown_topic"
    DUPLICATE = "duplicate"
    QUEUE_FULL = "queue_full"


class InputCounters:
    def __init__(self) -> None:
        self.dropped: Counter[DropReason] = Counter()
        self.accepted: Counter[str] = Counter()
        self._logged: set[tuple[DropReason, str]] = set()

    def drop(self, reason: DropReason, source: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        key = (reason, source)
        if key in self._logged:
            log.debug("dropped %s from %s: %s", reason, source, detail)
            return
        if len(self._logged) < 10_000:  # bounded memory under a flood of new sources
            self._logged.add(key)
        log.warning("dropped %s input from %s: %s (further ones counted)", reason, source, detail)

    def accept(self, what: str) -> None:
        self.accepted[what] += 1
