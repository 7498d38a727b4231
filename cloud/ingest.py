"""The ingest worker: gateway events in, committed, then acknowledged to the gateway.

The order is the contract: validate -> make storable -> upsert by (gateway, event id)
-> commit -> ack -> stream.
Nothing is acked that is not committed; a gateway that gets no ack sends again, and
the upsert makes the resend harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aiomqtt
from prometheus_client import Histogram
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices import Event
from devices.wire import (
    DISPATCH_CHANGES_TOPIC,
    DISPATCH_STATUS_TOPIC,
    MAX_INVENTORY_BYTES,
    MAX_MESSAGE_BYTES,
    TOPIC_ROOT,
    Ack,
    CommandResult,
    DeviceStates,
    DispatchStatus,
    EventEnvelope,
    Heartbeat,
    Inventory,
    acks_topic,
    split_topic,
)

from .alarms import record_event
from .away import reported as away_reported
from .brokerlink import broker_options
from .clock import database_now
from .commands import CommandService, Delivery
from .configuration import ConfigurationService
from .db import Gateway
from .devicestate import apply_device_states
from .hub import AlarmHub, CommandHub
from .inventory import REFUSALS, IntakeCheck, Verdict, apply_inventory
from .locklog import log_lock_event
from .relay import RelaySeal
from .schemas import AlarmChange, AlarmPublic, CommandChange, RelayedChange
from .settings import CloudSettings
from .storable import storable, storable_json
from .supervision import GatewaySupervisor

CHANGES_TOPIC = DISPATCH_CHANGES_TOPIC  # between replicas: alarm changes for consoles
log = logging.getLogger("trygg.cloud.ingest")

ORG_CACHE_S = 60.0
# A database that is down shows as a driver error, or as the OSError of a refused connect.
DATABASE_ERRORS = (SQLAlchemyError, OSError)
Report = TypeVar("Report", Inventory, DeviceStates)
EVENT_DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0)


def _no_delay(client: aiomqtt.Client) -> None:
    """Acks are small packets sent right after a PUBACK: without TCP_NODELAY, Nagle's
    algorithm holds them for the broker's delayed ACK (about 40 ms on Linux)."""
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class IngestWorker:
    def __init__(
        self,
        settings: CloudSettings,
        sessions: async_sessionmaker[AsyncSession],
        hub: AlarmHub,
        supervisor: GatewaySupervisor,
        command_hub: CommandHub | None = None,
    ) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.merge_window = timedelta(seconds=settings.alarm_merge_window_s)
        self.sessions = sessions
        self.hub = hub
        self.dropped: Counter[str] = Counter()
        # Events kept with text or numbers PostgreSQL cannot store replaced (storable.py).
        self.neutralised: Counter[str] = Counter()
        self.committed = 0
        self.duplicates = 0
        self.refused = 0  # acked as refused (kind or device unknown): the gateway deletes them
        # Left unacked: a device not known yet, from a newer inventory than the one applied.
        self.waiting_for_inventory = 0
        self.inventories = 0
        self.device_states = 0  # device states applied
        # For /metrics (cloud/metrics.py): alarms opened by kind and priority, and how long
        # events took from their gateway to their commit here.
        self.alarms_raised: Counter[tuple[str, str]] = Counter()
        self.event_delay = Histogram(
            "trygg_dispatch_event_delay_seconds",
            "From the gateway taking an event to its commit in the dispatch service",
            ["priority"],
            buckets=EVENT_DELAY_BUCKETS,
            registry=None,
        )
        self.check = IntakeCheck()
        self.connected = asyncio.Event()
        self._warned: set[tuple[str, str]] = set()
        self._client: aiomqtt.Client | None = None
        self._relaying: set[asyncio.Task[None]] = set()
        self.replica = f"{settings.mqtt_client_id}-{uuid.uuid4().hex[:8]}"
        self.relay_dropped = 0
        self.seal = RelaySeal(settings.secret_key)
        hub.relay = self.relay
        self.command_hub = command_hub or CommandHub()
        self.command_hub.relay = self.relay_command
        # Set by the app once the command service exists (it publishes through this worker).
        self.commands: CommandService | None = None
        self.configuration: ConfigurationService | None = None
        self._orgs: dict[str, tuple[str, float]] = {}

    def _drop(self, reason: str, source: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        if self._first(reason, source):
            log.warning("dropped %s from %s: %s (further ones counted)", reason, source, detail)

    def _neutralise(self, reason: str, source: str, event_id: str) -> None:
        self.neutralised[reason] += 1
        if self._first(reason, source):
            log.warning(
                "event %s from %s had a %s, replaced; the event is kept (further ones counted)",
                event_id,
                source,
                reason.replace("_", " "),
            )

    def _first(self, reason: str, source: str) -> bool:
        """Whether this is the first time ``source`` gave ``reason`` (logged once each)."""
        if (reason, source) in self._warned or len(self._warned) >= 10_000:
            return False
        self._warned.add((reason, source))
        return True

    async def run(self) -> None:
        s = self.settings
        # A dispatch service has few connections and alarms wait on it: retry quickly.
        delay = 0.1
        while True:
            try:
                async with aiomqtt.Client(
                    **broker_options(s),
                    identifier=s.mqtt_client_id,
                    clean_session=False,
                    will=aiomqtt.Will(
                        DISPATCH_STATUS_TOPIC,
                        DispatchStatus(state="offline").model_dump_json(),
                        qos=1,
                        retain=True,
                    ),
                ) as client:
                    _no_delay(client)
                    # Replicas share the gateways' traffic: each message goes to one of them.
                    share = f"$share/{s.mqtt_shared_group}/" if s.mqtt_shared_group else ""
                    await client.subscribe(f"{share}{TOPIC_ROOT}/+/events", qos=1)
                    await client.subscribe(f"{share}{TOPIC_ROOT}/+/status", qos=1)
                    await client.subscribe(f"{share}{TOPIC_ROOT}/+/inventory", qos=1)
                    await client.subscribe(f"{share}{TOPIC_ROOT}/+/devices", qos=1)
                    await client.subscribe(f"{share}{TOPIC_ROOT}/+/results", qos=1)
                    # Every replica hears the others: their changes, and their last wills.
                    await client.subscribe(CHANGES_TOPIC, qos=0)
                    await client.subscribe(DISPATCH_STATUS_TOPIC, qos=1)
                    self._client = client
                    # Listening now: gateways resend what they hold unacked.
                    await client.publish(
                        DISPATCH_STATUS_TOPIC,
                        DispatchStatus(state="online").model_dump_json(),
                        qos=1,
                        retain=True,
                    )
                    self.connected.set()
                    delay = 0.1
                    log.info("ingest subscribed on %s:%d", s.mqtt_host, s.mqtt_port)
                    async for message in client.messages:
                        payload = message.payload
                        if not isinstance(payload, bytes | bytearray):
                            self._drop("malformed", message.topic.value, "empty payload")
                            continue
                        if message.topic.value == CHANGES_TOPIC:
                            self._relayed(bytes(payload))
                            continue
                        if message.topic.value == DISPATCH_STATUS_TOPIC:
                            await self._dispatch_status(client, bytes(payload))
                            continue
                        try:
                            await self.handle(client, message.topic.value, bytes(payload))
                        except aiomqtt.MqttError:
                            raise
                        except Exception:
                            # A bug must not stop the intake of every gateway's alarms. The
                            # message is not acked, so its gateway will send it again.
                            self.dropped["internal_error"] += 1
                            log.exception("failed to handle a message on %s", message.topic.value)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self._client = None
                log.warning(
                    "ingest broker %s:%d: %s; retrying in %.1f s",
                    s.mqtt_host,
                    s.mqtt_port,
                    exc,
                    delay,
                )
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 1.0)

    async def _dispatch_status(self, client: aiomqtt.Client, payload: bytes) -> None:
        """Another replica's last will says "offline" while this one is up: say "online"
        again, so that gateways resend at once what that replica had not acked."""
        try:
            status = DispatchStatus.model_validate_json(payload)
        except ValidationError:
            self._drop("malformed", DISPATCH_STATUS_TOPIC)
            return
        if status.state == "offline":
            log.info("another dispatch replica went away; telling gateways this one is online")
            await client.publish(
                DISPATCH_STATUS_TOPIC,
                DispatchStatus(state="online").model_dump_json(),
                qos=1,
                retain=True,
            )

    async def publish_command(self, topic: str, payload: str, timeout_s: float) -> Delivery:
        """A signed command, once, QoS 1 (cloud/commands.py). Never queued for later: a
        command published after a reconnect could be executed after the person who asked
        for it was told it failed. (Each connection is a new client: what the last one
        had not sent dies with it.)"""
        client = self._client
        if client is None or not self.connected.is_set():
            return Delivery.NOT_SENT
        try:
            await client.publish(topic, payload, qos=1, timeout=timeout_s)
        except aiomqtt.MqttCodeError as exc:  # refused at once: the link is down
            log.warning("command on %s not sent: %s", topic, exc)
            return Delivery.NOT_SENT
        except aiomqtt.MqttError as exc:  # sent, perhaps, but not confirmed in time
            log.warning("command on %s not confirmed by the broker: %s", topic, exc)
            return Delivery.UNCONFIRMED
        return Delivery.SENT

    def relay(self, org_id: str, change: AlarmChange) -> None:
        """Tell the other replicas' consoles of a change made here (best effort: a console
        that misses one reloads the queue when its stream reconnects)."""
        self._relay(RelayedChange(replica=self.replica, org_id=org_id, change=change))

    def relay_command(self, org_id: str, change: CommandChange) -> None:
        """The same for a command's change (its result may reach any replica)."""
        self._relay(RelayedChange(replica=self.replica, org_id=org_id, command=change))

    def _relay(self, body: RelayedChange) -> None:
        client = self._client
        if client is None:
            self.relay_dropped += 1
            return
        task = asyncio.create_task(client.publish(CHANGES_TOPIC, self.seal.seal(body), qos=0))
        self._relaying.add(task)
        task.add_done_callback(self._relay_done)

    def _relay_done(self, task: asyncio.Task[None]) -> None:
        self._relaying.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.relay_dropped += 1

    def _relayed(self, payload: bytes) -> None:
        """Applied only when sealed by a replica (relay.py): never a forged change."""
        body = self.seal.open(payload)
        if isinstance(body, str):
            self._drop(body, CHANGES_TOPIC, "relayed change not applied")
            return
        if body.replica == self.replica:
            return
        if body.change is not None:
            self.hub.deliver(body.org_id, body.change)
        if body.command is not None:
            self.command_hub.deliver(body.org_id, body.command)

    async def handle(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        parts = split_topic(topic)
        if parts is None:
            self._drop("unknown_topic", topic[:200])
            return
        gateway_id, kind = parts
        if len(payload) > (MAX_INVENTORY_BYTES if kind == "inventory" else MAX_MESSAGE_BYTES):
            self._drop("oversized", gateway_id, f"{len(payload)} bytes")
            return
        if kind == "events":
            await self._event(client, gateway_id, payload)
        elif kind == "status":
            await self._status(gateway_id, payload)
        elif kind == "inventory":
            await self._inventory(gateway_id, payload)
        elif kind == "results":
            await self._result(gateway_id, payload)
        elif kind == "devices":
            await self._device_states(gateway_id, payload)
        else:
            self._drop("unknown_topic", topic[:200])

    async def _org_of(self, session: AsyncSession, gateway_id: str) -> str | None:
        """The gateway's organisation, cached for a minute (one query less per alarm)."""
        now = time.monotonic()
        cached = self._orgs.get(gateway_id)
        if cached is not None and now - cached[1] < ORG_CACHE_S:
            return cached[0]
        gateway = await session.get(Gateway, gateway_id)
        if gateway is None:
            return None
        self._orgs[gateway_id] = (gateway.org_id, now)
        return gateway.org_id

    async def _event(self, client: aiomqtt.Client, gateway_id: str, payload: bytes) -> None:
        try:
            envelope = EventEnvelope.model_validate_json(payload)
        except ValidationError as exc:
            self._drop("malformed", gateway_id, str(exc.errors()[0]["msg"]))
            return
        if envelope.gateway_id != gateway_id:
            self._drop("gateway_mismatch", gateway_id, f"envelope says {envelope.gateway_id}")
            return
        event, reasons = storable(envelope.event)
        for reason in sorted(reasons):
            self._neutralise(reason, gateway_id, event.id)
        try:
            async with self.sessions() as session:
                org_id = await self._org_of(session, gateway_id)
                if org_id is None:
                    # Not acked: the gateway keeps the event until it is registered.
                    self._drop("unknown_gateway", gateway_id, "gateway is not registered")
                    return
                revision = envelope.inventory_revision
                judged = await self.check.verdict(session, org_id, gateway_id, event, revision)
                if judged is not Verdict.TAKE:
                    await self._not_taken(client, gateway_id, event, revision, judged)
                    return
                intake = await record_event(
                    session, org_id, gateway_id, event, merge_window=self.merge_window
                )
                if not intake.duplicate:
                    await log_lock_event(session, org_id, gateway_id, event)
                    await away_reported(session, org_id, event)
                change = None
                if intake.alarm is not None:
                    public = AlarmPublic.model_validate(intake.alarm)
                    change = AlarmChange(
                        type="created" if intake.created else "updated", alarm=public
                    )
                await session.commit()
        except DATABASE_ERRORS as exc:
            # Not committed, so not acked: the gateway will send it again.
            self._drop("database_error", gateway_id, str(exc).splitlines()[0][:200])
            return
        if intake.duplicate:
            self.duplicates += 1
        else:
            self.committed += 1
            # From the gateway taking the event to its commit here (one clock on the wire:
            # UTC; a gateway's clock error shows here too, and in its clock offset).
            delay = (datetime.now(UTC) - event.occurred_at).total_seconds()
            self.event_delay.labels(event.priority.value).observe(max(0.0, delay))
            if intake.created:
                self.alarms_raised[(event.kind, event.priority.value)] += 1
        await client.publish(
            acks_topic(gateway_id), Ack(event_ids=[event.id]).model_dump_json(), qos=1
        )
        if change is not None:
            self.hub.publish(org_id, change)
            if intake.created:
                log.info(
                    "alarm %d %s (%s) from %s/%s",
                    change.alarm.id,
                    event.kind,
                    event.priority,
                    gateway_id,
                    event.device_id,
                )

    async def _not_taken(
        self,
        client: aiomqtt.Client,
        gateway_id: str,
        event: Event,
        revision: int | None,
        judged: Verdict,
    ) -> None:
        if judged is Verdict.WAIT:
            # Not refused and not acked: the gateway sends it again after its ack timeout,
            # by which time the inventory that names the device has landed.
            self.waiting_for_inventory += 1
            if self._first(judged.value, gateway_id):
                log.info(
                    "event %s from %s/%s waits for inventory revision %s (further ones counted)",
                    event.id,
                    gateway_id,
                    event.device_id,
                    revision,
                )
            return
        reason = REFUSALS[judged].format(kind=event.kind[:64], device=event.device_id[:128])
        self._drop(judged.value, gateway_id, f"event {event.id}: {reason}")
        self.refused += 1
        ack = Ack(event_ids=[event.id], refused={event.id: f"{judged.value}: {reason}"})
        await client.publish(acks_topic(gateway_id), ack.model_dump_json(), qos=1)

    def _read(
        self,
        model: type[Report],
        payload: bytes,
        gateway_id: str,
        reasons: tuple[str, str],
        label: Callable[[Report], str],
    ) -> Report | None:
        """A gateway's report (inventory, device states) as its model, or None after a
        counted drop: ``reasons`` name a malformed one and one naming another gateway.
        What PostgreSQL cannot store (a NUL) is replaced, and counted, in what is kept."""
        garbage, mismatch = reasons
        try:
            report = model.model_validate_json(payload)
        except ValidationError as exc:
            self._drop(garbage, gateway_id, str(exc.errors()[0]["msg"]))
            return None
        if report.gateway_id != gateway_id:
            self._drop(mismatch, gateway_id, f"{label(report)} names {report.gateway_id}")
            return None
        fixed, unstorable = storable_json(report.model_dump(mode="json"))
        for reason in sorted(unstorable):
            self._neutralise(reason, gateway_id, label(report))
        return model.model_validate(fixed) if unstorable else report

    async def _inventory(self, gateway_id: str, payload: bytes) -> None:
        inventory = self._read(
            Inventory,
            payload,
            gateway_id,
            ("inventory_garbage", "inventory_mismatch"),
            lambda i: f"inventory {i.revision}",
        )
        if inventory is None:
            return
        try:
            async with self.sessions() as session:
                gateway = await session.get(Gateway, gateway_id, with_for_update=True)
                if gateway is None:
                    self._drop("unknown_gateway", gateway_id, "gateway is not registered")
                    return
                now = await database_now(session)
                applied = await apply_inventory(session, gateway, inventory, now)
                await session.commit()
        except DATABASE_ERRORS as exc:
            self._drop("database_error", gateway_id, str(exc).splitlines()[0][:200])
            return
        if applied.stale:
            detail = f"revision {inventory.revision} is older than the one applied"
            self._drop("inventory_stale", gateway_id, detail)
            return
        for device_id in applied.conflicts:
            self._drop("inventory_conflict", gateway_id, f"{device_id} belongs to another gateway")
        self.inventories += 1
        log.info("inventory %d of %s: %d devices", inventory.revision, gateway_id, applied.devices)

    async def _device_states(self, gateway_id: str, payload: bytes) -> None:
        """A gateway's report of its devices' states (cloud/devicestate.py)."""
        report = self._read(
            DeviceStates,
            payload,
            gateway_id,
            ("device_states_malformed", "device_states_mismatch"),
            lambda _r: "device states",
        )
        if report is None:
            return
        try:
            async with self.sessions() as session:
                gateway = await session.get(Gateway, gateway_id)
                if gateway is None:
                    self._drop("unknown_gateway", gateway_id, "gateway is not registered")
                    return
                applied = await apply_device_states(session, gateway, report)
                await session.commit()
        except DATABASE_ERRORS as exc:
            self._drop("database_error", gateway_id, str(exc).splitlines()[0][:200])
            return
        self.device_states += applied.updated
        if applied.unknown:
            self.dropped["device_state_unknown_device"] += len(applied.unknown)
            if self._first("device_state_unknown_device", gateway_id):
                log.warning(
                    "state of %d devices %s does not know for %s, e.g. %s (further ones counted)",
                    len(applied.unknown),
                    "the dispatch service",
                    gateway_id,
                    applied.unknown[0][:128],
                )
        if applied.stale:
            self.dropped["device_state_stale"] += applied.stale

    async def _result(self, gateway_id: str, payload: bytes) -> None:
        """A gateway's result of a command: applied only when it is that gateway's own
        result of a command sent to it; anything else is a counted drop."""
        try:
            result = CommandResult.model_validate_json(payload)
        except ValidationError as exc:
            self._drop("result_malformed", gateway_id, str(exc.errors()[0]["msg"]))
            return
        if result.gateway_id != gateway_id:
            self._drop("result_gateway_mismatch", gateway_id, f"result says {result.gateway_id}")
            return
        if self.commands is None:
            self._drop("result_unknown_command", gateway_id, "commands are not handled here")
            return
        try:
            dropped = await self.commands.apply_result(gateway_id, result)
        except DATABASE_ERRORS as exc:
            self._drop("database_error", gateway_id, str(exc).splitlines()[0][:200])
            return
        if dropped is not None:
            detail = f"{result.outcome} of command {result.command_id}"
            self._drop(dropped.value, gateway_id, detail)

    async def _status(self, gateway_id: str, payload: bytes) -> None:
        try:
            beat = Heartbeat.model_validate_json(payload)
        except ValidationError as exc:
            self._drop("malformed", gateway_id, str(exc.errors()[0]["msg"]))
            return
        if beat.gateway_id != gateway_id:
            self._drop("gateway_mismatch", gateway_id, f"heartbeat says {beat.gateway_id}")
            return
        try:
            async with self.sessions() as session:
                gateway = await session.get(Gateway, gateway_id)
                if gateway is None:
                    self._drop("unknown_gateway", gateway_id, "gateway is not registered")
                    return
                changes = await self.supervisor.heartbeat(session, gateway, beat)
                await session.commit()
                self.supervisor.tell(changes)
                if self.configuration is not None and beat.health is not None:
                    # The newest configuration, sent again if it is not in force.
                    await self.configuration.heartbeat(session, gateway)
        except DATABASE_ERRORS as exc:
            self._drop("database_error", gateway_id, str(exc).splitlines()[0][:200])
