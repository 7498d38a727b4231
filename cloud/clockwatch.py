"""Noticing when a clock jumps: this host's wall clock, or the database's.

Escalation and supervision run on the database's clock (``cloud.clock``), so a step of
this host's clock no longer moves their deadlines; but a clock that jumps is a fault
someone must fix (every other time this host writes — logs, tokens, audit entries — is
off by the step). Once a second the watch compares how far each clock advanced with how
far the monotonic clock did, which no step moves. A difference beyond the limit is a
step: it is logged and recorded as a ``clock_step`` technical alarm in every
organisation, pushed to their live streams. Kept until the database takes it, so a step
during a database outage is still recorded.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices import EVENT_KINDS, Event, stable_event_id

from .alarms import record_event
from .clock import database_now, is_postgresql, pause
from .db import Organisation
from .hub import AlarmHub
from .schemas import AlarmChange, AlarmPublic

log = logging.getLogger("trygg.cloud.clockwatch")

CLOCK_STEP = EVENT_KINDS["clock_step"]
DISPATCH = "dispatch"  # the alarm's gateway: the dispatch service itself
WhichClock = Literal["host", "database"]


@dataclass(frozen=True, slots=True)
class Look:
    """The clocks read at one moment (the database's only on PostgreSQL)."""

    monotonic: float
    host: float
    database: float | None


@dataclass(frozen=True, slots=True)
class Step:
    clock: WhichClock
    by_s: float  # forward if positive
    at: datetime  # the database's time when it was noticed


def steps_between(before: Look, after: Look, limit_s: float, at: datetime) -> list[Step]:
    """The clocks that advanced by more than ``limit_s`` more, or less, than monotonic time."""
    elapsed = after.monotonic - before.monotonic
    found = []
    pairs: list[tuple[WhichClock, float | None, float | None]] = [
        ("host", before.host, after.host),
        ("database", before.database, after.database),
    ]
    for which, then, now in pairs:
        if then is None or now is None:
            continue
        jump = (now - then) - elapsed
        if abs(jump) > limit_s:
            found.append(Step(which, round(jump, 3), at))
    return found


def step_event(step: Step, org_id: str, host: str) -> Event:
    device = f"{DISPATCH}:{host if step.clock == 'host' else 'database'}"
    return Event(
        id=stable_event_id(device, org_id, CLOCK_STEP.name, step.at.isoformat()),
        kind=CLOCK_STEP.name,
        priority=CLOCK_STEP.priority,
        device_id=device,
        device_type=DISPATCH,
        home_id=device,
        occurred_at=step.at,
        detail={"clock": step.clock, "host": host, "step_s": step.by_s},
    )


@dataclass
class ClockWatch:
    sessions: async_sessionmaker[AsyncSession]
    hub: AlarmHub
    limit_s: float = 2.0
    host: str = field(default_factory=lambda: socket.gethostname()[:100])
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    steps: int = 0
    _last: Look | None = None
    _unrecorded: list[Step] = field(default_factory=list)

    async def look(self) -> list[Step]:
        """Read the clocks; record any step since the last look. The steps found."""
        async with self.sessions() as session:
            now = await database_now(session)
            look = await self._read(session)
            found = []
            if self._last is not None:
                found = steps_between(self._last, look, self.limit_s, now)
            elif look.database is not None and abs(look.host - look.database) > self.limit_s:
                log.warning(
                    "this host's clock is %.1f s off the database's", look.host - look.database
                )
            self._last = look
            for step in found:
                self.steps += 1
                log.error(
                    "the %s clock jumped %+.1f s (escalation and supervision use the "
                    "database's clock and are not affected)",
                    step.clock,
                    step.by_s,
                )
            self._unrecorded.extend(found)
            changes = await self._record(session) if self._unrecorded else []
            await session.commit()
        self._unrecorded.clear()
        for org_id, change in changes:
            self.hub.publish(org_id, change)
        return found

    async def _read(self, session: AsyncSession) -> Look:
        before = self.monotonic()
        database = None
        if is_postgresql(session):
            # clock_timestamp(): the time now (now() is the transaction's start)
            stamp = await session.scalar(select(func.clock_timestamp()))
            assert isinstance(stamp, datetime)
            database = stamp.timestamp()
        # The middle of the round trip: the database's reading is from some time in it.
        return Look((before + self.monotonic()) / 2, self.wall(), database)

    async def _record(self, session: AsyncSession) -> list[tuple[str, AlarmChange]]:
        changes = []
        orgs = list(await session.scalars(select(Organisation.id).order_by(Organisation.id)))
        for step in self._unrecorded:
            for org_id in orgs:
                event = step_event(step, org_id, self.host)
                intake = await record_event(session, org_id, DISPATCH, event, now=step.at)
                if intake.alarm is not None:
                    kind = "created" if intake.created else "updated"
                    public = AlarmPublic.model_validate(intake.alarm)
                    changes.append((org_id, AlarmChange(type=kind, alarm=public)))
        return changes

    async def run(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """Look every ``every_s`` until ``stop`` (between looks, never inside one)."""
        while not stop.is_set():
            try:
                await self.look()
            except Exception:  # the database may be away; the watch must come back
                log.exception("clock watch failed; trying again")
            await pause(every_s, stop)
