"""Fan-out of changes (alarms, commands) to the live streams of one organisation's consoles."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

from .schemas import AlarmChange, CommandChange

log = logging.getLogger("trygg.cloud.hub")

QUEUE_LIMIT = 1000


C = TypeVar("C", AlarmChange, CommandChange)


class Hub(Generic[C]):
    def __init__(self) -> None:
        self._subscribers: dict[asyncio.Queue[C | None], str] = {}
        self._closed = False
        self.relay: Callable[[str, C], None] | None = None

    @asynccontextmanager
    async def subscribe(self, org_id: str) -> AsyncIterator[asyncio.Queue[C | None]]:
        queue: asyncio.Queue[C | None] = asyncio.Queue(QUEUE_LIMIT)
        if self._closed:  # the service is stopping: this stream ends at once
            queue.put_nowait(None)
        else:
            self._subscribers[queue] = org_id
        try:
            yield queue
        finally:
            self._subscribers.pop(queue, None)

    @property
    def clients(self) -> int:
        """Live streams subscribed on this replica now."""
        return len(self._subscribers)

    def publish(self, org_id: str, change: C) -> None:
        """A change made here: to this replica's streams, and through ``relay`` to the
        other replicas' (set by the ingest worker, which holds the broker connection)."""
        self.deliver(org_id, change)
        if self.relay is not None:
            self.relay(org_id, change)

    def deliver(self, org_id: str, change: C) -> None:
        """To this replica's live streams of the organisation."""
        for queue, subscriber_org in list(self._subscribers.items()):
            if subscriber_org != org_id:
                continue
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                # A console that stopped reading: end its stream; it reloads the queue.
                log.warning("live stream subscriber too slow; closing its stream")
                self._subscribers.pop(queue, None)
                queue.get_nowait()
                queue.put_nowait(None)

    def close_all(self) -> None:
        """End every stream, and every one opened later (the service is stopping)."""
        self._closed = True
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)
        self._subscribers.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


class AlarmHub(Hub[AlarmChange]):
    """Alarm changes, for the alarm queue's live stream."""


class CommandHub(Hub[CommandChange]):
    """Command changes (cloud/commands.py), for the commands' live stream."""
