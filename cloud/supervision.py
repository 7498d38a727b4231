"""Gateway supervision: a gateway that falls silent, or whose last will arrives, becomes
a technical alarm (``gateway_offline``); its next heartbeat resolves it.

A gateway is silent when no heartbeat came for two of its own heartbeat intervals (it
says its interval in every heartbeat). ``sweep`` looks for silent gateways; every
replica may run it: on PostgreSQL each gateway row is taken with SKIP LOCKED, and the
offline event's id is derived from the heartbeat it follows, so one outage is one alarm
however many replicas notice it. Heartbeats are stamped, and silence measured, by the
database's clock (``cloud.clock``): a step of this host's clock is not a silence.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices import EVENT_KINDS, Event, stable_event_id
from devices.wire import Heartbeat

from .alarms import record_event
from .clock import Clock, database_now, pause
from .db import Gateway
from .devicestate import apply_health
from .direct import sweep_silent
from .hub import AlarmHub
from .schemas import AlarmChange, AlarmPublic

log = logging.getLogger("trygg.cloud.supervision")

OFFLINE = EVENT_KINDS["gateway_offline"]
Change = tuple[str, AlarmChange]  # (organisation, what changed)
MISSED_BEATS = 2


def offline_event(gateway: Gateway, at: datetime, *, restore: bool, why: str) -> Event:
    """The gateway's technical event; one id per outage (the heartbeat it followed)."""
    outage = (gateway.last_seen_at or at).isoformat()
    return Event(
        id=stable_event_id(f"gateway:{gateway.id}", f"{outage}:{'up' if restore else 'down'}"),
        kind=OFFLINE.name,
        priority=OFFLINE.priority,
        device_id=gateway.id,
        device_type="gateway",
        home_id=gateway.id,
        occurred_at=at,
        restore=restore,
        detail={"reason": why},
    )


@dataclass
class GatewaySupervisor:
    sessions: async_sessionmaker[AsyncSession]
    hub: AlarmHub
    clock: Clock = database_now
    raised: int = 0
    restored: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def heartbeat(
        self, session: AsyncSession, gateway: Gateway, beat: Heartbeat
    ) -> list[Change]:
        """A status message from a registered gateway: a heartbeat or its last will. The
        caller commits, then publishes the alarm changes returned."""
        now = await self.clock(session)
        if beat.state == "offline":
            if gateway.online is False:
                return []
            change = await self._went_offline(session, gateway, now, "last will: connection lost")
        else:
            gateway.heartbeat_interval_s = beat.interval_s
            change = None
            if gateway.offline_since is not None:
                gateway.offline_since = None
                event = offline_event(gateway, now, restore=True, why="heartbeat")
                change = await self._record(session, gateway, event, now)
                self.restored += 1
                log.info("gateway %s is back", gateway.id)
            gateway.online = True
            gateway.last_seen_at = now
            apply_health(gateway, beat, now)
        return [change] if change is not None else []

    async def sweep(self) -> list[str]:
        """Raise ``gateway_offline`` for every gateway silent too long; their ids."""
        found: list[str] = []
        changes: list[Change] = []
        async with self._lock, self.sessions() as session:
            now = await self.clock(session)
            candidates = await session.execute(
                select(Gateway)
                .where(or_(Gateway.online.is_(True), Gateway.online.is_(None)))
                .where(Gateway.last_seen_at.is_not(None))
                .with_for_update(skip_locked=True)
            )
            for gateway in candidates.scalars():
                assert gateway.last_seen_at is not None
                limit = timedelta(seconds=MISSED_BEATS * gateway.heartbeat_interval_s)
                if now - gateway.last_seen_at > limit:
                    silent = int((now - gateway.last_seen_at).total_seconds())
                    why = f"silent for {silent} s"
                    change = await self._went_offline(session, gateway, now, why)
                    if change is not None:
                        changes.append(change)
                        found.append(gateway.id)
            # The devices that report straight here have no gateway to watch them.
            for org_id, intake in await sweep_silent(session, now):
                if intake.alarm is not None:
                    public = AlarmPublic.model_validate(intake.alarm)
                    kind = "created" if intake.created else "updated"
                    changes.append((org_id, AlarmChange(type=kind, alarm=public)))
            await session.commit()
        self.tell(changes)
        return found

    def tell(self, changes: list[Change]) -> None:
        for org_id, change in changes:
            self.hub.publish(org_id, change)

    async def run(self, every_s: float, stop: asyncio.Event) -> None:
        """Sweep every ``every_s`` until ``stop`` (between sweeps, never inside one)."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # a database outage must not end supervision for good
                log.exception("gateway supervision sweep failed; trying again")
            await pause(every_s, stop)

    async def _went_offline(
        self, session: AsyncSession, gateway: Gateway, now: datetime, why: str
    ) -> Change | None:
        """Mark it offline if nobody did since it was read (another replica's sweep, its
        last will, a heartbeat in between), and raise the alarm; None if somebody did."""
        event = offline_event(gateway, now, restore=False, why=why)
        marked = await session.execute(
            update(Gateway)
            .where(
                Gateway.id == gateway.id,
                or_(Gateway.online.is_(True), Gateway.online.is_(None)),
                Gateway.last_seen_at == gateway.last_seen_at
                if gateway.last_seen_at is not None
                else Gateway.last_seen_at.is_(None),
            )
            .values(online=False, offline_since=now)
            .execution_options(synchronize_session=False)
        )
        if marked.rowcount != 1:  # type: ignore[attr-defined]
            return None
        await session.refresh(gateway)
        self.raised += 1
        log.warning("gateway %s offline: %s", gateway.id, why)
        return await self._record(session, gateway, event, now)

    async def _record(
        self, session: AsyncSession, gateway: Gateway, event: Event, now: datetime
    ) -> Change | None:
        intake = await record_event(session, gateway.org_id, gateway.id, event, now=now)
        if intake.alarm is None:
            return None
        kind = "created" if intake.created else "updated"
        return gateway.org_id, AlarmChange(
            type=kind, alarm=AlarmPublic.model_validate(intake.alarm)
        )
