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
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .away import untrack_without_consent
from .clock import Clock, database_now, pause
from .configuration import ConfigurationService
from .db import Alarm, EventRecord, Organisation

log = logging.getLogger("trygg.cloud.retention")

POSITION_KEYS = frozenset({"latitude", "longitude", "accuracy_m", "fix_age_s", "speed_kmh"})
BATCH = 2_000
_FLAG = re.compile(r'^flag\{name="retentionPeriod", value="([^"]*)"', re.MULTILINE)
# VictoriaMetrics' durations: a number and a unit; without one, months.
_UNIT_DAYS = {"s": 1 / 86400, "m": 1 / 1440, "h": 1 / 24, "d": 1, "w": 7, "y": 365, "": 31}


def retention_days(value: str) -> float | None:
    """``90d`` -> 90, ``1y`` -> 365, ``3`` -> 93 (months); None if it is not one."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdwy]?)\s*", value)
    if match is None:
        return None
    return float(match[1]) * _UNIT_DAYS[match[2]]


async def store_retention_days(url: str, timeout_s: float = 5.0) -> float | None:
    """The time-series store's own retention, from its /metrics (VictoriaMetrics publishes
    its flags there); None when it does not say (another store, or no answer)."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            res = await client.get(f"{url.rstrip('/')}/metrics")
    except httpx.HTTPError:
        return None
    found = _FLAG.search(res.text) if res.status_code == 200 else None
    return None if found is None else retention_days(found[1])


@dataclass
class PositionRetention:
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock = database_now
    batch: int = BATCH
    timeseries_url: str | None = None
    # Where it turns tracking off for residents without consent (cloud/away.py).
    configuration: ConfigurationService | None = None
    removed: int = 0  # events whose position was removed, since start
    # The time-series store's retention as last read (days; None: not known), and the
    # shortest an organisation asks for.
    store_days: float | None = None
    needed_days: int | None = None
    _said: object = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def store_ok(self) -> bool | None:
        """Whether the store keeps readings no longer than every organisation allows."""
        if self.timeseries_url is None or self.needed_days is None:
            return True
        if self.store_days is None:
            return None
        return self.store_days <= self.needed_days

    async def sweep(self) -> int:
        """One pass over every organisation; the events whose position it removed."""
        done = 0
        async with self._lock, self.sessions() as session:
            now = await self.clock(session)
            orgs = list(await session.scalars(select(Organisation).order_by(Organisation.id)))
            for org in orgs:
                done += await self._organisation(session, org, now)
            shortest = await session.scalar(select(func.min(Organisation.position_retention_days)))
            await session.commit()
            if self.configuration is not None:
                await untrack_without_consent(session, self.configuration, now)
        self.removed += done
        self.needed_days = None if shortest is None else int(shortest)
        if self.timeseries_url is not None:
            self.store_days = await store_retention_days(self.timeseries_url)
            self._tell()
        return done

    def _tell(self) -> None:
        """The store's retention in the log, once per change of verdict."""
        verdict = (self.store_ok, self.store_days, self.needed_days)
        if verdict == self._said:
            return
        self._said = verdict
        if self.store_ok is None:
            log.warning(
                "the time-series store at %s does not say its retention: make sure it keeps "
                "positions no longer than %s days",
                self.timeseries_url,
                self.needed_days,
            )
        elif not self.store_ok:
            log.error(
                "the time-series store keeps data %.0f days, longer than the %d days an "
                "organisation keeps positions: set its -retentionPeriod to %dd or less",
                self.store_days or 0,
                self.needed_days or 0,
                self.needed_days or 0,
            )
        else:
            log.info(
                "the time-series store keeps data %.0f days, within the %d days positions "
                "may be kept",
                self.store_days or 0,
                self.needed_days or 0,
            )

    async def _organisation(self, session: AsyncSession, org: Organisation, now: datetime) -> int:
        cutoff = now - timedelta(days=org.position_retention_days)
        start, after = org.positions_removed_to, org.positions_removed_after
        query = select(EventRecord).where(
            EventRecord.org_id == org.id, EventRecord.received_at < cutoff
        )
        key = tuple_(EventRecord.received_at, EventRecord.gateway_id, EventRecord.id)
        if start is not None and after:  # after the last one a full batch ended on
            when = literal(start, type_=EventRecord.received_at.type)
            query = query.where(key > tuple_(when, literal(after[0]), literal(after[1])))
        elif start is not None:
            query = query.where(EventRecord.received_at >= start)
        order = (EventRecord.received_at, EventRecord.gateway_id, EventRecord.id)
        rows = list(await session.scalars(query.order_by(*order).limit(self.batch)))
        removed = 0
        for event in rows:
            detail = event.detail or {}
            if POSITION_KEYS & detail.keys():
                kept = {k: v for k, v in detail.items() if k not in POSITION_KEYS}
                event.detail = {**kept, "position_removed": True}
                removed += 1
        # Up to the last one read when the batch was full (the next sweep goes on after
        # it, however many share its instant); to the cutoff when it was not.
        if len(rows) == self.batch:
            last = rows[-1]
            org.positions_removed_to = last.received_at
            org.positions_removed_after = [last.gateway_id, last.id]
        else:
            org.positions_removed_to, org.positions_removed_after = cutoff, None
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
