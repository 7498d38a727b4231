"""Escalation: an alarm that waits too long at a stage is flagged, supervisors are told,
and an outgoing webhook is called.

    unclaimed    a critical (or high) alarm nobody claimed in time
    unassigned   an acknowledged alarm with no staff sent in time
    not_on_site  an assigned alarm with nobody on site in time

Each alarm escalates at most once per reason. Every replica may sweep: the flag is set
with a compare-and-set (the alarm's version unchanged, so it is still at that stage, and
this reason not yet set), so exactly one sweep wins and only the winner notifies.
Setting the flag does not change the version, so it never makes an operator's claim fail.
An alarm's stage times and the sweep's "now" come from one clock, the database's
(``cloud.clock``), so a step of this host's wall clock neither holds an escalation back
nor brings one forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices import Priority

from .clock import Clock, database_now, pause
from .db import Alarm
from .hub import AlarmHub
from .lifecycle import SYSTEM, AlarmState, record
from .schemas import AlarmChange, AlarmPublic
from .settings import CloudSettings

log = logging.getLogger("trygg.cloud.escalation")

WEBHOOK_ATTEMPTS = 4
WEBHOOK_QUEUE = 1000


class Reason(StrEnum):
    UNCLAIMED = "unclaimed"
    UNASSIGNED = "unassigned"
    NOT_ON_SITE = "not_on_site"


@dataclass(frozen=True)
class Limits:
    unclaimed: dict[Priority, timedelta]
    unassigned: timedelta
    not_on_site: timedelta

    @classmethod
    def from_settings(cls, s: CloudSettings) -> Limits:
        return cls(
            unclaimed={
                Priority.CRITICAL: timedelta(seconds=s.escalate_unclaimed_critical_s),
                Priority.HIGH: timedelta(seconds=s.escalate_unclaimed_high_s),
            },
            unassigned=timedelta(seconds=s.escalate_unassigned_s),
            not_on_site=timedelta(seconds=s.escalate_not_on_site_s),
        )


def _not_yet(reason: Reason) -> ColumnElement[bool]:
    return or_(Alarm.escalation.is_(None), Alarm.escalation != reason.value)


def overdue(limits: Limits, now: datetime) -> list[tuple[Reason, ColumnElement[bool]]]:
    """Each reason with the condition of the alarms overdue for it."""
    unclaimed = or_(
        *(
            and_(Alarm.priority == priority.value, Alarm.received_at <= now - limit)
            for priority, limit in limits.unclaimed.items()
        )
    )
    real = Alarm.test.is_(False)  # a test alarm is never escalated
    return [
        (Reason.UNCLAIMED, and_(real, Alarm.state == AlarmState.NEW.value, unclaimed)),
        (
            Reason.UNASSIGNED,
            and_(
                real,
                Alarm.state == AlarmState.ACKNOWLEDGED.value,
                Alarm.acknowledged_at <= now - limits.unassigned,
            ),
        ),
        (
            Reason.NOT_ON_SITE,
            and_(
                real,
                Alarm.state == AlarmState.ASSIGNED.value,
                Alarm.assigned_at <= now - limits.not_on_site,
            ),
        ),
    ]


@dataclass
class Escalator:
    sessions: async_sessionmaker[AsyncSession]
    hub: AlarmHub
    limits: Limits
    webhook_url: str | None = None
    clock: Clock = database_now
    escalated: int = 0
    webhook_sent: int = 0
    webhook_failed: int = 0
    webhook_backoff_s: float = 0.5
    _outbox: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(WEBHOOK_QUEUE)
    )

    async def sweep(self) -> list[tuple[int, Reason]]:
        """Escalate every overdue alarm this sweep wins; what it escalated."""
        won: list[tuple[str, Reason, AlarmPublic]] = []
        async with self.sessions() as session:
            now = await self.clock(session)
            for reason, condition in overdue(self.limits, now):
                rows = await session.execute(
                    select(Alarm).where(condition, _not_yet(reason)).order_by(Alarm.id).limit(500)
                )
                for alarm in list(rows.scalars()):
                    if await self._flag(session, alarm, reason, now):
                        won.append((alarm.org_id, reason, AlarmPublic.model_validate(alarm)))
            await session.commit()
        for org_id, reason, public in won:
            self.escalated += 1
            log.warning("alarm %d escalated: %s", public.id, reason.value)
            self.hub.publish(org_id, AlarmChange(type="escalated", alarm=public))
            if self.webhook_url:
                self._queue_webhook(org_id, public, reason)
        return [(public.id, reason) for _, reason, public in won]

    async def _flag(
        self, session: AsyncSession, alarm: Alarm, reason: Reason, now: datetime
    ) -> bool:
        result = await session.execute(
            update(Alarm)
            .where(Alarm.id == alarm.id, Alarm.version == alarm.version, _not_yet(reason))
            .values(
                escalated_at=now,
                escalation=reason.value,
                escalation_level=Alarm.escalation_level + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False  # another replica, or an operator acted meanwhile
        detail = {"reason": reason.value}
        await record(session, alarm, "escalate", SYSTEM, now, detail, alarm.state, alarm.state)
        return True

    def _queue_webhook(self, org_id: str, alarm: AlarmPublic, reason: Reason) -> None:
        body = {
            "type": "alarm.escalated",
            "organisation": org_id,
            "reason": reason.value,
            "alarm": alarm.model_dump(mode="json"),
        }
        try:
            self._outbox.put_nowait(body)
        except asyncio.QueueFull:
            self.webhook_failed += 1
            log.error("escalation webhook queue full; alarm %d not sent", alarm.id)

    async def deliver_webhooks(self) -> None:
        """Send queued webhooks, each retried a few times with backoff."""
        assert self.webhook_url is not None
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                body = await self._outbox.get()
                for attempt in range(WEBHOOK_ATTEMPTS):
                    try:
                        res = await http.post(self.webhook_url, json=body)
                        if res.status_code < 300:
                            self.webhook_sent += 1
                            break
                        problem = f"HTTP {res.status_code}"
                    except httpx.HTTPError as exc:
                        problem = str(exc) or type(exc).__name__
                    if attempt == WEBHOOK_ATTEMPTS - 1:
                        self.webhook_failed += 1
                        log.error("escalation webhook gave up: %s", problem)
                    else:
                        await asyncio.sleep(self.webhook_backoff_s * 2**attempt)

    async def run(self, every_s: float, stop: asyncio.Event) -> None:
        """Sweep every ``every_s`` until ``stop`` (between sweeps, never inside one)."""
        sender = asyncio.create_task(self.deliver_webhooks()) if self.webhook_url else None
        try:
            while not stop.is_set():
                try:
                    await self.sweep()
                except Exception:  # the database may be away; escalation must come back
                    log.exception("escalation sweep failed; trying again")
                await pause(every_s, stop)
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
