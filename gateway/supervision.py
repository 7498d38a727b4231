"""Supervision: a device that stays silent longer than its check-in interval is a
technical event (``device_silent``); when it speaks again, a restore.

Time is the monotonic clock the pipeline stamps ``last_seen_mono`` with, so a wall
clock step (NTP, daylight saving) neither raises nor hides a silence. Every device
starts the gateway's run as just seen: it gets one full interval to check in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from devices import Signal

from .pipeline import Pipeline
from .registry import Registry

log = logging.getLogger("trygg.gateway.supervision")


class Supervisor:
    def __init__(
        self,
        registry: Registry,
        pipeline: Pipeline,
        *,
        clock: Callable[[], float] = time.monotonic,
        period_s: float = 5.0,
    ) -> None:
        self.registry = registry
        self.pipeline = pipeline
        self._clock = clock
        self.period_s = period_s

    async def check(self) -> int:
        """One pass over every device; returns how many changed state."""
        now = self._clock()
        changes = 0
        for device in self.registry:
            last = device.status.last_seen_mono
            limit = device.checkin.total_seconds()
            silent = last is not None and now - last > limit
            if silent == device.status.silent:
                continue
            device.status.silent = silent
            changes += 1
            if silent:
                assert last is not None
                detail: dict[str, object] = {
                    "silent_for_s": round(now - last),
                    "checkin_s": round(limit),
                }
                log.warning(
                    "%s silent for %.0f s (check-in every %.0f s)", device.id, now - last, limit
                )
            else:
                detail = {}
                log.info("%s is back", device.id)
            await self.pipeline.raise_signal(device, Signal.DEVICE_SILENT, silent, detail)
        return changes

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.period_s)
