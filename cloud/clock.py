"""The one clock that times alarms and gateways in the dispatch service.

Escalation compares an alarm's stored times with "now", supervision a gateway's last
heartbeat; both are wrong the moment the two times come from clocks that disagree, and a
host's wall clock can be stepped (a wrong NTP server, a hand-set date, a VM resumed from
a snapshot). So every time that something is timed by comes from ``database_now``:

- PostgreSQL: the server's ``now()`` (the start of the transaction). Replicas sharing one
  database agree on it whatever their hosts' clocks say.
- SQLite runs inside this process and has no clock but this host's. Its time is the
  host's wall clock when the process started, advanced by the monotonic clock: a step of
  the host's clock moves no deadline. (After a restart it starts from the host's clock
  again; ``cloud.clockwatch`` reports the step when it happens, so it can be fixed.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

Clock = Callable[[AsyncSession], Awaitable[datetime]]


class SteadyClock:
    """Wall time that only the monotonic clock moves: it never jumps."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._origin = datetime.fromtimestamp(wall(), UTC)
        self._start = monotonic()
        self._monotonic = monotonic

    def now(self) -> datetime:
        return self._origin + timedelta(seconds=self._monotonic() - self._start)


@functools.cache
def steady_clock() -> SteadyClock:
    """This process's steady clock (one per process: an embedded database has one)."""
    return SteadyClock()


def is_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def database_now(session: AsyncSession) -> datetime:
    """Now, as the database knows it (see the module's description)."""
    if is_postgresql(session):
        value = await session.scalar(select(func.now()))
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return steady_clock().now()


async def pause(seconds: float, stop: asyncio.Event) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
