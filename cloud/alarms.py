"""The alarm queue: idempotent intake of gateway events and the operator's actions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from devices import Event, Priority

from .clock import database_now
from .db import Alarm, Device, EventRecord, Home, Organisation
from .lifecycle import OPEN_STATES, AlarmState, Outcome, resolve_by_system

# Information events (a lock opened by staff, a check done) are kept, not queued.
QUEUED_PRIORITIES = {Priority.CRITICAL, Priority.HIGH, Priority.NORMAL}


@dataclass(frozen=True, slots=True)
class Intake:
    duplicate: bool
    alarm: Alarm | None
    created: bool


# Technical alarms end when their cause does: the device is back, the battery replaced.
TECHNICAL_KINDS = frozenset(
    {"device_silent", "radio_lost", "battery_low", "tamper", "lock_jammed", "gateway_offline"}
)
MERGE_WINDOW = timedelta(minutes=10)


def _coordinate(value: object, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and -limit <= number <= limit else None


def _position(detail: dict[str, Any]) -> tuple[float, float] | None:
    """Where the event says the resident is (a GPS pendant's fix), if it says so sanely."""
    lat = _coordinate(detail.get("latitude"), 90)
    lon = _coordinate(detail.get("longitude"), 180)
    return None if lat is None or lon is None else (lat, lon)


def safe_zone(detail: dict[str, Any]) -> tuple[float, float, float] | None:
    """The safe zone a geofence event says was left (gateway/rules.py), if sane."""
    lat = _coordinate(detail.get("zone_latitude"), 90)
    lon = _coordinate(detail.get("zone_longitude"), 180)
    radius = _coordinate(detail.get("zone_radius_m"), 100_000)
    if lat is None or lon is None or radius is None or radius <= 0:
        return None
    return lat, lon, radius


async def alarm_positions(
    session: AsyncSession, org_id: str, alarm_id: int
) -> tuple[
    list[tuple[float, float, datetime, bool, float | None, float | None]],
    tuple[float, float, float] | None,
]:
    """The positions the alarm's events reported, oldest first, and its safe zone."""
    rows = await session.execute(
        select(EventRecord)
        .where(EventRecord.org_id == org_id, EventRecord.alarm_id == alarm_id)
        .order_by(EventRecord.occurred_at)
    )
    positions, zone = [], None
    for event in rows.scalars():
        detail = event.detail or {}
        where = _position(detail)
        if where is not None:
            # How good the fix was and how old when the alarm went: where the device said.
            accuracy = _coordinate(detail.get("accuracy_m"), 100_000)
            age = _coordinate(detail.get("fix_age_s"), 10**7)
            positions.append((where[0], where[1], event.occurred_at, event.restore, accuracy, age))
        zone = zone or safe_zone(detail)
    return positions[-200:], zone


async def record_event(
    session: AsyncSession,
    org_id: str,
    gateway_id: str,
    event: Event,
    *,
    merge_window: timedelta = MERGE_WINDOW,
    now: datetime | None = None,
) -> Intake:
    """Store one event exactly once and fold it into the queue. The caller commits.

    An event is known by its gateway and id within the organisation: the same id from
    another gateway is another event. A repeated one (a resend, a broker redelivery)
    changes nothing. A new event
    for a device whose open alarm of that kind had an event within ``merge_window``
    joins that alarm (a count, and the latest position); a restore resolves an open
    technical alarm and marks any other as restored. Times are the database's
    (``now``, when the caller has read it already).
    """
    dialect = session.get_bind().dialect.name
    # PostgreSQL's now() is evaluated in the insert itself and returned: no extra round
    # trip on the alarm's path.
    stamp: Any = now or (func.now() if dialect == "postgresql" else await database_now(session))
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
        "received_at": stamp,
        "detail": event.detail,
    }
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(EventRecord)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["org_id", "gateway_id", "id"])
        .returning(EventRecord.received_at)
    )
    received = (await session.execute(stmt)).scalar_one_or_none()
    if received is None:  # that event id is stored already, for this gateway
        return Intake(duplicate=True, alarm=None, created=False)
    now = received

    if dialect == "postgresql":
        # Replicas take events in parallel: two events of one device and kind at once must
        # still make one alarm. Serialise them on that key until this transaction ends.
        key = f"{org_id}/{event.device_id}/{event.kind}"
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
    # A test (the device in a technician's test window, or its own test: a signed test
    # command, a smoke alarm's test button) joins only a test, and a real alarm only a
    # real one: a test must never hide a call for help. (A restore needs neither.)
    testing = event.detail.get("test") is True
    if not testing and not event.restore:
        device = await session.get(Device, (org_id, event.device_id))
        testing = device is not None and device.test_until is not None and device.test_until > now
    open_alarm = (
        await session.execute(
            select(Alarm)
            .where(
                Alarm.org_id == org_id,
                Alarm.device_id == event.device_id,
                Alarm.kind == event.kind,
                Alarm.state.in_(OPEN_STATES),
                # (A restore ends whichever is open: the device is quiet again.)
                Alarm.test.is_(testing) if not event.restore else true(),
            )
            .order_by(Alarm.id.desc())
            .limit(1)
            .with_for_update()
        )
    ).scalar_one_or_none()

    alarm: Alarm | None
    created = False
    position = _position(event.detail)
    if event.restore:
        alarm = open_alarm
        if alarm is not None:
            alarm.restored_at = now
            alarm.updated_at = now
            if alarm.kind in TECHNICAL_KINDS:
                await resolve_by_system(session, alarm, Outcome.RESTORED, now)
    elif open_alarm is not None and _recent(open_alarm, now, merge_window):
        alarm = open_alarm
        alarm.event_count += 1
        alarm.updated_at = now
        alarm.last_event_at = now
        if position is not None:
            alarm.latitude, alarm.longitude = position
    elif event.priority in QUEUED_PRIORITIES:
        home = await session.get(Home, (org_id, event.home_id))
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
            version=0,
            event_count=1,
            first_event_id=event.id,
            occurred_at=event.occurred_at,
            received_at=now,
            updated_at=now,
            last_event_at=now,
            latitude=position[0] if position else None,
            longitude=position[1] if position else None,
            restored_at=None,
            acknowledged_by=None,
            acknowledged_at=None,
            team_id=home.team_id if home is not None else None,
            test=testing,
        )
        session.add(alarm)
        created = True
    else:
        alarm = None
    if alarm is not None:
        await session.flush()
        await session.execute(
            update(EventRecord)
            .where(
                EventRecord.org_id == org_id,
                EventRecord.gateway_id == gateway_id,
                EventRecord.id == event.id,
            )
            .values(alarm_id=alarm.id)
        )
    if created and alarm is not None and alarm.test:
        org = await session.get(Organisation, org_id)
        if org is not None and not org.show_tests:
            # Kept as done: the technicians see it (its time through, the device's last
            # test); the operators' queue does not (cloud/api/alarms.py).
            await resolve_by_system(session, alarm, Outcome.TEST, now)
    return Intake(duplicate=False, alarm=alarm, created=created)


async def list_alarms(
    session: AsyncSession,
    org_id: str,
    *,
    states: list[AlarmState] | None = None,
    priorities: list[Priority] | None = None,
    limit: int = 200,
    include_tests: bool = True,
) -> list[Alarm]:
    query = select(Alarm).where(Alarm.org_id == org_id)
    if not include_tests:
        query = query.where(Alarm.test.is_(False))
    if states:
        query = query.where(Alarm.state.in_([s.value for s in states]))
    if priorities:
        query = query.where(Alarm.priority.in_([p.value for p in priorities]))
    query = query.order_by(Alarm.priority_rank, Alarm.received_at, Alarm.id).limit(limit)
    return list((await session.execute(query)).scalars())


def _recent(alarm: Alarm, now: datetime, window: timedelta) -> bool:
    last = alarm.last_event_at or alarm.received_at
    return now - last <= window
