"""Zigbee2MQTT over MQTT: subscribe to ``<base_topic>/#``, make sense of each topic
(``Zigbee2MqttInput``: device state, ``/action``, ``/availability``, the bridge's device
list) and hand what it decoded to the pipeline.

A QoS 1 message is acknowledged to the broker only after the pipeline has handled it
(an alarm is committed to the outbox by then). A gateway killed in between gets the
message again from its persistent session; the pipeline knows the redelivery.
aiomqtt has no public manual-ack API yet, so paho's own is used through the client.

When the store cannot keep a message (a full disk, a damaged file), it is not acked: the
transport drops the connection and takes it again within half a second, so the broker
hands the message back until it is kept. That failure is logged once per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import cast

import aiomqtt
import paho.mqtt.client as mqtt

from devices import CodecError, Signal, UnexpectedValue
from devices.codecs import (
    BridgeDevice,
    decode_action,
    decode_availability,
    decode_bridge_listing,
    decode_state,
)
from devices.wire import Command

from ..actions import ActResult, wanted_state
from ..backoff import Backoff
from ..config import GatewayConfig, Zigbee2MqttSection
from ..counters import DropReason
from ..mqtt_socket import broker_options, no_delay
from ..registry import RegisteredDevice
from ..store import StoreError
from .intake import IntakeQueue
from .plugin import Intake, LinkHealth, TransportPlugin

log = logging.getLogger("trygg.gateway.zigbee2mqtt")

# (topic, payload, resent: the broker flagged it as a redelivery)
Handler = Callable[[str, bytes, bool], Awaitable[None]]
Dropped = Callable[[str], None]

TRANSPORT = "zigbee2mqtt"
# Zigbee2MQTT publishes these below a device's topic; "set"/"get" are commands to it.
_SUBTOPICS = ("availability", "action", "set", "get")


class Zigbee2MqttTransport:
    def __init__(
        self,
        settings: Zigbee2MqttSection,
        gateway_id: str,
        handler: Handler,
        on_dropped: Dropped = lambda _topic: None,
        *,
        name: str = TRANSPORT,
        topic: str | None = None,
    ) -> None:
        """``name`` and ``topic``: another subscription on the same broker (the native
        devices' ``trygg/v1/dev/+/+``), with a client of its own."""
        self.settings = settings
        self.client_id = f"trygg-gw-{gateway_id}-{'z2m' if name == TRANSPORT else name}"
        self.topic = topic or f"{settings.base_topic}/#"
        self._handler = handler
        self._on_dropped = on_dropped
        self._queue: IntakeQueue | None = None
        self._received = 0
        self._in_hand = 0  # a message taken from the queue and not yet acked
        self.connected = asyncio.Event()
        self.internal_errors = 0
        self.name = name
        self.client: aiomqtt.Client | None = None  # while connected: commands go through it
        self._watchers: dict[str, list[asyncio.Queue[bytes]]] = {}

    @property
    def ready(self) -> asyncio.Event:
        return self.connected

    def health(self) -> LinkHealth:
        up = self.connected.is_set()
        state = "connected" if up else "disconnected"
        return LinkHealth((self.name,), state, up, f"{self.name} broker disconnected", self.name)

    def summary(self) -> str:
        return f"{self.name} messages received {self.received}, left unhandled {self.waiting}"

    @contextlib.contextmanager
    def watch(self, topic: str) -> Iterator[asyncio.Queue[bytes]]:
        """While open, a copy of every message on ``topic`` (a device's state)."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(100)
        self._watchers.setdefault(topic, []).append(queue)
        try:
            yield queue
        finally:
            watchers = self._watchers[topic]
            watchers.remove(queue)
            if not watchers:
                del self._watchers[topic]

    def _observed(self, topic: str, payload: bytes) -> None:
        for queue in self._watchers.get(topic, ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(payload)

    def _intake(self, maxsize: int = 0) -> IntakeQueue:
        del maxsize  # aiomqtt's own bound would drop without regard to QoS
        if self._queue is not None:
            self._received += self._queue.received
        self._queue = IntakeQueue(
            self.settings.max_queued, lambda message: self._on_dropped(message.topic.value)
        )
        return self._queue

    @staticmethod
    def _note_redeliveries(client: aiomqtt.Client) -> set[int]:
        """The ids of messages the broker sent again (MQTT's DUP flag), which aiomqtt's
        messages do not carry: noted from paho's callback before aiomqtt queues them."""
        resent: set[int] = set()
        paho_client = client._client
        deliver = paho_client.on_message
        assert deliver is not None

        def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
            if message.dup and message.qos > 0:
                resent.add(message.mid)
            deliver(c, userdata, message)

        paho_client.on_message = on_message
        return resent

    @property
    def received(self) -> int:
        """Messages the broker delivered, over every connection."""
        return self._received + (self._queue.received if self._queue else 0)

    @property
    def waiting(self) -> int:
        """Messages received and not yet handled (on a stop, QoS 1 ones come again)."""
        return (self._queue.qsize() if self._queue else 0) + self._in_hand

    async def run(self) -> None:
        """Consume forever; a lost broker is retried with backoff, never fatal."""
        backoff = Backoff()
        s = self.settings
        store_failing = False
        while True:
            try:
                client = aiomqtt.Client(
                    **broker_options(s),
                    identifier=self.client_id,
                    clean_session=False,  # the broker keeps QoS 1 messages while we are away
                    # aiomqtt builds its queue from a class; a factory does the same job.
                    queue_type=cast("type[asyncio.Queue[aiomqtt.Message]]", self._intake),
                )
                client._client.manual_ack_set(True)
                resent = self._note_redeliveries(client)
                async with client:
                    no_delay(client)
                    await client.subscribe(self.topic, qos=1)
                    self.client = client
                    self.connected.set()
                    if not store_failing:
                        backoff.reset()
                        log.info("subscribed to %s on %s:%d", self.topic, s.host, s.port)
                    async for message in client.messages:
                        payload = message.payload
                        if not isinstance(payload, bytes | bytearray):
                            payload = str(payload).encode() if payload is not None else b""
                        self._in_hand = 1
                        self._observed(message.topic.value, bytes(payload))
                        again = message.mid in resent
                        resent.discard(message.mid)
                        try:
                            await self._handler(message.topic.value, bytes(payload), again)
                        except StoreError:
                            raise
                        except Exception:
                            # A bug on one message must not block every message behind it.
                            self.internal_errors += 1
                            log.exception("failed to handle a message on %s", message.topic.value)
                        client._client.ack(message.mid, message.qos)
                        self._in_hand = 0
                        if store_failing:
                            store_failing = False
                            backoff.reset()
                            log.warning("input is stored again; back to normal")
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self.client = None
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # The disconnect of a cancelled client may fail too: still a stop.
                    raise asyncio.CancelledError from exc
                delay = backoff.next_delay()
                log.warning(
                    "%s broker %s:%d: %s; retrying in %.1f s", self.name, s.host, s.port, exc, delay
                )
                await asyncio.sleep(delay)
            except StoreError as exc:
                # Not acknowledged: the broker sends it again after we reconnect.
                self.connected.clear()
                self.client = None
                if not store_failing:
                    log.error("could not store input (%s); not acked, taking it again", exc)
                store_failing = True
                await asyncio.sleep(backoff.next_delay(urgent=True))


class Zigbee2MqttInput:
    """One Zigbee2MQTT message: which device it is about, decoded, to the pipeline."""

    def __init__(
        self,
        intake: Intake,
        base_topic: str = "zigbee2mqtt",
        max_payload_bytes: int = 16 * 1024,
    ) -> None:
        self.intake = intake
        self.base_topic = base_topic.rstrip("/")
        self.max_payload_bytes = max_payload_bytes
        # What the bridge's device list says of each device (its model and exposes): how
        # its messages are read. Until the bridge has sent it, by the property's name.
        self.described: dict[str, BridgeDevice] = {}

    async def handle(self, topic: str, payload: bytes, resent: bool = False) -> None:
        """One message; ``resent`` when the broker flagged it as a redelivery."""
        with self.intake.sender_resends():
            try:
                await self._handle(topic, payload, resent)
            except StoreError:
                raise  # not kept: the transport does not ack it, and the broker sends it again
            except Exception as exc:
                # A bug of ours on one message: counted, and its traceback logged once per
                # topic rather than once per message (a repeating device would fill the disk).
                source = f"mqtt:{topic[:200]}"
                self.intake.counters.drop(DropReason.INTERNAL_ERROR, source, repr(exc), exc)

    async def _handle(self, topic: str, payload: bytes, resent: bool) -> None:
        counters = self.intake.counters
        source = f"mqtt:{topic[:200]}"
        prefix = self.base_topic + "/"
        if topic == prefix + "bridge/devices":  # the one large message: the whole network
            self._bridge_devices(payload)
            return
        if len(payload) > self.max_payload_bytes:
            counters.drop(DropReason.OVERSIZED, source, f"{len(payload)} bytes")
            return
        if not topic.startswith(prefix) or topic == prefix:
            counters.drop(DropReason.UNKNOWN_TOPIC, source)
            return
        rest = topic[len(prefix) :]
        if rest == "bridge" or rest.startswith("bridge/"):
            return  # the bridge's own state and logs: not device input
        device, sub = self._resolve(rest)
        if device is None:
            await self.intake.discovered(TRANSPORT, rest, source, _fields(payload))
            return
        try:
            if sub == "availability":
                await self._availability(device, decode_availability(payload))
                return
            if sub in ("set", "get"):
                return
            if sub == "action":
                decoded = decode_action(device.config.type, payload)
            else:
                said = self.described.get(device.config.address or "")
                exposes, model = (said.exposes, said.model) if said else (None, None)
                decoded = decode_state(device.config.type, payload, exposes, model)
        except UnexpectedValue as exc:
            counters.drop(DropReason.UNEXPECTED_VALUE, source, str(exc))
            return
        except CodecError as exc:
            counters.drop(DropReason.MALFORMED, source, str(exc))
            return
        digest = hashlib.blake2b(payload, digest_size=16).digest()
        await self.intake.accept(device, decoded, digest=digest, source=source, resent=resent)

    async def _availability(self, device: RegisteredDevice, online: bool) -> None:
        device.status.online = online
        device.status.radio_lost = not online
        self.intake.counters.accept("availability")
        # The bridge lost the device's radio: a technical event, and one on return.
        detail: dict[str, object] = {"source": "zigbee2mqtt availability"}
        await self.intake.raise_signal(device, Signal.RADIO_LOST, not online, detail)

    def _bridge_devices(self, payload: bytes) -> None:
        """The bridge's device list: each device's firmware build, model and exposes."""
        try:
            listing = decode_bridge_listing(payload)
        except CodecError as exc:
            self.intake.counters.drop(DropReason.MALFORMED, "mqtt:bridge/devices", str(exc))
            return
        self.described = listing
        self.intake.counters.accept("bridge devices")
        for name, said in listing.items():
            suggested = said.suggested_type
            self.intake.describe(TRANSPORT, name, said.model, suggested and suggested.value)
            device = self.intake.device(TRANSPORT, name)
            if device is not None and said.build:
                self.intake.firmware(device, said.build)

    def _resolve(self, rest: str) -> tuple[RegisteredDevice | None, str | None]:
        device = self.intake.device(TRANSPORT, rest)
        if device is not None:
            return device, None
        name, _, sub = rest.rpartition("/")
        if sub in _SUBTOPICS:
            return self.intake.device(TRANSPORT, name), sub
        return None, None


def _broker(config: GatewayConfig, intake: Intake) -> Sequence[Zigbee2MqttTransport]:
    section = config.zigbee2mqtt
    messages = Zigbee2MqttInput(intake, section.base_topic, section.max_payload_bytes)

    def dropped(topic: str) -> None:
        reason = "QoS 0 message dropped: overload"
        intake.counters.drop(DropReason.QUEUE_FULL, f"mqtt:{topic[:200]}", reason)

    return [Zigbee2MqttTransport(section, config.gateway.id, messages.handle, dropped)]


class Zigbee2MqttActor:
    """Locks through Zigbee2MQTT: ``<base>/<friendly_name>/set`` ``{"state": "UNLOCK"}``,
    then the lock's own state message says whether it did (``lock_state``)."""

    def __init__(self, transport: Zigbee2MqttTransport) -> None:
        self.transport = transport

    async def act(
        self, device: RegisteredDevice, command: Command, answer_within_s: float
    ) -> ActResult:
        transport = self.transport
        deadline = asyncio.get_running_loop().time() + answer_within_s
        try:  # a broker being connected again has the answer window to come back
            async with asyncio.timeout_at(deadline):
                await transport.connected.wait()
        except TimeoutError:
            return ActResult("failed", "unreachable", "the Zigbee2MQTT broker is not connected")
        client = transport.client
        if client is None:
            return ActResult("failed", "unreachable", "the Zigbee2MQTT broker is not connected")
        if device.status.online is False:
            return ActResult("failed", "unreachable", "Zigbee2MQTT reports the lock offline")
        topic = f"{transport.settings.base_topic.rstrip('/')}/{device.config.address}"
        wanted = wanted_state(command.action)
        with transport.watch(topic) as states:
            try:
                body = json.dumps({"state": command.action.upper()})
                await client.publish(f"{topic}/set", body, qos=1)
            except aiomqtt.MqttError as exc:
                return ActResult("failed", "unreachable", f"could not publish: {exc}")
            try:
                async with asyncio.timeout_at(deadline):
                    while True:
                        state = _lock_state(await states.get())
                        if state == wanted:
                            return ActResult("done", None, f"the lock reports {state}")
                        if state == "not_fully_locked":
                            return ActResult(
                                "failed", "jammed", "the lock reports not_fully_locked"
                            )
            except TimeoutError:
                return ActResult(
                    "failed",
                    "no_answer",
                    f"the lock did not report {wanted} in {answer_within_s} s",
                )


def _lock_state(payload: bytes) -> str | None:
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    state = body.get("lock_state") if isinstance(body, dict) else None
    return state if isinstance(state, str) else None


# Zigbee devices through the home's Zigbee2MQTT bridge: one broker link for all of them;
# its locks take commands through it.
PLUGINS = {
    TRANSPORT: TransportPlugin(
        TRANSPORT,
        links=_broker,
        actor=lambda link: Zigbee2MqttActor(cast("Zigbee2MqttTransport", link)),
    )
}


def _fields(payload: bytes) -> str:
    """What a stranger's Zigbee2MQTT message held: its fields' names, never their values."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return "not JSON"
    if not isinstance(body, dict):
        return type(body).__name__
    names = sorted(str(k)[:40] for k in body)
    return ", ".join(names)[:200]
