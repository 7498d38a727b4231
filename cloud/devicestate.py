"""What gateways report of their devices and of themselves, kept for the technicians.

A gateway sends its devices' states (devices/wire.py ``DeviceStates``: a summary on
connect and every 15 minutes, changes in between) and its health with every heartbeat
(``GatewayHealth``). Only a device its gateway's inventory gave it is updated: a state
for a device of another gateway, or one the dispatch service does not know, is counted
and left alone. A report older than the one applied (messages of one gateway can
arrive out of order after a reconnect) does not overwrite a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from devices.wire import DeviceStates, Heartbeat

from .db import Device, DiscoveredDevice, Gateway


@dataclass(frozen=True, slots=True)
class Applied:
    updated: int
    unknown: list[str]  # device ids not this gateway's (or not known at all)
    stale: int  # states older than what was applied


async def apply_device_states(
    session: AsyncSession, gateway: Gateway, report: DeviceStates
) -> Applied:
    """Write the states onto the gateway's devices; the caller commits."""
    ids = [s.id for s in report.devices]
    rows = await session.execute(
        select(Device).where(
            Device.org_id == gateway.org_id,
            Device.gateway_id == gateway.id,
            Device.id.in_(ids),
        )
    )
    devices = {d.id: d for d in rows.scalars()}
    at = report.sent_at
    updated = stale = 0
    unknown: list[str] = []
    for state in report.devices:
        device = devices.get(state.id)
        if device is None:
            unknown.append(state.id)
            continue
        if device.state_at is not None and device.state_at > at:
            stale += 1
            continue
        device.state_at = at
        device.last_seen_at = state.last_seen
        device.battery_pct = state.battery_pct
        device.linkquality = state.linkquality
        device.rssi_dbm = state.rssi_dbm
        device.online = state.online
        device.faults = list(state.faults)
        device.checkin_due_at = state.checkin_due
        if state.firmware is not None:
            device.firmware = state.firmware
        if state.contact != device.contact:
            device.contact = state.contact
            device.contact_at = at
        updated += 1
    if report.discovered is not None:
        await _replace_discovered(session, gateway, report)
    return Applied(updated, unknown, stale)


async def _replace_discovered(
    session: AsyncSession, gateway: Gateway, report: DeviceStates
) -> None:
    """The gateway's list of devices heard but not paired, as it now says (the whole
    list comes each time, so what is gone from it was paired or forgotten there)."""
    assert report.discovered is not None
    newest = await session.scalar(
        select(func.max(DiscoveredDevice.reported_at)).where(
            DiscoveredDevice.gateway_id == gateway.id
        )
    )
    if newest is not None and newest > report.sent_at:
        return  # an older list, arriving late
    await session.execute(delete(DiscoveredDevice).where(DiscoveredDevice.gateway_id == gateway.id))
    seen: set[tuple[str, str]] = set()
    for d in report.discovered:
        if (d.transport, d.address) in seen:
            continue
        seen.add((d.transport, d.address))
        session.add(
            DiscoveredDevice(
                gateway_id=gateway.id,
                transport=d.transport,
                address=d.address,
                org_id=gateway.org_id,
                first_seen=d.first_seen,
                last_seen=d.last_seen,
                messages=d.messages,
                said=d.said,
                model=d.model,
                suggested_type=d.suggested_type,
                reported_at=report.sent_at,
            )
        )


def apply_health(gateway: Gateway, beat: Heartbeat, now: datetime) -> None:
    """Keep what a heartbeat says of the gateway's health, and its clock's offset."""
    if beat.health is None or beat.sent_at is None:
        return
    gateway.health = beat.health.model_dump(mode="json")
    gateway.health_at = now
    gateway.clock_offset_s = round((beat.sent_at - now).total_seconds(), 3)
