"""Each gateway's configuration, kept by the dispatch service and delivered as a signed,
versioned ``configure`` command (docs/configuration.md; the gateway side is
gateway/remoteconfig.py).

A technician's change is a new version: stored (with who and when), audited, committed,
then sent. Changes do not overwrite each other: a change names the version it was made
from (``base_version``) and is refused 409 when another came first. The gateway says in
every heartbeat which version is in force (``GatewayHealth.config_version``); while that
is not the newest, each heartbeat sends the newest again, unless a command for it is
still open, or the gateway refused that version (``invalid_config``, ``stale_version``:
sending it again would be refused again; the technician sees the reason and corrects
it). So a gateway that was away, or lost its store, gets its configuration back by
itself. A new version is always above both the newest kept here and the one the gateway
says is in force, so a gateway never refuses a change as stale because the dispatch
service's database was restored from an older backup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from devices.wire import COMMAND_MAX_TTL_S, GatewayConfiguration

from .audit import audit
from .clock import Clock, database_now
from .commands import CommandRefused, CommandService, CommandState
from .db import CommandRecord, Gateway, GatewayConfigurationRecord, User
from .lifecycle import SYSTEM
from .schemas import CommandPublic

log = logging.getLogger("trygg.cloud.configuration")

# Refusals that the same version would meet again: not sent again by itself.
FINAL_REFUSALS = ("invalid_config", "stale_version")
Delivery = Literal["none", "pending", "applied", "refused", "failed"]


class ConfigurationConflict(Exception):
    """Another change came first: its version, who made it, when."""

    def __init__(self, record: GatewayConfigurationRecord | None) -> None:
        self.record = record
        who = "none" if record is None else f"{record.version} by {record.created_by}"
        super().__init__(f"the configuration has changed meanwhile (now version {who})")


@dataclass(frozen=True, slots=True)
class ConfigurationState:
    """A gateway's configuration as the console shows it: what should be in force, what
    is, and how the delivery of the newest went."""

    version: int | None
    configuration: GatewayConfiguration | None
    created_by: str | None
    created_at: datetime | None
    applied_version: int | None
    delivery: Delivery
    command: CommandPublic | None  # the last configure command sent


def applied_version(gateway: Gateway) -> int | None:
    """The version the gateway said in its last heartbeat is in force."""
    value = (gateway.health or {}).get("config_version")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _wire(record: GatewayConfigurationRecord) -> GatewayConfiguration:
    return GatewayConfiguration.model_validate({**record.body, "version": record.version})


async def newest(session: AsyncSession, gateway_id: str) -> GatewayConfigurationRecord | None:
    return await session.scalar(
        select(GatewayConfigurationRecord)
        .where(GatewayConfigurationRecord.gateway_id == gateway_id)
        .order_by(GatewayConfigurationRecord.version.desc())
        .limit(1)
    )


async def _last_command(session: AsyncSession, gateway_id: str) -> CommandRecord | None:
    return await session.scalar(
        select(CommandRecord)
        .where(CommandRecord.gateway_id == gateway_id, CommandRecord.action == "configure")
        .order_by(CommandRecord.issued_at.desc(), CommandRecord.id.desc())
        .limit(1)
    )


def _version_of(command: CommandRecord) -> int | None:
    carried = (command.signed or {}).get("configuration") or {}
    value = carried.get("version")
    return value if isinstance(value, int) else None


@dataclass
class ConfigurationService:
    commands: CommandService
    clock: Clock = database_now
    resent: int = 0

    async def state(self, session: AsyncSession, gateway: Gateway) -> ConfigurationState:
        record = await newest(session, gateway.id)
        applied = applied_version(gateway)
        command = await _last_command(session, gateway.id)
        delivery: Delivery = "none"
        if record is not None:
            if applied == record.version:
                delivery = "applied"
            elif command is None or _version_of(command) != record.version:
                delivery = "pending"
            elif command.state == CommandState.REFUSED.value:
                delivery = "refused"
            elif command.state == CommandState.FAILED.value:
                delivery = "failed"
            else:  # on its way, done but not yet in a heartbeat, or expired: sent again
                delivery = "pending"
        return ConfigurationState(
            version=None if record is None else record.version,
            configuration=None if record is None else _wire(record),
            created_by=None if record is None else record.created_by,
            created_at=None if record is None else record.created_at,
            applied_version=applied,
            delivery=delivery,
            command=None if command is None else CommandPublic.model_validate(command),
        )

    async def change(
        self,
        session: AsyncSession,
        user: User,
        gateway: Gateway,
        base_version: int | None,
        body: dict[str, Any],
    ) -> GatewayConfigurationRecord:
        """Keep a new version (raises ConfigurationConflict, or pydantic's
        ValidationError for a body the wire refuses), commit, and send it."""
        current = await newest(session, gateway.id)
        if (None if current is None else current.version) != base_version:
            raise ConfigurationConflict(current)
        floor = max(current.version if current else 0, applied_version(gateway) or 0)
        configuration = GatewayConfiguration.model_validate({**body, "version": floor + 1})
        record = GatewayConfigurationRecord(
            gateway_id=gateway.id,
            version=configuration.version,
            org_id=gateway.org_id,
            body=configuration.model_dump(mode="json", exclude={"version", "v"}),
            created_by=user.username,
            created_at=await self.clock(session),
        )
        session.add(record)
        detail = {
            "version": record.version,
            "devices": len(configuration.devices),
            "homes": len(configuration.homes),
            "heartbeat_interval_s": configuration.heartbeat_interval_s,
        }
        audit(session, user, "configuration.change", f"gateway:{gateway.id}", detail)
        await session.commit()  # kept before it is sent: a heartbeat may resend it at once
        log.info(
            "gateway %s: configuration version %d by %s", gateway.id, record.version, user.username
        )
        await self._send(session, user, gateway.id, configuration)
        return record

    async def _send(
        self,
        session: AsyncSession,
        user: User,
        gateway_id: str,
        configuration: GatewayConfiguration,
    ) -> CommandPublic | None:
        try:
            return await self.commands.create(
                session,
                user,
                gateway_id,
                "",
                "configure",
                COMMAND_MAX_TTL_S,
                configuration=configuration,
            )
        except CommandRefused as exc:  # commands are off: the next heartbeat tries again
            await session.rollback()
            log.warning("gateway %s: configuration not sent: %s", gateway_id, exc.detail)
            return None

    async def heartbeat(self, session: AsyncSession, gateway: Gateway) -> CommandPublic | None:
        """After a heartbeat was kept (in ``session``, ``gateway`` as it left it): send the
        newest version again if the gateway does not have it, no command for it is open,
        and the gateway did not refuse it."""
        record = await newest(session, gateway.id)
        if record is None or applied_version(gateway) == record.version:
            return None
        command = await _last_command(session, gateway.id)
        if command is not None and _version_of(command) == record.version:
            if command.state in (CommandState.PENDING.value, CommandState.ACCEPTED.value):
                return None
            if command.state == CommandState.REFUSED.value and command.reason in FINAL_REFUSALS:
                return None
        log.info(
            "gateway %s has configuration version %s, not %d: sending it again",
            gateway.id,
            applied_version(gateway),
            record.version,
        )
        self.resent += 1
        system = User(org_id=gateway.org_id, username=SYSTEM, role=SYSTEM)
        return await self._send(session, system, gateway.id, _wire(record))
