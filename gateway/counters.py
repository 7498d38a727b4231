"""Counted drops and accepted inputs.

A bad input is counted by reason and by source (a topic, a port, a BLE address) and
logged once per source and reason with why; what follows from the same source is only
counted, and summed up in one line per source at most once a ``summary_s``. A device
that repeats a bad message every second fills no disk with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger("trygg.gateway.input")

MAX_SOURCES = 10_000  # bounded memory under a flood of new sources
MAX_DETAIL = 200
OTHER_SOURCES = "(other sources)"


class DropReason(StrEnum):
    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    UNEXPECTED_VALUE = "unexpected_value"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_TOPIC = "unknown_topic"
    DUPLICATE = "duplicate"
    REPLAYED = "replayed"  # an encrypted message older than one already accepted
    QUEUE_FULL = "queue_full"
    INTERNAL_ERROR = "internal_error"  # the gateway failed on it: a bug, logged with its trace
    UNAUTHENTICATED = "unauthenticated"  # a native device's wrong or missing credential


Key = tuple[DropReason, str]


def printable(text: str) -> str:
    """A reason fit for a log line: bounded, and escaped (a device's NUL or lone surrogate
    in it must not break the log handler)."""
    text = text[:MAX_DETAIL]
    return text if text.isprintable() and text.isascii() else ascii(text)[1:-1]


class InputCounters:
    def __init__(
        self, *, summary_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.dropped: Counter[DropReason] = Counter()
        self.accepted: Counter[str] = Counter()
        self.by_source: Counter[Key] = Counter()
        self.last_detail: dict[Key, str] = {}
        self.summary_s = summary_s
        self._clock = clock
        self._unreported: Counter[Key] = Counter()
        self._last_summary = clock()

    def drop(
        self,
        reason: DropReason,
        source: str,
        detail: str = "",
        error: BaseException | None = None,
    ) -> None:
        """Count one dropped input. ``error`` is a failure of the gateway's own (not of
        the input): its traceback is logged with the first one from the source."""
        self.dropped[reason] += 1
        key = (reason, source)
        if key not in self.by_source and len(self.by_source) >= MAX_SOURCES:
            key = (reason, OTHER_SOURCES)
        detail = printable(detail)
        first = key not in self.by_source
        self.by_source[key] += 1
        self.last_detail[key] = detail
        if first:
            log.warning(
                "dropped %s input from %s: %s (further ones from it are counted)",
                reason,
                printable(source),
                detail,
                exc_info=error,
            )
            return
        self._unreported[key] += 1
        if self._clock() - self._last_summary >= self.summary_s:
            self.summarise()

    def summarise(self) -> None:
        """One line per source that dropped more since the last summary."""
        since = self._clock() - self._last_summary
        self._last_summary = self._clock()
        for (reason, source), n in sorted(self._unreported.items()):
            log.warning(
                "dropped %d more %s inputs from %s in the last %.0f s (%d in all; last: %s)",
                n,
                reason,
                printable(source),
                since,
                self.by_source[reason, source],
                self.last_detail[reason, source],
            )
        self._unreported.clear()

    async def run(self) -> None:
        """Sum up what a source that went quiet dropped since the last summary."""
        while True:
            await asyncio.sleep(self.summary_s)
            if self._unreported:
                self.summarise()

    def accept(self, what: str) -> None:
        self.accepted[what] += 1
