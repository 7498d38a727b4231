"""Readings are group-committed: the pipeline appends, a task writes a batch at a time.

Memory is bounded: if the store cannot keep up and ``max_pending`` readings wait, the
oldest waiting ones are dropped and counted (``buffer_full``). Events never pass here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter

from .store import ReadingRow, Store, StoreError

log = logging.getLogger("trygg.gateway.readings")


class ReadingsBuffer:
    def __init__(
        self,
        store: Store,
        *,
        flush_every_s: float = 0.2,
        max_batch: int = 5000,
        max_pending: int = 200_000,
    ) -> None:
        self.store = store
        self.flush_every_s = flush_every_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.dropped: Counter[str] = Counter()
        self.committed = 0
        self._pending: list[ReadingRow] = []
        self._full = asyncio.Event()

    def add(self, row: ReadingRow) -> None:
        if not math.isfinite(row[2]):
            # A store cannot keep NaN (SQLite makes it NULL): one such row would fail
            # every batch it is in, for good.
            self.dropped["not_finite"] += 1
            return
        self._pending.append(row)
        if len(self._pending) > self.max_pending:
            excess = len(self._pending) - self.max_pending
            del self._pending[:excess]
            self.dropped["buffer_full"] += excess
        if len(self._pending) >= self.max_batch:
            self._full.set()

    @property
    def waiting(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            await self.store.add_readings(batch)
            del self._pending[: len(batch)]
            self.committed += len(batch)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.flush_every_s)
            self._full.clear()
            try:
                await self.flush()
            except StoreError as exc:
                log.error("could not write readings: %s; retrying", exc)
                await asyncio.sleep(1.0)
