"""Home rules per resident, set in the dispatch service and delivered as configuration.

A supervisor sets each resident's rules: inactivity (hours, the daily window it is
counted in, a pre-alarm), out of bed at night and not back, a door opened at night, and
wandering. A gateway runs rules per home (gateway/rules.py), so the home's
``[[homes]]`` entry is made from the rules of everyone who lives there. For each rule the
strictest setting wins: the shortest inactivity (with that resident's window and
pre-alarm), the shortest bed-exit time, the door at night if anyone needs it, and the
longest wandering watch. The entry goes to every gateway that has a device in the home,
as a new configuration version (cloud/configuration.py). The entry's other settings (away
mode, the away button, the time zone) stay as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .configuration import ConfigurationService, newest
from .db import Device, Gateway, Organisation, Resident, User
from .direct import direct_gateway_id

log = logging.getLogger("trygg.cloud.homerules")

_WINDOW = r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"


class ResidentRules(BaseModel):
    """One resident's rules; each is off at its default."""

    model_config = ConfigDict(extra="forbid")

    # No movement, door, bed change or press for this many hours: inactivity. 0: off.
    inactivity_h: float = Field(default=0, ge=0, le=168, allow_inf_nan=False)
    # Counted only inside this daily window (local time); start == end: the whole day.
    inactivity_window: str = Field(default="00:00-00:00", pattern=_WINDOW)
    # First a pre-alarm in the home this long, that any activity cancels. 0: none.
    inactivity_pre_alarm_s: int = Field(default=0, ge=0, le=3600)
    # Out of bed at night and not back within this many minutes: bed_exit_no_return. 0: off.
    bed_exit_return_min: int = Field(default=0, ge=0, le=1440)
    # A door of the home opened at night: door_open_night.
    door_open_at_night: bool = False
    # Out of bed at night and a door opened within this many minutes: wandering. 0: off.
    wandering_min: int = Field(default=0, ge=0, le=1440)


RULE_FIELDS = (
    "inactivity_s",
    "inactivity_window",
    "inactivity_pre_alarm_s",
    "bed_exit_return_s",
    "door_open_at_night",
    "wandering_s",
)


def home_rules(residents: list[ResidentRules]) -> dict[str, Any]:
    """The home's rules from its residents': the strictest of each."""
    inactive = [r for r in residents if r.inactivity_h > 0]
    shortest = min(inactive, key=lambda r: r.inactivity_h) if inactive else None
    beds = [r.bed_exit_return_min for r in residents if r.bed_exit_return_min]
    return {
        "inactivity_s": round(shortest.inactivity_h * 3600) if shortest else 0,
        "inactivity_window": shortest.inactivity_window if shortest else "00:00-00:00",
        "inactivity_pre_alarm_s": shortest.inactivity_pre_alarm_s if shortest else 0,
        "bed_exit_return_s": min(beds) * 60 if beds else 0,
        "door_open_at_night": any(r.door_open_at_night for r in residents),
        "wandering_s": max((r.wandering_min for r in residents), default=0) * 60,
    }


@dataclass(frozen=True, slots=True)
class Delivered:
    gateway_id: str
    version: int


async def deliver_home(
    session: AsyncSession,
    user: User,
    configuration: ConfigurationService,
    home_id: str,
    fields: dict[str, Any],
) -> list[Delivered]:
    """``fields`` set on the home's ``[[homes]]`` entry in each configuration of a gateway
    with a device in the home: a new version each, signed and sent. The caller has
    committed what it changed before."""
    rows = await session.scalars(
        select(Device.gateway_id)
        .where(Device.org_id == user.org_id, Device.home_id == home_id)
        .distinct()
    )
    org = await session.get(Organisation, user.org_id)
    delivered = []
    for gateway_id in sorted(set(rows)):
        gateway = await session.get(Gateway, gateway_id)
        if gateway is None or gateway_id == direct_gateway_id(user.org_id):
            continue  # devices reporting straight here have no home rules to run
        current = await newest(session, gateway_id)
        body: dict[str, Any] = dict(current.body) if current is not None else {}
        homes = [dict(h) for h in body.get("homes", [])]
        entry = next((h for h in homes if h.get("id") == home_id), None)
        if entry is None:
            entry = {"id": home_id}
            if org is not None:  # the home's clock: the organisation's, unless set
                entry["timezone"] = org.time_zone
            homes.append(entry)
        entry.update(fields)
        base = None if current is None else current.version
        record = await configuration.change(session, user, gateway, base, {**body, "homes": homes})
        delivered.append(Delivered(gateway_id, record.version))
        log.info(
            "home %s: gateway %s configuration version %d", home_id, gateway_id, record.version
        )
    return delivered


async def rules_of_home(session: AsyncSession, org_id: str, home_id: str) -> dict[str, Any]:
    """The home's rules now, from the rules of its residents kept here."""
    residents = await session.scalars(
        select(Resident).where(Resident.org_id == org_id, Resident.home_id == home_id)
    )
    said = [ResidentRules.model_validate(r.rules) for r in residents if r.rules]
    return home_rules(said)
