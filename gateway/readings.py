"""Readings are group-committed: the pipeline appends, a task writes a batch at a time.

Memory is bounded: if the store cannot keep up and ``max_pending`` readings wait, the
oldest waiting ones are dropped and counted (``buffer_full``). Events never pass here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter, deque

from .store import ReadingRow, RecentInput, Store, StoreError

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
        # The messages the pending rows came from, each with the number of rows ever
        # added up to its last one: committed with that row, so that a broker's
        # redelivery after a restart is known for what it is.
        self._inputs: deque[tuple[int, RecentInput]] = deque()
        self.added = 0  # rows ever added
        self._gone = 0  # rows ever committed or dropped
        self._full = asyncio.Event()

    def add(self, row: ReadingRow) -> None:
        if not math.isfinite(row[2]):
            # A store cannot keep NaN (SQLite makes it NULL): one such row would fail
            # every batch it is in, for good.
            self.dropped["not_finite"] += 1
            return
        self._pending.append(row)
        self.added += 1
        if len(self._pending) > self.max_pending:
            excess = len(self._pending) - self.max_pending
            del self._pending[:excess]
            self._gone += excess
            self.dropped["buffer_full"] += excess
            while self._inputs and self._inputs[0][0] <= self._gone:
                self._inputs.popleft()  # its rows are gone: nothing of it will be kept
        if len(self._pending) >= self.max_batch:
            self._full.set()

    def came_from(self, source: RecentInput) -> None:
        """The rows added since the last call came from this input message."""
        if self._inputs and self._inputs[-1][0] == self.added:
            return  # no row of its own (all dropped, or not finite)
        self._inputs.append((self.added, source))

    @property
    def waiting(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            upto = self._gone + len(batch)
            inputs = []
            for last, src in self._inputs:  # oldest first: only the front is this batch's
                if last > upto:
                    break
                inputs.append(src)
            write = asyncio.ensure_future(self.store.add_readings(batch, inputs))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # The write goes on in the store's thread: it must be counted before the
                # task ends, or the flush at stop would write the same rows again.
                with contextlib.suppress(StoreError):
                    await write
                    self._committed(len(batch), len(inputs))
                raise
            self._committed(len(batch), len(inputs))

    def _committed(self, rows: int, inputs: int) -> None:
        del self._pending[:rows]
        for _ in range(inputs):
            self._inputs.popleft()
        self._gone += rows
        self.committed += rows

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
