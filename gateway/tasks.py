"""The gateway's long-running work, supervised: a task that fails (a bug on one frame that
no codec caught, a library that gave up) is logged, counted and started again with
backoff. It never ends the process, and the others never notice.

A full traceback is logged the first time a task fails with a given error, one line
after that, so that a repeating fault cannot fill the disk with logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .backoff import Backoff

log = logging.getLogger("trygg.gateway.tasks")

# A task that ran this long before it failed starts again at once (its backoff resets).
HEALTHY_RUN_S = 60.0


@dataclass
class TaskFailure:
    error: str
    restarts: int
    down: bool  # waiting to be started again


@dataclass
class TaskSupervisor:
    restarts: Counter[str] = field(default_factory=Counter)
    last_error: dict[str, str] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    monotonic: Callable[[], float] = time.monotonic
    first_s: float = 0.5
    cap_s: float = 30.0
    _traced: set[tuple[str, str]] = field(default_factory=set)

    def spawn(self, name: str, work: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        return asyncio.create_task(self.supervise(name, work), name=name)

    async def supervise(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(first_s=self.first_s, cap_s=self.cap_s)
        while True:
            started = self.monotonic()
            try:
                await work()
                error = "ended"  # every task here runs until it is cancelled
                trace: BaseException | None = None
            except Exception as exc:  # the point: no failure ends the gateway
                error = f"{type(exc).__name__}: {exc}"[:500]
                trace = exc
            if self.monotonic() - started >= HEALTHY_RUN_S:
                backoff.reset()
            delay = backoff.next_delay()
            self.restarts[name] += 1
            self.last_error[name] = error
            first = (name, type(trace).__name__) not in self._traced
            self._traced.add((name, type(trace).__name__))
            log.error(
                "%s failed (%s); starting it again in %.1f s (restart %d)",
                name,
                error,
                delay,
                self.restarts[name],
                exc_info=trace if first else None,
            )
            self.down.add(name)
            try:
                await asyncio.sleep(delay)
            finally:
                self.down.discard(name)

    def failures(self) -> dict[str, TaskFailure]:
        return {
            name: TaskFailure(self.last_error[name], n, name in self.down)
            for name, n in self.restarts.items()
        }
