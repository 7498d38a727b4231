"""Devices that report straight to the dispatch service on the native device API
(docs/native-api.md): a GPS watch on LTE with no gateway in the home.

Such a device is registered here by a technician, which gives it a credential (only its
SHA-256 is kept). Its devices-table row hangs off one gateway record per organisation,
``direct-<org>``, that stands for this service's own intake: the alarms it raises are
alarms of that "gateway", in the same queue and with the same lifecycle as any other.
An alarm is committed before it is answered 202; the same message id again is the same
event (the events table's key), so a watch resending after a lost answer raises one alarm.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import EVENT_KINDS, DeviceType, Event, EventKind, stable_event_id
from devices.catalog import CATALOG
from devices.codecs.native import NativeMessage, credential_digest
from devices.wire import GATEWAY_ID_PATTERN

from .alarms import Intake, record_event
from .clock import database_now
from .db import Device, Gateway, Home, Resident

DIRECT_NAME = "Devices reporting directly (LTE, Wi-Fi)"
SILENT = EVENT_KINDS["device_silent"]


def direct_gateway_id(org_id: str) -> str:
    """The gateway record that stands for this service's own intake, for ``org_id``."""
    plain = f"direct-{org_id}"
    if re.fullmatch(GATEWAY_ID_PATTERN, plain):
        return plain
    return "direct-" + hashlib.sha256(org_id.encode()).hexdigest()[:32]


class DirectError(Exception):
    """A device that cannot be registered as a direct one: ``status`` 409 (its id is a
    gateway's device) or 422 (no such home or resident)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


async def register(
    session: AsyncSession,
    org_id: str,
    device_id: str,
    device_type: DeviceType,
    home_id: str,
    resident_id: str | None,
) -> str:
    """Register (or re-register) a direct device; its new credential, the only time it is
    seen (the one before stops working). The caller commits."""
    gateway_id = direct_gateway_id(org_id)
    if await session.get(Home, (org_id, home_id)) is None:
        raise DirectError(f"home_id: no home {home_id}", 422)
    if resident_id is not None:
        resident = await session.get(Resident, (org_id, resident_id))
        if resident is None or resident.home_id != home_id:
            raise DirectError(f"resident_id: no resident {resident_id} in home {home_id}", 422)
    record = await session.get(Gateway, gateway_id)
    if record is None:
        session.add(Gateway(id=gateway_id, org_id=org_id, name=DIRECT_NAME))
        await session.flush()
    elif record.org_id != org_id:  # a gateway registered under the reserved name
        raise DirectError(f"gateway {gateway_id} is another organisation's: rename it")
    device = await session.get(Device, (org_id, device_id))
    if device is not None and device.gateway_id != gateway_id:
        raise DirectError(f"device {device_id} is gateway {device.gateway_id}'s")
    credential = secrets.token_urlsafe(32)
    if device is None:
        device = Device(org_id=org_id, id=device_id, gateway_id=gateway_id)
        session.add(device)
    device.type = device_type.value
    device.home_id = home_id
    device.resident_id = resident_id
    device.transport = "native"
    device.origin = "dispatch"
    device.credential_sha256 = credential_digest(credential)
    # Watched from now: a device installed and never heard from is silent too.
    device.last_seen_at = await database_now(session)
    device.online = True
    return credential


async def authenticate(session: AsyncSession, device_id: str, credential: str) -> Device | None:
    """The direct device this credential is for, if it is ``device_id``'s."""
    digest = credential_digest(credential)
    device = await session.scalar(select(Device).where(Device.credential_sha256 == digest))
    if device is None or device.credential_sha256 is None:
        return None
    if not hmac.compare_digest(device.id.encode(), device_id.encode()):
        return None
    return device


@dataclass(frozen=True)
class Taken:
    intake: Intake | None  # an alarm's; None for a heartbeat, reading or position
    refused: str | None = None  # why an alarm is not one this device can raise
    back: Intake | None = None  # the restore of its silence, when it had been silent


def checkin(device: Device) -> timedelta:
    """How long a direct device may stay silent: its type's check-in interval."""
    try:
        return CATALOG[DeviceType(device.type)].checkin
    except ValueError:
        return CATALOG[DeviceType.ALARM_BUTTON].checkin


def silent_event(device: Device, now: datetime, *, restore: bool) -> Event:
    """``device_silent`` for a direct device (a gateway's devices get theirs from it);
    one id per silence: the message it followed."""
    last = (device.last_seen_at or now).isoformat()
    detail: dict[str, object] = {"checkin_s": round(checkin(device).total_seconds())}
    if not restore and device.last_seen_at is not None:
        detail["silent_for_s"] = round((now - device.last_seen_at).total_seconds())
    event_id = stable_event_id(device.gateway_id, device.id, "silent", last, str(restore))
    return _event(device, event_id, SILENT, now, restore=restore, detail=detail)


def _event(
    device: Device,
    event_id: str,
    kind: EventKind,
    now: datetime,
    *,
    restore: bool,
    detail: dict[str, object],
) -> Event:
    """An event of a direct device, as a gateway would have sent it."""
    return Event(
        id=event_id,
        kind=kind.name,
        priority=kind.priority,
        device_id=device.id,
        device_type=device.type,
        home_id=device.home_id,
        resident_id=device.resident_id,
        occurred_at=now,
        restore=restore,
        detail=detail,
    )


async def sweep_silent(session: AsyncSession, now: datetime) -> list[tuple[str, Intake]]:
    """Raise ``device_silent`` for each direct device quiet past its check-in interval.
    Rows are taken with SKIP LOCKED (PostgreSQL), so replicas sweeping at once raise one
    alarm. The caller commits."""
    found = []
    shortest = min(spec.checkin for spec in CATALOG.values())
    rows = await session.scalars(
        select(Device)
        .where(
            Device.credential_sha256.is_not(None),
            Device.last_seen_at < now - shortest,
            Device.online.is_not(False),
        )
        .with_for_update(skip_locked=True)
    )
    for device in rows:
        assert device.last_seen_at is not None
        if now - device.last_seen_at <= checkin(device):
            continue
        event = silent_event(device, now, restore=False)
        device.online = False
        found.append(
            (
                device.org_id,
                await record_event(session, device.org_id, device.gateway_id, event, now=now),
            )
        )
    return found


async def take(
    session: AsyncSession, device: Device, message: NativeMessage, now: datetime
) -> Taken:
    """One decoded message from a direct device. The caller commits."""
    # Its row, locked: a silence sweep at this moment (SKIP LOCKED) passes it by, or has
    # committed its "silent" first, which this then restores.
    await session.refresh(device, with_for_update=True)
    back = None
    if device.online is False:  # it was silent: it speaks again
        back = await record_event(
            session,
            device.org_id,
            device.gateway_id,
            silent_event(device, now, restore=True),
            now=now,
        )
    device.online = True
    device.last_seen_at = now
    device.state_at = now
    for metric, value in message.decoded.readings:
        if metric == "battery_pct":
            device.battery_pct = value
    if message.kind != "alarm":
        return Taken(None, back=back)
    (state,) = message.decoded.signals
    try:
        spec = CATALOG[DeviceType(device.type)]
    except ValueError:
        return Taken(None, f"device type {device.type!r} is not in the catalog", back)
    kind = spec.event_kind(state.signal)
    if kind is None:
        return Taken(None, f"a {device.type} raises no {state.signal.value}", back)
    gateway_id = device.gateway_id
    assert message.message_id is not None  # an alarm always has one
    # The id and the message: a resend is the same event; the same id on another message
    # (a device's counter that started over) is a new one.
    body = hashlib.blake2b(message.canonical, digest_size=8).hexdigest()
    event_id = stable_event_id(gateway_id, device.id, "native", message.message_id, body)
    event = _event(device, event_id, kind, now, restore=not state.active, detail=dict(state.detail))
    intake = await record_event(session, device.org_id, gateway_id, event, now=now)
    return Taken(intake, back=back)
