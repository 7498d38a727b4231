"""What each gateway says it has (its device inventory), and what ingest may take from it.

A gateway reports its whole inventory (devices/wire.py ``Inventory``) on connect and on
every change. It is applied only when its revision is not older than the last one
applied for that gateway, under a row lock on the gateway, so replicas taking two of
them at once still end with the newer. Each device reported is upserted into the devices
table with what the gateway knows of it (gateway, home, type, transport, firmware,
actions); what the dispatch service set itself (the resident) is kept. A device the
gateway no longer reports is not deleted: its ``reported_at`` becomes None, so its
history and its resident stay, and events it raised before its removal still arrive.

Ingest takes an event only if its kind is in the catalog and its device is known for
that gateway (reported by it, now or before, or registered for it through the API); the
gateway's own events (``GATEWAY_KINDS``, with the gateway's id as device id) need no
device. Anything else is refused with a reason, except an event from a device not known
yet whose envelope names a newer inventory revision than the last one applied: that
inventory is on its way (it went to another replica, say), so the event is left unacked
for the gateway to resend once it has landed, and a real alarm is never refused for a race.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import EVENT_KINDS, GATEWAY_KINDS, Event
from devices.wire import Inventory

from .db import Device, Gateway

MAX_REMEMBERED = 100_000


class Verdict(StrEnum):
    TAKE = "take"
    WAIT = "waiting_for_inventory"  # not acked: the gateway resends it after its ack timeout
    UNKNOWN_KIND = "unknown_kind"
    UNKNOWN_DEVICE = "unknown_device"


REFUSALS: dict[Verdict, str] = {
    Verdict.UNKNOWN_KIND: "kind {kind!r} is not in the device catalog",
    Verdict.UNKNOWN_DEVICE: "device {device!r} is not in this gateway's inventory",
}


def is_own_event(gateway_id: str, event: Event) -> bool:
    """An event the gateway raises about itself (its store), not about a device."""
    return event.device_id == gateway_id and event.kind in GATEWAY_KINDS


class IntakeCheck:
    """Whether ingest takes an event. A device found known is remembered for a minute,
    so a busy device's alarms cost no extra query (a device moved to another gateway is
    still taken from its old one for at most that long)."""

    def __init__(self, *, remember_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.remember_s = remember_s
        self._clock = clock
        self._known: dict[tuple[str, str, str], float] = {}

    async def verdict(
        self,
        session: AsyncSession,
        org_id: str,
        gateway_id: str,
        event: Event,
        inventory_revision: int | None,
    ) -> Verdict:
        """For ``event`` (made storable already) from ``gateway_id``."""
        if event.kind not in EVENT_KINDS:
            return Verdict.UNKNOWN_KIND
        if is_own_event(gateway_id, event):
            return Verdict.TAKE
        key = (org_id, gateway_id, event.device_id)
        now = self._clock()
        seen = self._known.get(key)
        if seen is not None and now - seen < self.remember_s:
            return Verdict.TAKE
        device = await session.get(Device, (org_id, event.device_id))
        if device is not None and device.gateway_id == gateway_id:
            if len(self._known) >= MAX_REMEMBERED:
                self._known.clear()
            self._known[key] = now
            return Verdict.TAKE
        return await _unknown(session, gateway_id, inventory_revision)


async def _unknown(
    session: AsyncSession, gateway_id: str, inventory_revision: int | None
) -> Verdict:
    """A device not known for the gateway: wait if a newer inventory is on its way."""
    if inventory_revision is not None:
        gateway = await session.get(Gateway, gateway_id, populate_existing=True)
        applied = None if gateway is None else gateway.inventory_revision
        if applied is None or inventory_revision > applied:
            return Verdict.WAIT
    return Verdict.UNKNOWN_DEVICE


@dataclass
class Applied:
    stale: bool = False
    devices: int = 0
    # Device ids another gateway of the organisation still reports: left with that one.
    conflicts: list[str] = field(default_factory=list)


async def apply_inventory(
    session: AsyncSession, gateway: Gateway, inventory: Inventory, now: datetime
) -> Applied:
    """Upsert the gateway's devices from its inventory. The caller holds the gateway's
    row (``with_for_update``) and commits."""
    if gateway.inventory_revision is not None and inventory.revision < gateway.inventory_revision:
        return Applied(stale=True)
    reported = {d.id: d for d in inventory.devices}
    rows = (
        await session.execute(
            select(Device)
            .where(
                Device.org_id == gateway.org_id,
                or_(Device.gateway_id == gateway.id, Device.id.in_(list(reported))),
            )
            .with_for_update()
        )
    ).scalars()
    existing = {row.id: row for row in rows}
    result = Applied()
    for device_id, row in existing.items():
        if device_id not in reported and row.gateway_id == gateway.id:
            row.reported_at = None
    for device_id, item in reported.items():
        known = existing.get(device_id)
        if known is not None and known.gateway_id != gateway.id and known.reported_at is not None:
            result.conflicts.append(device_id)
            continue
        row = known or Device(org_id=gateway.org_id, id=device_id, resident_id=None)
        if known is None:
            session.add(row)
        row.gateway_id = gateway.id
        row.home_id = item.home_id
        row.type = item.type
        row.transport = item.transport
        if item.firmware is not None:  # unknown now is not unknown for ever
            row.firmware = item.firmware
        row.actions = list(item.actions)
        row.address = item.address
        row.origin = item.origin
        row.reported_at = now
        result.devices += 1
    gateway.inventory_revision = inventory.revision
    gateway.inventory_at = now
    return result
