"""Signed commands: dispatch service -> gateway -> device (docs/commands.md).

A command is checked (the gateway is the caller's organisation's, the device is in that
gateway's inventory, the action is one it reports for the device), signed with the
command key (cloud/commandkeys.py), stored as ``pending`` and committed, then published
once, QoS 1, on the gateway's commands topic. It is never published again: a command not
sent because the broker link is down is recorded ``failed`` with reason ``not_sent``; one
handed to the link but not confirmed by the broker in time stays ``pending`` (it may have
reached the gateway), for the gateway's result or the expiry sweep to settle.

The gateway answers on its results topic; each result moves the record along

    pending  -> accepted | refused | expired | done | failed
    accepted -> done | failed

and the final states (refused, expired, done, failed) stay final. A result that fits no
step changes nothing and is counted, like one for a command this service does not know
or one from another gateway than the command's. The sweep marks every command still
pending or accepted ``expired`` once its expiry plus a grace (longer than the clock
difference gateways accept) has passed: by then no gateway will execute it. Every step
is a compare-and-set on the state read, so replicas racing (a result and a sweep) make
exactly one change, and only the one that made it tells the live stream.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.wire import (
    COMMAND_MAX_TTL_S,
    GATEWAY_TARGET,
    Command,
    CommandAction,
    CommandResult,
    GatewayConfiguration,
    commands_topic,
)

from .audit import audit
from .clock import Clock, database_now, pause
from .commandkeys import CommandKeys
from .db import CommandRecord, Device, Gateway, User
from .hub import CommandHub
from .locklog import LOCK_ACTIONS, lock_log, log_command_step
from .schemas import CommandChange, CommandPublic

log = logging.getLogger("trygg.cloud.commands")

DEFAULT_TTL_S = 30
PUBLISH_TIMEOUT_S = 5.0
SWEEP_BATCH = 500


class CommandState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"
    EXPIRED = "expired"


OPEN = (CommandState.PENDING, CommandState.ACCEPTED)
# The states a result's outcome may move a command from; none moves a final one (done,
# failed, refused, expired).
MOVES_FROM: dict[CommandState, tuple[CommandState, ...]] = {
    CommandState.ACCEPTED: (CommandState.PENDING,),
    CommandState.REFUSED: (CommandState.PENDING,),
    CommandState.EXPIRED: (CommandState.PENDING,),
    CommandState.DONE: OPEN,
    CommandState.FAILED: OPEN,
}


class CommandRefused(Exception):
    """A command that is not made: ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Delivery(StrEnum):
    SENT = "sent"  # the broker confirmed it (PUBACK)
    NOT_SENT = "not_sent"  # never left: no broker link
    # Handed to the link, but not confirmed in time: it may yet have reached the
    # gateway, so the command stays pending (its result, or the sweep, decides).
    UNCONFIRMED = "unconfirmed"


class Publisher(Protocol):
    async def publish_command(self, topic: str, payload: str, timeout_s: float) -> Delivery:
        """Publish once, QoS 1, never again later."""
        ...


class ResultDrop(StrEnum):
    """Why a result changed nothing (ingest counts these as drops)."""

    UNKNOWN_COMMAND = "result_unknown_command"
    WRONG_GATEWAY = "result_wrong_gateway"
    NOT_APPLICABLE = "result_not_applicable"  # the command's state allows no such step


def new_command_id() -> str:
    return secrets.token_urlsafe(12)


def public(record: CommandRecord) -> CommandPublic:
    return CommandPublic.model_validate(record)


def _text(value: str | None) -> str | None:
    """A gateway's text as every backend stores it (no NUL in a PostgreSQL text)."""
    return None if value is None else value.replace("\x00", "\ufffd")


@dataclass
class CommandService:
    sessions: async_sessionmaker[AsyncSession]
    keys: CommandKeys
    publisher: Publisher
    hub: CommandHub
    grace: timedelta = timedelta(seconds=45)
    clock: Clock = database_now
    published: int = 0
    not_sent: int = 0
    results: int = 0
    expired: int = 0
    _sweeping: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- making one -----------------------------------------------------------------

    async def create(
        self,
        session: AsyncSession,
        user: User,
        gateway_id: str,
        device_id: str,
        action: CommandAction,
        ttl_s: int = DEFAULT_TTL_S,
        *,
        command_id: str | None = None,
        configuration: GatewayConfiguration | None = None,
    ) -> CommandPublic:
        """Check, sign, store (audited), publish. Raises CommandRefused. ``command_id``:
        one the caller made (``new_command_id``) to store its own rows in the same commit.
        A ``configure`` command (cloud/configuration.py) carries ``configuration`` and
        names the gateway itself as its device."""
        if self.keys.signing is None or self.keys.key_id is None:
            raise CommandRefused(503, self.keys.disabled or "commands are off")
        if not 1 <= ttl_s <= COMMAND_MAX_TTL_S:
            raise CommandRefused(422, f"ttl_s must be 1..{COMMAND_MAX_TTL_S} seconds")
        if (action == "configure") != (configuration is not None):
            raise CommandRefused(422, "a configuration is sent by configure, and only by it")
        device: Device | None = None
        if action == "configure":
            gateway = await session.get(Gateway, gateway_id)
            if gateway is None or gateway.org_id != user.org_id:
                raise CommandRefused(404, f"No gateway {gateway_id}")
            device_id = GATEWAY_TARGET
        else:
            device = await self._check_target(session, user.org_id, gateway_id, device_id, action)
        now = await self.clock(session)
        command = self.keys.sign(
            Command(
                id=command_id or new_command_id(),
                gateway_id=gateway_id,
                device_id=device_id,
                action=action,
                issued_by=user.username,
                issued_at=now,
                expires_at=now + timedelta(seconds=ttl_s),
                nonce=secrets.token_urlsafe(18),
                key_id=self.keys.key_id,
                configuration=configuration,
            )
        )
        record = CommandRecord(
            id=command.id,
            org_id=user.org_id,
            gateway_id=gateway_id,
            device_id=device_id,
            action=action,
            issued_by=user.username,
            issued_at=command.issued_at,
            expires_at=command.expires_at,
            nonce=command.nonce,
            key_id=command.key_id,
            state=CommandState.PENDING.value,
            reason=None,
            detail=None,
            updated_at=now,
            signed=command.model_dump(mode="json"),
        )
        session.add(record)
        detail: dict[str, Any] = {
            "gateway": gateway_id,
            "device": device_id,
            "action": action,
            "ttl_s": ttl_s,
        }
        if configuration is not None:
            detail["version"] = configuration.version
        audit(session, user, "command.create", f"command:{command.id}", detail)
        if action in LOCK_ACTIONS and device is not None:
            lock_log(
                session,
                org_id=user.org_id,
                lock_id=device_id,
                home_id=device.home_id,
                actor=user.username,
                role=user.role,
                action=action,
                outcome="issued",
                command_id=command.id,
                detail={"ttl_s": ttl_s},
            )
        await session.commit()  # stored before it is sent: its result may come at once
        self.hub.publish(user.org_id, CommandChange(type="created", command=public(record)))
        topic = commands_topic(gateway_id)
        delivery = await self.publisher.publish_command(
            topic, command.model_dump_json(), PUBLISH_TIMEOUT_S
        )
        if delivery is not Delivery.NOT_SENT:
            self.published += 1
            how = "" if delivery is Delivery.SENT else " (not confirmed by the broker)"
            log.info(
                "command %s: %s %s/%s by %s%s",
                command.id,
                action,
                gateway_id,
                device_id,
                user.username,
                how,
            )
            return public(record)
        self.not_sent += 1
        log.warning("command %s not sent: no link to the broker", command.id)
        failed = await self._move(
            session,
            command.id,
            CommandState.FAILED,
            (CommandState.PENDING,),
            "not_sent",
            "the dispatch service had no link to the broker; the command is never sent later",
        )
        return failed if failed is not None else public(record)

    async def _check_target(
        self, session: AsyncSession, org_id: str, gateway_id: str, device_id: str, action: str
    ) -> Device:
        gateway = await session.get(Gateway, gateway_id)
        if gateway is None or gateway.org_id != org_id:
            raise CommandRefused(404, f"No gateway {gateway_id}")
        device = await session.get(Device, (org_id, device_id))
        if device is None or device.gateway_id != gateway_id:
            raise CommandRefused(404, f"No device {device_id} on gateway {gateway_id}")
        if device.reported_at is None:
            raise CommandRefused(
                409, f"Gateway {gateway_id} does not report device {device_id} (any more)"
            )
        actions = device.actions or []
        if action not in actions:
            can = ", ".join(actions) or "nothing"
            raise CommandRefused(
                422, f"Device {device_id} does not support {action!r} (it supports: {can})"
            )
        return device

    # --- where it has got to ---------------------------------------------------------

    async def apply_result(self, topic_gateway: str, result: CommandResult) -> ResultDrop | None:
        """A gateway's result (its topic's gateway checked equal to ``result.gateway_id``
        by the caller): the command moved, or why nothing changed."""
        async with self.sessions() as session:
            record = await session.get(CommandRecord, result.command_id)
            if record is None:
                return ResultDrop.UNKNOWN_COMMAND
            if record.gateway_id != topic_gateway:
                return ResultDrop.WRONG_GATEWAY
            target = CommandState(result.outcome)
            moved = await self._move(
                session,
                record.id,
                target,
                MOVES_FROM[target],
                _text(result.reason) or ("expired" if target is CommandState.EXPIRED else None),
                _text(result.detail),
            )
        if moved is None:
            return ResultDrop.NOT_APPLICABLE
        self.results += 1
        return None

    async def _move(
        self,
        session: AsyncSession,
        command_id: str,
        to: CommandState,
        from_states: Iterable[CommandState],
        reason: str | None,
        detail: str | None,
    ) -> CommandPublic | None:
        """Compare-and-set the state; commits and tells the stream. None: not moved.
        A lock's command logs the step in the lock log, in the same transaction."""
        now = await self.clock(session)
        moved = await session.execute(
            update(CommandRecord)
            .where(
                CommandRecord.id == command_id,
                CommandRecord.state.in_([s.value for s in from_states]),
            )
            .values(state=to.value, reason=reason, detail=detail, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            await session.commit()
            return None
        record = await session.get(CommandRecord, command_id, populate_existing=True)
        assert record is not None
        if record.action in LOCK_ACTIONS:
            await log_command_step(session, record, now)
        await session.commit()
        change = public(record)
        log.info("command %s %s%s", command_id, to.value, f" ({reason})" if reason else "")
        self.hub.publish(record.org_id, CommandChange(type="updated", command=change))
        return change

    async def sweep(self) -> list[str]:
        """Mark ``expired`` every open command past its expiry and the grace; their ids."""
        won: list[str] = []
        async with self._sweeping, self.sessions() as session:
            now = await self.clock(session)
            rows = await session.execute(
                select(CommandRecord.id)
                .where(
                    CommandRecord.state.in_([s.value for s in OPEN]),
                    CommandRecord.expires_at < now - self.grace,
                )
                .order_by(CommandRecord.expires_at)
                .limit(SWEEP_BATCH)
            )
            for command_id in list(rows.scalars()):
                detail = "no final result from the gateway before the command expired"
                if await self._move(
                    session, command_id, CommandState.EXPIRED, OPEN, "expired", detail
                ):
                    won.append(command_id)
        self.expired += len(won)
        return won

    async def run(self, every_s: float, stop: asyncio.Event) -> None:
        """Sweep every ``every_s`` until ``stop`` (between sweeps, never inside one)."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # a database outage must not end the sweep for good
                log.exception("command expiry sweep failed; trying again")
            await pause(every_s, stop)

    # --- reading --------------------------------------------------------------------

    async def get(
        self, session: AsyncSession, org_id: str, command_id: str
    ) -> CommandPublic | None:
        record = await session.get(CommandRecord, command_id)
        if record is None or record.org_id != org_id:
            return None
        return public(record)

    async def of_gateway(
        self, session: AsyncSession, org_id: str, gateway_id: str, limit: int
    ) -> list[CommandPublic] | None:
        """The gateway's commands, most recent first; None when it is not the org's."""
        gateway = await session.get(Gateway, gateway_id)
        if gateway is None or gateway.org_id != org_id:
            return None
        rows = await session.execute(
            select(CommandRecord)
            .where(CommandRecord.org_id == org_id, CommandRecord.gateway_id == gateway_id)
            .order_by(CommandRecord.issued_at.desc(), CommandRecord.id.desc())
            .limit(limit)
        )
        return [public(r) for r in rows.scalars()]
