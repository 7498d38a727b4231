"""The dispatch uplink: sends the outbox to the cloud, most urgent first, and deletes
a row only when the cloud's application-level ack arrives (sent after its commit).

An MQTT PUBACK only says the broker has the message; it is not an ack here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

import aiomqtt
from prometheus_client import Histogram
from pydantic import ValidationError

from devices import EventId, Priority, utc_now
from devices.wire import (
    DISPATCH_STATUS_TOPIC,
    Ack,
    CommandResult,
    DispatchStatus,
    EventEnvelope,
    GatewayHealth,
    Heartbeat,
    acks_topic,
    commands_topic,
    events_topic,
    results_topic,
    status_topic,
)

from .backoff import Backoff
from .config import UplinkSection
from .mqtt_socket import broker_options, no_delay
from .store import Store

if TYPE_CHECKING:
    from .commands import CommandHandler
    from .devicestate import DeviceStateReport
    from .inventory import InventoryReport

log = logging.getLogger("trygg.gateway.uplink")


class _Flight(NamedTuple):
    """An event sent and not yet acked: when (monotonic) and how urgent."""

    sent: float
    rank: int


class DispatchUplink:
    def __init__(
        self,
        settings: UplinkSection,
        gateway_id: str,
        store: Store,
        *,
        heartbeat_interval_s: float = 60.0,
        ack_latency: Histogram | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        inventory: InventoryReport | None = None,
        commands: CommandHandler | None = None,
        device_states: DeviceStateReport | None = None,
        health: Callable[[], Awaitable[GatewayHealth]] | None = None,
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.store = store
        self.heartbeat_interval_s = heartbeat_interval_s
        self._monotonic = monotonic
        self._ack_latency = ack_latency
        # Published on connect before the outbox, and before the next event after a change.
        self.inventory = inventory
        # Signed commands on this gateway's commands topic, handed over without waiting;
        # their results are published through this connection.
        self.commands = commands
        # Every device's state, and the gateway's own health with each heartbeat.
        self.device_states = device_states
        self.health = health
        self._unsent_result: CommandResult | None = None
        self._wake = asyncio.Event()
        self._beat = asyncio.Event()  # a heartbeat now (the health changed: a configuration)
        self._in_flight: dict[EventId, _Flight] = {}
        self.connected = asyncio.Event()
        self.acked = 0
        self.resent = 0
        self.acks_ignored = 0
        self.refused = 0
        self._ignored_told = False

    def wake(self) -> None:
        """Something new is in the outbox: send it now rather than at the next poll."""
        self._wake.set()

    def beat_now(self) -> None:
        """Send the next heartbeat now (its interval counts from then)."""
        self._beat.set()

    async def run(self) -> None:
        backoff = Backoff()
        s = self.settings
        will = aiomqtt.Will(
            status_topic(self.gateway_id),
            Heartbeat(gateway_id=self.gateway_id, state="offline").model_dump_json(),
            qos=1,
            retain=True,
        )
        while True:
            try:
                async with aiomqtt.Client(
                    **broker_options(s),
                    identifier=f"trygg-gw-{self.gateway_id}",
                    will=will,
                    clean_session=False,
                ) as client:
                    no_delay(client)
                    await client.subscribe(acks_topic(self.gateway_id), qos=1)
                    if self.commands is not None:
                        await client.subscribe(commands_topic(self.gateway_id), qos=1)
                    await client.subscribe(DISPATCH_STATUS_TOPIC, qos=1)
                    self._in_flight.clear()  # whatever was unacked goes again
                    self._ignored_told = False
                    if self.inventory is not None:
                        await self.inventory.publish(client)
                    self.connected.set()
                    backoff.reset()
                    log.info("uplink connected to %s:%d", s.host, s.port)
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._receive_acks(client))
                        tasks.create_task(self._send(client))
                        tasks.create_task(self._heartbeat(client))
                        if self.commands is not None:
                            tasks.create_task(self._publish_results(client, self.commands))
                        if self.device_states is not None:
                            tasks.create_task(self.device_states.run(_publisher(client)))
            except* aiomqtt.MqttError as group:
                self.connected.clear()
                # While an alarm waits, try again within half a second; otherwise back off.
                delay = backoff.next_delay(urgent=await self._alarm_waiting())
                log.warning(
                    "uplink %s:%d lost: %s; retrying in %.1f s",
                    s.host,
                    s.port,
                    group.exceptions[0],
                    delay,
                )
                await self._pause(delay)

    async def _alarm_waiting(self) -> bool:
        depth = await self.store.depth()
        return depth[Priority.CRITICAL] + depth[Priority.HIGH] > 0

    async def _pause(self, delay: float) -> None:
        """Sleep before reconnecting, but stop at once when an alarm is accepted."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (remaining := deadline - loop.time()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return
            if await self._alarm_waiting():
                return

    async def _send(self, client: aiomqtt.Client) -> None:
        timeout = self.settings.ack_timeout_s
        while True:
            self._wake.clear()
            now = self._monotonic()
            expired = [i for i, f in self._in_flight.items() if now - f.sent > timeout]
            for event_id in expired:
                del self._in_flight[event_id]
                self.resent += 1
            await self._send_what_fits(client)
            # Sleep until new work, an ack, or the oldest in-flight event's deadline.
            oldest = min((f.sent for f in self._in_flight.values()), default=None)
            wait = timeout if oldest is None else max(0.05, oldest + timeout - self._monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 5.0))

    async def _send_what_fits(self, client: aiomqtt.Client) -> None:
        """Send pending events, most urgent first, while the window has room for them.

        The window counts, for an event, only the in-flight events at least as urgent as
        it: a window full of unacked low events never holds back a critical alarm. And no
        event goes while a more urgent one waits for its ack: if the dispatch service
        missed it (it was not yet subscribed again after an outage, say), it is sent again
        before anything less urgent, so alarms still arrive most urgent first.
        """
        if self.inventory is not None:
            await self.inventory.publish_if_due(client)
        window = self.settings.max_in_flight
        batch = await self.store.pending(window, exclude=self._in_flight)
        per_rank = Counter(f.rank for f in self._in_flight.values())  # once, not per event
        for item in batch:
            rank = item.event.priority.rank
            if any(r < rank for r in per_rank) or per_rank[rank] >= window:
                return  # the rest of the batch is no more urgent than this one
            per_rank[rank] += 1
            envelope = EventEnvelope(
                gateway_id=self.gateway_id,
                sent_at=utc_now(),
                event=item.event,
                inventory_revision=None if self.inventory is None else self.inventory.revision,
            )
            await client.publish(events_topic(self.gateway_id), envelope.model_dump_json(), qos=1)
            self._in_flight[item.event.id] = _Flight(self._monotonic(), rank)

    async def _receive_acks(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            if message.topic.value == DISPATCH_STATUS_TOPIC:
                self._on_dispatch_status(payload)
                continue
            if self.commands is not None and message.topic.value == self._commands_topic:
                self.commands.submit(bytes(payload))  # checked and acted on elsewhere
                continue
            try:
                ack = Ack.model_validate_json(payload)
            except ValidationError:
                log.warning("ignored a malformed ack on %s", message.topic.value)
                continue
            # Only an ack for an event this connection sent and still waits for deletes
            # anything: a stray or forged id must never remove an unsent alarm.
            now = self._monotonic()
            flights = {i: self._in_flight.pop(i) for i in ack.event_ids if i in self._in_flight}
            ignored = len(ack.event_ids) - len(flights)
            if ignored:
                # Usual once after a restart (acks for what the last run sent): told once
                # per connection, counted always.
                self.acks_ignored += ignored
                log.log(
                    logging.DEBUG if self._ignored_told else logging.WARNING,
                    "ignored an ack for %d events not in flight (further ones counted)",
                    ignored,
                )
                self._ignored_told = True
            if not flights:
                continue
            refused = {i: r for i, r in ack.refused.items() if i in flights}
            deleted = await self.store.ack(list(flights), refused)
            self._refused(refused)
            if self._ack_latency is not None:
                for flight in flights.values():
                    self._ack_latency.observe(now - flight.sent)
            self.acked += deleted
            self._wake.set()

    @property
    def _commands_topic(self) -> str:
        return commands_topic(self.gateway_id)

    async def _publish_results(self, client: aiomqtt.Client, commands: CommandHandler) -> None:
        """Command results, in order; one whose publish failed goes first next time."""
        topic = results_topic(self.gateway_id)
        while True:
            result = self._unsent_result or await commands.results.get()
            self._unsent_result = result
            await client.publish(topic, result.model_dump_json(), qos=1)
            self._unsent_result = None

    def _refused(self, refused: dict[EventId, str]) -> None:
        """Events the dispatch service will never take (kind or device unknown to it):
        deleted with the ack, and each one logged (the store audited it)."""
        for event_id, reason in refused.items():
            log.warning("the dispatch service refused event %s: %s", event_id, reason)
        self.refused += len(refused)

    def _on_dispatch_status(self, payload: bytes) -> None:
        try:
            status = DispatchStatus.model_validate_json(payload)
        except ValidationError:
            log.warning("ignored a malformed dispatch status")
            return
        if status.state == "online" and self.inventory is not None:
            self.inventory.resend()  # a replica's shared subscription got no retained one
            self._wake.set()
        if status.state == "online" and self._in_flight:
            log.info(
                "dispatch service is online: resending %d unacked events", len(self._in_flight)
            )
            self._in_flight.clear()
            self._wake.set()

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        while True:
            health = await self._health()
            if health is not None:
                depth = sum(level.events for level in health.outbox.values())
            else:
                depth = sum((await self.store.depth()).values())
            beat = Heartbeat(
                gateway_id=self.gateway_id,
                state="online",
                sent_at=utc_now(),
                interval_s=int(self.heartbeat_interval_s),
                outbox_depth=depth,
                health=health,
            )
            await client.publish(
                status_topic(self.gateway_id), beat.model_dump_json(), qos=1, retain=True
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat.wait(), self.heartbeat_interval_s)
            self._beat.clear()

    async def _health(self) -> GatewayHealth | None:
        if self.health is None:
            return None
        try:
            return await self.health()
        except Exception:  # the heartbeat itself matters more than what it carries
            log.exception("could not gather the gateway's health for the heartbeat")
            return None


def _publisher(client: aiomqtt.Client) -> Callable[[str, str], Awaitable[None]]:
    async def publish(topic: str, payload: str) -> None:
        await client.publish(topic, payload, qos=1)

    return publish
