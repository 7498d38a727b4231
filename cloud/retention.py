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

A tracked resident's positions are in the time-series store as well, one series per
device and UTC day (devices/wire.py). The job deletes every day whose positions are past
the organisation's retention, for the organisation's gateways: a day goes once its start
is past it, so a position is kept at most the retention and at least a day less. A day
past the longest retention any organisation has is deleted for every gateway, the ones
no organisation knows any more among them. VictoriaMetrics deletes whole series
(``/api/v1/admin/tsdb/delete_series``), which is why a day is a series.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import httpx
from sqlalchemy import literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.wire import POSITION_MEASUREMENT

from .away import untrack_without_consent
from .clock import Clock, database_now, pause
from .configuration import ConfigurationService
from .db import Alarm, EventRecord, Gateway, Organisation

log = logging.getLogger("trygg.cloud.retention")

POSITION_KEYS = frozenset({"latitude", "longitude", "accuracy_m", "fix_age_s", "speed_kmh"})
BATCH = 2_000
GATEWAYS_PER_DELETE = 200  # gateways per delete request: a selector stays short
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_POSITIONS = f'__name__=~"{POSITION_MEASUREMENT}_.+"'


class StoreError(Exception):
    """The time-series store did not do what was asked: the reason, in words."""


async def _store_call(
    client: httpx.AsyncClient, method: str, url: str, params: dict[str, str]
) -> httpx.Response:
    try:
        res = await client.request(method, url, params=params)
    except httpx.HTTPError as exc:
        raise StoreError(f"{type(exc).__name__} from {url}") from exc
    if res.status_code not in (200, 204):
        raise StoreError(f"{url} answered {res.status_code}: {res.text[:200]}")
    return res


async def stored_days(client: httpx.AsyncClient, url: str) -> list[date]:
    """The UTC days the store holds positions of."""
    # From the epoch on (without a start the store may answer the last day only). It
    # may go on listing a day already deleted for a while: deleting it again is harmless.
    params = {"match[]": f"{{{_POSITIONS}}}", "start": "1"}
    res = await _store_call(client, "GET", f"{url}/api/v1/label/day/values", params)
    try:
        values = res.json()["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError("the store answered something other than label values") from exc
    days = []
    for value in values if isinstance(values, list) else []:
        if isinstance(value, str) and _DAY.match(value):
            with contextlib.suppress(ValueError):
                days.append(date.fromisoformat(value))
    return sorted(days)


async def delete_days(
    client: httpx.AsyncClient, url: str, days: list[date], gateways: list[str] | None
) -> None:
    """Delete the positions of these days, of these gateways (None: of every gateway).
    Gateway ids are letters, digits, ``_`` and ``-`` (devices/wire.py), days are digits
    and ``-``: neither needs escaping in the selector's regex."""
    if not days or gateways == []:
        return
    when = f'day=~"{"|".join(d.isoformat() for d in days)}"'
    groups: list[list[str] | None] = [None]
    if gateways is not None:
        step = GATEWAYS_PER_DELETE
        groups = [gateways[i : i + step] for i in range(0, len(gateways), step)]
    for group in groups:
        which = "" if group is None else f',gateway=~"{"|".join(group)}"'
        selector = f"{{{_POSITIONS},{when}{which}}}"
        await _store_call(
            client, "POST", f"{url}/api/v1/admin/tsdb/delete_series", {"match[]": selector}
        )


@dataclass
class PositionRetention:
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock = database_now
    batch: int = BATCH
    timeseries_url: str | None = None
    # Where it turns tracking off for residents without consent (cloud/away.py).
    configuration: ConfigurationService | None = None
    removed: int = 0  # events whose position was removed, since start
    # Whether the last sweep's deletions in the time-series store went through (None: no
    # store, or no sweep yet), and the last day deleted there per organisation ("*": of
    # every gateway), for the log.
    store_ok: bool | None = None
    store_deleted_to: dict[str, date] = field(default_factory=dict)
    _said: object = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def sweep(self) -> int:
        """One pass over every organisation; the events whose position it removed."""
        done = 0
        async with self._lock, self.sessions() as session:
            now = await self.clock(session)
            orgs = list(await session.scalars(select(Organisation).order_by(Organisation.id)))
            cutoffs = {org.id: now - timedelta(days=org.position_retention_days) for org in orgs}
            for org in orgs:
                done += await self._organisation(session, org, cutoffs[org.id])
            gateways: dict[str, list[str]] = {}
            for gateway_id, org_id in await session.execute(
                select(Gateway.id, Gateway.org_id).order_by(Gateway.id)
            ):
                gateways.setdefault(org_id, []).append(gateway_id)
            await session.commit()
            if self.configuration is not None:
                await untrack_without_consent(session, self.configuration, now)
        self.removed += done
        if self.timeseries_url is not None:
            await self._store(cutoffs, gateways)
        return done

    async def _store(self, cutoffs: dict[str, datetime], gateways: dict[str, list[str]]) -> None:
        """Delete the days of positions past each organisation's retention in the store."""
        url = (self.timeseries_url or "").rstrip("/")
        oldest = min(cutoffs.values(), default=None)  # past every organisation's retention
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                held = await stored_days(client, url)
                # Every day due, each sweep: a gateway that was away may have written
                # positions of a day deleted before.
                for org_id, cutoff in sorted(cutoffs.items()):
                    days = [d for d in held if d <= cutoff.date()]
                    await delete_days(client, url, days, gateways.get(org_id, []))
                    self._deleted(org_id, days)
                if oldest is not None:
                    days = [d for d in held if d <= oldest.date()]
                    await delete_days(client, url, days, None)
                    self._deleted("*", days)
        except StoreError as exc:
            self.store_ok = False
            self._tell(f"the time-series store at {url} did not delete positions: {exc}")
            return
        self.store_ok = True
        self._tell(None)

    def _deleted(self, org_id: str, days: list[date]) -> None:
        if days and days[-1] != self.store_deleted_to.get(org_id):
            self.store_deleted_to[org_id] = days[-1]
            whose = "any gateway's" if org_id == "*" else f"{org_id}'s"
            log.info("deleted %s positions in the time-series store up to %s", whose, days[-1])

    def _tell(self, trouble: str | None) -> None:
        """The store's trouble in the log once per change, and when it is over."""
        if trouble == self._said:
            return
        if trouble is not None:
            log.error("%s; trying again at the next sweep", trouble)
        elif self._said is not None:
            log.info("the time-series store at %s deletes positions again", self.timeseries_url)
        self._said = trouble

    async def _organisation(
        self, session: AsyncSession, org: Organisation, cutoff: datetime
    ) -> int:
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
