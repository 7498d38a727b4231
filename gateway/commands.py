"""Signed commands from the dispatch service: verified, acted on, answered, audited.

A command arrives on ``commands_topic(<this gateway>)``. Before anything is touched it is
checked in this order (the contract with the dispatch service, docs/security.md):

  malformed -> wrong_gateway -> commands_disabled -> unknown_key -> bad_signature ->
  too_long -> not_yet_valid -> expired -> replayed (store_fault) -> unknown_device ->
  unsupported_action -> busy

and refused with the first reason that holds. Otherwise it is ``accepted``, its device's
transport acts (``DeviceActor``), and the result is ``done`` or ``failed`` with the
reason. The nonce is committed to the store before the device is touched, so a replay is
refused even after a restart. Every command and every result goes to the lock log (the
store's hash-chained ``lock_log``, docs/audit.md) and the ``trygg.gateway.audit`` logger.

Nothing a sender puts in a command crashes anything: what cannot be read is a counted
drop, and where its id can be read it is answered ``refused malformed``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from pydantic import ValidationError

from devices import utc_now
from devices.wire import (
    COMMAND_MAX_TTL_S,
    GATEWAY_ID_PATTERN,
    MAX_CONFIGURE_BYTES,
    Command,
    CommandResult,
)

from .actions import ActResult, DeviceActor, supported_actions
from .config import CommandsSection
from .counters import DropReason, InputCounters
from .locklog import LockLogEntry
from .registry import RegisteredDevice, Registry
from .store import Store, StoreError

log = logging.getLogger("trygg.gateway.commands")
audit_log = logging.getLogger("trygg.gateway.audit")

MAX_COMMAND_BYTES = 8 * 1024  # every command but a configure, which may be larger
MAX_QUEUED = 100  # commands waiting for their check; past it they are dropped and counted
MAX_RESULTS = 1000  # results waiting for the uplink's connection
SOURCE = "commands"
_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_GATEWAY = re.compile(GATEWAY_ID_PATTERN)

Actors = Callable[[RegisteredDevice], DeviceActor | None]
Configurator = Callable[[Command], Awaitable[ActResult]]


class Refused(Exception):
    """A command refused before anything was touched: the outcome and its reason."""

    def __init__(self, reason: str, detail: str = "", outcome: str = "refused") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.outcome = outcome


def _readable_id(payload: bytes) -> str | None:
    """A malformed command's id, when it has one that can be answered to."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    command_id, gateway_id = body.get("id"), body.get("gateway_id")
    if not isinstance(command_id, str) or not isinstance(gateway_id, str):
        return None
    if not _ID.match(command_id) or not _GATEWAY.match(gateway_id):
        return None
    return command_id


def _first_error(error: ValidationError) -> str:
    item = error.errors()[0]
    where = ".".join(str(p) for p in item["loc"]) or "(top level)"
    return f"{where}: {item['msg']}"[:200]


class CommandHandler:
    """Checks, acts on and answers this gateway's commands.

    ``submit`` takes a message as the uplink received it and never blocks it; ``run``
    checks them one by one (the act step runs in a task of its own per command);
    ``results`` is what the uplink publishes on ``results_topic``."""

    def __init__(
        self,
        gateway_id: str,
        settings: CommandsSection,
        registry: Registry,
        store: Store,
        counters: InputCounters,
        actors: Actors,
        *,
        clock: Callable[[], datetime] = utc_now,
        tester: DeviceActor | None = None,
        configurator: Configurator | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.tester = tester  # who raises a "test" command's alarm (the pipeline)
        self.configurator = configurator  # who applies a "configure" command
        self.settings = settings
        self.keys = settings.trusted_keys
        self.registry = registry
        self.store = store
        self.counters = counters
        self.actors = actors
        self._clock = clock
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
        self.results: asyncio.Queue[CommandResult] = asyncio.Queue(MAX_RESULTS)
        self._busy: set[str] = set()  # devices a command is acting on
        self._acting: set[asyncio.Task[None]] = set()
        self.outcomes: dict[str, int] = {}

    # -- intake ---------------------------------------------------------------------
    def submit(self, payload: bytes) -> None:
        try:
            self._inbox.put_nowait(payload)
        except asyncio.QueueFull:
            self.counters.drop(DropReason.QUEUE_FULL, SOURCE, "too many commands waiting")

    async def run(self) -> None:
        try:
            while True:
                payload = await self._inbox.get()
                try:
                    await self.handle(payload)
                except Exception as exc:  # a bug of ours must not stop the next command
                    self.counters.drop(DropReason.INTERNAL_ERROR, SOURCE, repr(exc), exc)
        finally:
            for task in list(self._acting):
                task.cancel()

    # -- the checks, in the contract's order ------------------------------------------
    async def handle(self, payload: bytes) -> None:
        if len(payload) > MAX_CONFIGURE_BYTES:
            self.counters.drop(DropReason.OVERSIZED, SOURCE, f"{len(payload)} bytes")
            return
        try:
            command = Command.model_validate_json(payload)
        except ValidationError as exc:
            detail = _first_error(exc)
            self.counters.drop(DropReason.MALFORMED, SOURCE, detail)
            await self._answer_unreadable(_readable_id(payload), detail)
            return
        if command.action != "configure" and len(payload) > MAX_COMMAND_BYTES:
            self.counters.drop(DropReason.OVERSIZED, SOURCE, f"{len(payload)} bytes")
            return
        await self._audit(command, "received", "")
        try:
            device = await self._check(command)
        except Refused as refused:
            await self._finish(command, refused.outcome, refused.reason, refused.detail)
            return
        if device is None:  # a configure command, checked up to its nonce
            await self._configure(command)
            return
        actor = self.tester if command.action == "test" else self.actors(device)
        if actor is None:  # the transport acts on nothing (a table says otherwise: a bug)
            await self._finish(command, "refused", "unsupported_action", "transport cannot act")
            return
        if device.id in self._busy:
            await self._finish(command, "refused", "busy", "another command is running on it")
            return
        self._busy.add(device.id)
        try:
            await self._finish(command, "accepted", None, "")
        except BaseException:
            self._busy.discard(device.id)
            raise
        task = asyncio.create_task(self._act(actor, device, command), name=f"cmd-{command.id}")
        self._acting.add(task)
        task.add_done_callback(self._acting.discard)

    async def _answer_unreadable(self, command_id: str | None, detail: str) -> None:
        if command_id is None:
            return  # nobody to answer: only counted
        audit_log.warning("command %s refused (malformed): %s", command_id, detail)
        entry = LockLogEntry(
            utc_now().isoformat(), "", "", "", "refused", "malformed", command_id, detail
        )
        await self._write_audit(entry)
        self._publish(command_id, "refused", "malformed", detail)

    async def _configure(self, command: Command) -> None:
        if self.configurator is None:
            await self._finish(command, "refused", "unsupported_action", "no configurator")
            return
        try:
            result = await self.configurator(command)
        except Exception as exc:
            self.counters.drop(DropReason.INTERNAL_ERROR, SOURCE, repr(exc), exc)
            result = ActResult("failed", "internal_error", "the gateway failed applying it")
        await self._finish(command, result.outcome, result.reason, result.detail or "")

    async def _check(self, command: Command) -> RegisteredDevice | None:
        if command.gateway_id != self.gateway_id:
            raise Refused("wrong_gateway", f"addressed to {command.gateway_id}")
        if self.keys is None:
            raise Refused("commands_disabled", "no [commands] trusted_keys_file configured")
        if command.key_id not in self.keys:
            raise Refused("unknown_key", f"key {command.key_id} is not trusted")
        signature = command.signature_bytes()
        if not signature or not self.keys.verify(
            command.key_id, signature, command.signing_bytes()
        ):
            raise Refused("bad_signature", f"signature by key {command.key_id} does not verify")
        ttl = (command.expires_at - command.issued_at).total_seconds()
        if ttl > COMMAND_MAX_TTL_S:
            raise Refused("too_long", f"valid {ttl:.0f} s; at most {COMMAND_MAX_TTL_S} s")
        now = self._clock()
        skew = timedelta(seconds=self.settings.clock_skew_s)
        if command.issued_at > now + skew:
            raise Refused("not_yet_valid", f"issued at {command.issued_at.isoformat()}")
        if now > command.expires_at + skew:
            raise Refused("expired", f"expired at {command.expires_at.isoformat()}", "expired")
        try:
            fresh = await self.store.claim_nonce(
                command.nonce, (command.expires_at + skew).timestamp()
            )
        except StoreError as exc:
            raise Refused("store_fault", "the gateway cannot keep the nonce") from exc
        if not fresh:
            raise Refused("replayed", "its nonce was used before")
        if command.action == "configure":
            return None
        device = self.registry.get(command.device_id)
        if device is None:
            raise Refused("unknown_device", f"no device {command.device_id} on this gateway")
        if command.action not in supported_actions(device.config):
            raise Refused(
                "unsupported_action", f"a {device.config.type.value} cannot {command.action}"
            )
        return device

    # -- acting -------------------------------------------------------------------------
    async def _act(self, actor: DeviceActor, device: RegisteredDevice, command: Command) -> None:
        try:
            try:
                result = await actor.act(device, command, self.settings.no_answer_s)
            except Exception as exc:
                self.counters.drop(DropReason.INTERNAL_ERROR, SOURCE, repr(exc), exc)
                result = ActResult("failed", "internal_error", "the gateway failed acting on it")
        finally:
            self._busy.discard(device.id)
        await self._finish(command, result.outcome, result.reason, result.detail or "")

    # -- answering and auditing ---------------------------------------------------------
    async def _finish(
        self, command: Command, outcome: str, reason: str | None, detail: str
    ) -> None:
        await self._audit(command, outcome, reason or "", detail)
        self._publish(command.id, outcome, reason, detail)

    def _publish(self, command_id: str, outcome: str, reason: str | None, detail: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        result = CommandResult.model_validate(
            {
                "command_id": command_id,
                "gateway_id": self.gateway_id,
                "outcome": outcome,
                "reason": reason,
                "detail": detail[:500] or None,
                "at": utc_now(),
            }
        )
        try:
            self.results.put_nowait(result)
        except asyncio.QueueFull:
            self.counters.drop(DropReason.QUEUE_FULL, "command-results", command_id)

    async def _audit(self, command: Command, outcome: str, reason: str, detail: str = "") -> None:
        level = logging.WARNING if outcome in ("refused", "failed", "expired") else logging.INFO
        audit_log.log(
            level,
            "command %s %s%s: %s %s by %s%s",
            command.id,
            outcome,
            f" ({reason})" if reason else "",
            command.action,
            command.device_id,
            command.issued_by,
            f"; {detail}" if detail and outcome != "received" else "",
        )
        entry = LockLogEntry(
            at=utc_now().isoformat(),
            device_id=command.device_id,
            action=command.action,
            actor=command.issued_by,
            outcome=outcome,
            reason=reason,
            command_id=command.id,
            detail=detail if outcome != "received" else "",
        )
        await self._write_audit(entry)

    async def _write_audit(self, entry: LockLogEntry) -> None:
        try:
            await self.store.append_lock_log(entry)
        except StoreError as exc:
            log.error("command %s: audit not written: %s", entry.command_id, exc)
