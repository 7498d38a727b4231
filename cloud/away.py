"""A resident's away mode, set from the staff or operator console (or by the home's away
button, which its gateway reports as an ``away_mode`` event).

Set here, it is kept on the home, audited, and delivered to each gateway that has a device
of the home as configuration (cloud/configuration.py): the home's ``[[homes]]`` entry gets
``away`` and ``away_set_at``, in a new version signed and sent like any other. The
gateway's inactivity rule stops counting while the home is away. The newer ``away_set_at``
also overrides what the away button set meanwhile, so "back home" in a console ends an
away mode that was started by the button.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import Event

from .audit import audit
from .clock import database_now
from .configuration import ConfigurationConflict, ConfigurationService, newest
from .db import Gateway, Home, User
from .homerules import Delivered, deliver_home

log = logging.getLogger("trygg.cloud.away")


async def set_away(
    session: AsyncSession,
    user: User,
    configuration: ConfigurationService,
    home: Home,
    away: bool,
) -> list[Delivered]:
    """Set (or end) away mode for ``home``; the configuration versions it went out in."""
    now = await database_now(session)
    home.away, home.away_by, home.away_at = away, user.username, now
    audit(session, user, "home.away" if away else "home.back", f"home:{home.id}")
    await session.commit()
    fields = {"away": away, "away_set_at": now.isoformat()}
    return await deliver_home(session, user, configuration, home.id, fields)


async def tracking_withdrawn(
    session: AsyncSession, user: User, configuration: ConfigurationService, resident_id: str
) -> list[Delivered]:
    """The resident withdrew consent to positions: every gateway configuration kept here
    that tracks one of their devices gets a new version with ``tracking`` off, so the
    gateway stops keeping positions (an alarm still carries one)."""
    from .db import GatewayConfigurationRecord

    gateway_ids = sorted(
        set(
            await session.scalars(
                select(GatewayConfigurationRecord.gateway_id)
                .where(GatewayConfigurationRecord.org_id == user.org_id)
                .distinct()
            )
        )
    )
    delivered = []
    for gateway_id in gateway_ids:
        current = await newest(session, gateway_id)
        gateway = await session.get(Gateway, gateway_id)
        if current is None or gateway is None:
            continue
        devices = [dict(d) for d in current.body.get("devices", [])]
        tracked = [
            d
            for d in devices
            if d.get("resident") == resident_id and d.get("tracking") not in (None, False)
        ]
        if not tracked:
            continue
        for device in tracked:
            device["tracking"] = False
        body = {**current.body, "devices": devices}
        try:
            record = await configuration.change(session, user, gateway, current.version, body)
        except (ConfigurationConflict, ValidationError) as exc:
            # A technician's change crossed this one: the retention sweep tries again
            # (untrack_without_consent).
            await session.rollback()
            log.warning(
                "gateway %s: tracking of %s not turned off yet: %s", gateway_id, resident_id, exc
            )
            continue
        delivered.append(Delivered(gateway_id, record.version))
        log.info(
            "resident %s withdrew consent to positions: tracking off on gateway %s, version %d",
            resident_id,
            gateway_id,
            record.version,
        )
    return delivered


async def untrack_without_consent(
    session: AsyncSession, configuration: ConfigurationService, now: datetime
) -> int:
    """Every device a configuration kept here tracks without its resident's consent to
    positions (withdrawn while a delivery failed, say) gets tracking off; how many
    residents that was. Run by the retention sweep."""
    from .db import GatewayConfigurationRecord
    from .doors import has_consent
    from .lifecycle import SYSTEM

    found: set[tuple[str, str]] = set()
    gateway_ids = await session.scalars(select(GatewayConfigurationRecord.gateway_id).distinct())
    for gateway_id in sorted(set(gateway_ids)):
        current = await newest(session, gateway_id)
        if current is None:
            continue
        for device in current.body.get("devices", []):
            resident = device.get("resident")
            if device.get("tracking") in (None, False) or not isinstance(resident, str):
                continue
            if not await has_consent(session, current.org_id, resident, "position", now):
                found.add((current.org_id, resident))
    for org_id, resident in sorted(found):
        system = User(org_id=org_id, username=SYSTEM, role=SYSTEM)
        await tracking_withdrawn(session, system, configuration, resident)
    return len(found)


async def reported(session: AsyncSession, org_id: str, event: Event) -> None:
    """A gateway's ``away_mode`` event (the home's away button): the home's state here."""
    if event.kind != "away_mode":
        return
    home = await session.get(Home, (org_id, event.home_id))
    if home is None or (home.away_at is not None and event.occurred_at < home.away_at):
        return  # a press older than the last word (a console's newer "back home")
    home.away = not event.restore
    home.away_by = f"button:{event.device_id}"[:100]
    home.away_at = event.occurred_at
