"""The alarm queue: idempotent intake of gateway events and the operator's actions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from devices import Event, Priority, utc_now

from .db import Alarm, EventRecord


class AlarmState(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


OPEN_STATES = (AlarmState.NEW.value, AlarmState.ACKNOWLEDGED.value)
# Information events (a lock opened by staff, a check done) are kept, not queued.
QUEUED_PRIORITIES = {Priority.CRITICAL, Priority.HIGH, Priority.NORMAL}


@dataclass(frozen=True, slots=True)
class Intake:
    duplicate: bool
    alarm: Alarm | None
    created: bool


class TransitionError(Exception):
    """The alarm is not in a state that allows the action."""


async def record_event(session: AsyncSession, org_id: str, gateway_id: str, event: Event) -> Intake:
    """Store one event exactly once and fold it into the queue. The caller commits.

    A repeated event id (a resend, a broker redelivery) changes nothing. A new event
    for a device that already has an open alarm of that kind joins that alarm.
    """
    now = utc_now()
    values = {
        "id": event.id,
        "org_id": org_id,
        "gateway_id": gateway_id,
        "alarm_id": None,
        "kind": event.kind,
        "priority": event.priority.value,
        "device_id": event.device_id,
        "restore": event.restore,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "detail": event.detail,
    }
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(EventRecord).values(**values).on_conflict_do_nothing(index_elements=["id"])
    result = await session.execute(stmt)
    if result.rowcount == 0:  # type: ignore[attr-defined]
        return Intake(duplicate=True, alarm=None, created=False)

    open_alarm = (
        await session.execute(
            select(Alarm)
            .where(
                Alarm.org_id == org_id,
                Alarm.device_id == event.device_id,
                Alarm.kind == event.kind,
                Alarm.state.in_(OPEN_STATES),
            )
            .order_by(Alarm.id.desc())
            .limit(1)
            .with_for_update()
        )
    ).scalar_one_or_none()

    alarm: Alarm | None
    created = False
    if event.restore:
        alarm = open_alarm
        if alarm is not None:
            alarm.restored_at = now
            alarm.updated_at = now
    elif open_alarm is not None:
        alarm = open_alarm
        alarm.event_count += 1
        alarm.updated_at = now
    elif event.priority in QUEUED_PRIORITIES:
        alarm = Alarm(
            org_id=org_id,
            gateway_id=gateway_id,
            device_id=event.device_id,
            device_type=event.device_type,
            home_id=event.home_id,
            resident_id=event.resident_id,
            kind=event.kind,
            priority=event.priority.value,
            priority_rank=event.priority.rank,
            state=AlarmState.NEW.value,
            event_count=1,
            first_event_id=event.id,
            occurred_at=event.occurred_at,
            received_at=now,
            updated_at=now,
            restored_at=None,
            acknowledged_by=None,
            acknowledged_at=None,
        )
        session.add(alarm)
        created = True
    else:
        alarm = None
    if alarm is not None:
        await session.flush()
        await session.execute(
            update(EventRecord).where(EventRecord.id == event.id).values(alarm_id=alarm.id)
        )
    return Intake(duplicate=False, alarm=alarm, created=created)


async def list_alarms(
    session: AsyncSession,
    org_id: str,
    *,
    states: list[AlarmState] | None = None,
    priorities: list[Priority] | None = None,
    limit: int = 200,
) -> list[Alarm]:
    query = select(Alarm).where(Alarm.org_id == org_id)
    if states:
        query = query.where(Alarm.state.in_([s.value for s in states]))
    if priorities:
        query = query.where(Alarm.priority.in_([p.value for p in priorities]))
    query = query.order_by(Alarm.priority_rank, Alarm.received_at, Alarm.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def acknowledge(
    session: AsyncSession, org_id: str, alarm_id: int, username: str
) -> Alarm | None:
    """None if the organisation has no such alarm; TransitionError if it is not new."""
    alarm = (
        await session.execute(
            select(Alarm).where(Alarm.id == alarm_id, Alarm.org_id == org_id).with_for_update()
        )
    ).scalar_one_or_none()
    if alarm is None:
        return None
    if alarm.state != AlarmState.NEW.value:
        raise TransitionError(
            f"alarm {alarm_id} is {alarm.state}"
            + (f" (acknowledged by {alarm.acknowledged_by})" if alarm.acknowledged_by else "")
        )
    now = utc_now()
    alarm.state = AlarmState.ACKNOWLEDGED.value
    alarm.acknowledged_by = username
    alarm.acknowledged_at = now
    alarm.updated_at = now
    return alarm
