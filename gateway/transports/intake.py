"""The Zigbee2MQTT transport's intake queue: bounded, with a stated drop policy.

Messages wait here between the MQTT client's network thread and the pipeline. Beyond
``maxsize`` (an overload: more arrives than the pipeline can decode and store), the
oldest **QoS 0** message is dropped and counted. A QoS 1 message is never dropped here:
it is acked only once handled, so the broker keeps it until then, and the broker's
in-flight window (``max_inflight_messages``) bounds how many of them can wait here.
Alarms are meant to travel at QoS 1 (Zigbee2MQTT's ``qos: 1``); QoS 0 is the sender's
own statement that a message may be lost.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from aiomqtt import Message


class IntakeQueue(asyncio.Queue[Message]):
    """An ``asyncio.Queue`` whose ``put_nowait`` never refuses: past ``limit`` it drops
    the oldest QoS 0 message (or the new one, if it is QoS 0 and nothing older is) and
    hands it to ``on_drop``. aiomqtt calls it on the event loop's thread."""

    def __init__(self, limit: int, on_drop: Callable[[Message], None]) -> None:
        super().__init__()  # unbounded underneath: the bound is applied below, by QoS
        self.limit = limit
        self.on_drop = on_drop
        self.received = 0

    def put_nowait(self, item: Message) -> None:
        self.received += 1
        if self.limit > 0 and self.qsize() >= self.limit:
            waiting: collections.deque[Message] = self._queue  # type: ignore[attr-defined]
            oldest = next((m for m in waiting if m.qos == 0), None)
            if oldest is not None:
                waiting.remove(oldest)
                self.on_drop(oldest)
            elif item.qos == 0:
                self.on_drop(item)
                return
        super().put_nowait(item)
