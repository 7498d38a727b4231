"""Positions are kept only as long as the organisation says (30-720 days): the job here
removes older ones from the events and the alarms, and keeps everything else of them.

A position reaches the dispatch service only with an alarm (a geofence exit, an SOS that
carried its fix): it is in the event's detail (``latitude``, ``longitude``, the fix's
accuracy and age, its speed) and on the alarm (its latest). Past the retention, the
detail loses those keys and says ``position_removed``; the alarm's position becomes
empty. The alarm, its history and its outcome stay: who was helped, when, and how is the
organisation's record. The job walks each organisation's events by the time they were
received, from where it stopped last (``positions_removed_to``), a bounded batch per
sweep, so a sweep stays cheap however many events there are. The database's clock is
the one that counts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .clock import Clock, database_now, pause
from .db import Alarm, EventRecord, Organisation

log = logging.getLogger("trygg.cloud.retention")

POSITION_KEYS = frozenset({"latitude", "longitude", "accuracy_m", "fix_age_s", "speed_kmh"})
BATCH = 2_000


@dataclass
class PositionRetention:
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock = database_now
    batch: int = BATCH
    removed: int = 0  # events whose position was removed, since start
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def sweep(self) -> int:
        """One pass over every organisation; the events whose position it removed."""
        done = 0
        async with self._lock, self.sessions() as session:
            now = await self.clock(session)
            orgs = list(await session.scalars(select(Organisation).order_by(Organisation.id)))
            for org in orgs:
                done += await self._organisation(session, org, now)
            await session.commit()
        self.removed += done
        return done

    async def _organisation(self, session: AsyncSession, org: Organisation, now: datetime) -> int:
        cutoff = now - timedelta(days=org.position_retention_days)
        start = org.positions_removed_to
        query = select(EventRecord).where(
            EventRecord.org_id == org.id, EventRecord.received_at < cutoff
        )
        if start is not None:
            query = query.where(EventRecord.received_at >= start)
        rows = list(
            await session.scalars(query.order_by(EventRecord.received_at).limit(self.batch))
        )
        removed = 0
        for event in rows:
            detail = event.detail or {}
            if POSITION_KEYS & detail.keys():
                kept = {k: v for k, v in detail.items() if k not in POSITION_KEYS}
                event.detail = {**kept, "position_removed": True}
                removed += 1
        # Up to the last one read when the batch was full (the rest of that instant is read
        # next time, again: harmless); to the cutoff when it was not.
        reached = rows[-1].received_at if len(rows) == self.batch else cutoff
        org.positions_removed_to = reached
        cleared = await session.execute(
            update(Alarm)
            .where(
                Alarm.org_id == org.id,
                Alarm.latitude.is_not(None),
                Alarm.received_at < cutoff,
                (Alarm.last_event_at.is_(None)) | (Alarm.last_event_at < cutoff),
            )
            .values(latitude=None, longitude=None)
            .execution_options(synchronize_session=False)
        )
        alarms = int(getattr(cleared, "rowcount", 0) or 0)
        if removed or alarms:
            log.info(
                "%s: removed the positions of %d events and %d alarms older than %d days",
                org.id,
                removed,
                alarms,
                org.position_retention_days,
            )
        return removed

    async def run(self, every_s: float, stop: asyncio.Event) -> None:
        """Sweep every ``every_s`` until ``stop`` (between sweeps, never inside one)."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # the database may be away: retention must come back
                log.exception("position retention sweep failed; trying again")
            await pause(every_s, stop)
