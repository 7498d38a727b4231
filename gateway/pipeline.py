"""From a raw message to a durable event: validate, decode, dedupe, detect changes,
prioritise, and commit to the outbox before anything else happens to it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from itertools import count

from devices import (
    CodecError,
    Event,
    EventKind,
    GatewayId,
    Signal,
    UnexpectedValue,
    stable_event_id,
    utc_now,
)
from devices.codecs import (
    Decoded,
    SignalState,
    decode_action,
    decode_availability,
    decode_bridge_devices,
    decode_state,
)

from .backoff import Backoff
from .counters import DropReason, InputCounters
from .readings import ReadingsBuffer
from .registry import RegisteredDevice, Registry
from .rules import HomeRules, RuleEvent
from .store import RecentInput, Store, StoreError

log = logging.getLogger("trygg.gateway.pipeline")

# Zigbee2MQTT publishes these below a device's topic; "set"/"get" are commands to it.
_SUBTOPICS = ("availability", "action", "set", "get")
# An identical message from the same device within this window is a duplicate. A message
# the broker marks as resent (MQTT's DUP flag: it hands over again what the gateway had
# not acked, e.g. across a restart, however long that took) is one if it was seen at all.
DUPLICATE_WINDOW_S = 10.0
MAX_RECENT_INPUTS = 50_000
# An unknown device is written to the discovered list at most this often.
DISCOVERED_NOTE_S = 60.0
# Set while handling input that its sender keeps until it is acked (a broker's QoS 1
# message): a store failure is then raised, so it is not acked and comes again. Input
# nobody would send again (a serial frame, an advertisement, the gateway's own signals)
# is held instead, and its store write retried until it is kept.
_SENDER_RESENDS: ContextVar[bool] = ContextVar("sender_resends", default=False)


class Pipeline:
    def __init__(
        self,
        gateway_id: GatewayId,
        registry: Registry,
        store: Store,
        counters: InputCounters,
        *,
        base_topic: str = "zigbee2mqtt",
        max_payload_bytes: int = 16 * 1024,
        readings: ReadingsBuffer | None = None,
        on_event: Callable[[Event], None] = lambda _event: None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rules: HomeRules | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.rules = rules
        self.registry = registry
        self.store = store
        self.counters = counters
        self.base_topic = base_topic.rstrip("/")
        self.max_payload_bytes = max_payload_bytes
        self._on_event = on_event
        self._readings = readings
        self._clock = clock
        self._mono = monotonic
        self._discovered_at: dict[tuple[str, str], tuple[float, int]] = {}
        # Ids must never repeat across restarts: a boot id plus a counter.
        self._boot = uuid.uuid4().hex
        self._seq = count()
        # Oldest first, so expiry takes from the front: amortised O(1) per message.
        self._recent: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self._signal_state: dict[tuple[str, Signal], bool] = {}
        self.store_retries = 0  # writes of held input tried again after a store failure

    async def load(self) -> None:
        """Pick up what the previous run saw last, before the first message arrives."""
        recent = await self.store.recent_inputs(MAX_RECENT_INPUTS)
        self._recent = OrderedDict(sorted(recent.items(), key=lambda item: item[1]))

    # -- Zigbee2MQTT --------------------------------------------------------------------
    async def handle_zigbee2mqtt(self, topic: str, payload: bytes, resent: bool = False) -> None:
        """One message; ``resent`` when the broker flagged it as a redelivery."""
        token = _SENDER_RESENDS.set(True)
        try:
            await self._zigbee2mqtt(topic, payload, resent)
        except StoreError:
            raise  # not kept: the transport does not ack it, and the broker sends it again
        except Exception as exc:
            # A bug of ours on one message: counted, and its traceback logged once per
            # topic rather than once per message (a repeating device would fill the disk).
            self.counters.drop(DropReason.INTERNAL_ERROR, f"mqtt:{topic[:200]}", repr(exc), exc)
        finally:
            _SENDER_RESENDS.reset(token)

    async def _zigbee2mqtt(self, topic: str, payload: bytes, resent: bool) -> None:
        source = f"mqtt:{topic[:200]}"
        if len(payload) > self.max_payload_bytes:
            self.counters.drop(DropReason.OVERSIZED, source, f"{len(payload)} bytes")
            return
        prefix = self.base_topic + "/"
        if not topic.startswith(prefix) or topic == prefix:
            self.counters.drop(DropReason.UNKNOWN_TOPIC, source)
            return
        rest = topic[len(prefix) :]
        if rest == "bridge/devices":
            self._bridge_devices(payload)
            return
        if rest == "bridge" or rest.startswith("bridge/"):
            return  # the bridge's own state and logs: not device input
        device, sub = self._resolve(rest)
        if device is None:
            await self.discovered("zigbee2mqtt", rest, source)
            return
        try:
            if sub == "availability":
                online = decode_availability(payload)
                device.status.online = online
                device.status.radio_lost = not online
                self.counters.accept("availability")
                # The bridge lost the device's radio: a technical event, and one on return.
                detail: dict[str, object] = {"source": "zigbee2mqtt availability"}
                await self.raise_signal(device, Signal.RADIO_LOST, not online, detail)
                return
            if sub in ("set", "get"):
                return
            decode = decode_action if sub == "action" else decode_state
            decoded = decode(device.config.type, payload)
        except UnexpectedValue as exc:
            self.counters.drop(DropReason.UNEXPECTED_VALUE, source, str(exc))
            return
        except CodecError as exc:
            self.counters.drop(DropReason.MALFORMED, source, str(exc))
            return
        digest = hashlib.blake2b(payload, digest_size=16).digest()
        await self.accept(device, decoded, digest=digest, source=source, resent=resent)

    def _bridge_devices(self, payload: bytes) -> None:
        """The bridge's device list names each device's firmware build."""
        try:
            builds = decode_bridge_devices(payload)
        except CodecError as exc:
            self.counters.drop(DropReason.MALFORMED, "mqtt:bridge/devices", str(exc))
            return
        for name, build in builds.items():
            device = self.registry.by_address("zigbee2mqtt", name)
            if device is not None:
                device.status.firmware = build

    def _resolve(self, rest: str) -> tuple[RegisteredDevice | None, str | None]:
        device = self.registry.by_address("zigbee2mqtt", rest)
        if device is not None:
            return device, None
        name, _, sub = rest.rpartition("/")
        if sub in _SUBTOPICS:
            return self.registry.by_address("zigbee2mqtt", name), sub
        return None, None

    def _is_duplicate(self, device_id: str, digest: bytes, resent: bool = False) -> bool:
        now = self._clock()
        key = (device_id, digest)
        seen = self._recent.pop(key, None)
        self._recent[key] = now
        # Memory stays bounded under a flood: past the cap, the oldest are forgotten.
        while len(self._recent) > MAX_RECENT_INPUTS:
            self._recent.popitem(last=False)
        if seen is None:
            return False
        return resent or 0 <= now - seen < DUPLICATE_WINDOW_S

    # -- shared by every transport -----------------------------------------------------
    async def discovered(self, transport: str, address: str, source: str) -> None:
        """A device that is not in the registry: shown to technicians, not ingested."""
        self.counters.drop(DropReason.UNKNOWN_DEVICE, source, "not in the device registry")
        now = self._mono()
        key = (transport, address)
        last, pending = self._discovered_at.get(key, (None, 0))
        if last is not None and now - last < DISCOVERED_NOTE_S:
            # A chatty stranger costs no disk write per message; its count is kept here.
            self._discovered_at[key] = (last, pending + 1)
            return
        if len(self._discovered_at) > 10_000:
            self._discovered_at.clear()
        self._discovered_at[key] = (now, 0)
        await self.store.note_discovered(transport, address, messages=pending + 1)

    def seen(self, device: RegisteredDevice, *, rssi: float | None = None) -> None:
        """The device spoke (even if only to repeat itself): it is alive."""
        device.status.last_seen = utc_now()
        device.status.last_seen_mono = self._mono()
        if rssi is not None:
            device.status.rssi_dbm = rssi

    async def accept(
        self,
        device: RegisteredDevice,
        decoded: Decoded,
        *,
        digest: bytes | None = None,
        rssi: float | None = None,
        source: str = "",
        resent: bool = False,
    ) -> None:
        """Decoded input from a known device. ``digest`` identifies the message for the
        duplicate check; a device's own sequence number, where it has one, is used instead."""
        self.seen(device, rssi=rssi)
        if decoded.sequence is not None:
            digest = b"seq:%d" % decoded.sequence
        recent: RecentInput | None = None
        if digest is not None:
            if self._is_duplicate(device.config.id, digest, resent):
                self.counters.drop(
                    DropReason.DUPLICATE, source or device.id, "the same message again"
                )
                return
            recent = (device.config.id, digest, self._clock())
        try:
            await self._accept(device, decoded, recent)
        except BaseException:
            # Not kept: the same message again (the broker's redelivery) is no duplicate.
            if recent is not None:
                self._recent.pop((recent[0], recent[1]), None)
            raise

    async def raise_signal(
        self, device: RegisteredDevice, signal: Signal, active: bool, detail: Mapping[str, object]
    ) -> None:
        """A condition the gateway itself detected (a silent device, a lost radio link)."""
        state = SignalState(signal, active, detail=dict(detail))
        await self._accept(device, Decoded(signals=(state,)))

    async def _accept(
        self, device: RegisteredDevice, decoded: Decoded, source: RecentInput | None = None
    ) -> None:
        status = device.status
        now = utc_now()
        at_ms = int(now.timestamp() * 1000)
        if decoded.firmware:
            status.firmware = decoded.firmware
        for metric, value in decoded.readings:
            if metric == "battery_pct":
                status.battery_pct = value
            elif metric == "linkquality":
                status.linkquality = value
            elif metric == "rssi_dbm":
                status.rssi_dbm = value
        ruled: list[RuleEvent] = []
        for state in decoded.signals:
            key = (device.config.id, state.signal)
            if not state.momentary:
                previous = self._signal_state.get(key)
                if previous == state.active or (previous is None and not state.active):
                    self._signal_state[key] = state.active
                    continue
            kind = device.spec.event_kind(state.signal)
            if kind is not None:
                await self._emit_signal(device, decoded, state, kind, source)
            if not state.momentary:
                # Only once it is kept: a change that could not be stored is still one
                # when the broker hands the message back.
                self._signal_state[key] = state.active
                if self.rules is not None:
                    ruled += self.rules.observe(device, state.signal, state.active)
        for rule in ruled:
            await self._emit(rule.device, rule.kind, rule.active, rule.detail, self._next_id())
        # Readings last: a message whose alarm could not be kept comes again, and its
        # readings with it, so they are buffered once.
        if self._readings is not None and decoded.readings:
            for metric, value in decoded.readings:
                self._readings.add((device.config.id, metric, value, at_ms))
            if source is not None:
                self._readings.came_from(source)
        self.counters.accept("message")
        if decoded.readings:
            self.counters.accept("reading")

    async def _emit_signal(
        self,
        device: RegisteredDevice,
        decoded: Decoded,
        state: SignalState,
        kind: EventKind,
        source: RecentInput | None,
    ) -> None:
        if decoded.sequence is not None:
            # The device's own counter, so the same frame is the same event anywhere.
            first_sight = str(int(source[2] * 1000)) if source else ""
            parts = ("seq", str(decoded.sequence), first_sight, state.signal.value)
            event_id = stable_event_id(self.gateway_id, device.config.id, *parts)
        else:
            event_id = self._next_id()
        await self._emit(device, kind, state.active, state.detail, event_id, source)

    async def _keep(self, event: Event, source: RecentInput | None) -> None:
        backoff = Backoff(first_s=0.1)
        while True:
            try:
                await self.store.put(event, source)
                return
            except StoreError:
                if _SENDER_RESENDS.get():
                    raise
                self.store_retries += 1
                await asyncio.sleep(backoff.next_delay(urgent=True))

    async def tick_rules(self) -> None:
        """Raise the home-rule alarms whose time has come (bed exit with no return)."""
        if self.rules is not None:
            for rule in self.rules.tick():
                await self._emit(rule.device, rule.kind, rule.active, rule.detail, self._next_id())

    async def raise_gateway_event(self, kind: EventKind, detail: Mapping[str, object]) -> None:
        """A fault of the gateway itself (its store), as a technical event of its own."""
        event = Event(
            id=self._next_id(),
            kind=kind.name,
            priority=kind.priority,
            device_id=self.gateway_id,
            device_type="gateway",
            home_id=self.gateway_id,
            occurred_at=utc_now(),
            detail=dict(detail),
        )
        await self._keep(event, None)
        log.warning("reported %s to the dispatch service: %s", kind.name, dict(detail))
        self._on_event(event)

    def _next_id(self) -> str:
        return stable_event_id(self.gateway_id, self._boot, str(next(self._seq)))

    async def _emit(
        self,
        device: RegisteredDevice,
        kind: EventKind,
        active: bool,
        detail: Mapping[str, object],
        event_id: str,
        source: RecentInput | None = None,
    ) -> None:
        event = Event(
            id=event_id,
            kind=kind.name,
            priority=kind.priority,
            device_id=device.config.id,
            device_type=device.config.type.value,
            home_id=device.config.home,
            resident_id=device.config.resident,
            occurred_at=utc_now(),
            restore=not active,
            detail=dict(detail),
        )
        await self._keep(event, source)
        self.counters.accept("event")
        log.info(
            "accepted %s%s from %s (%s)",
            event.kind,
            " restore" if event.restore else "",
            event.device_id,
            event.priority,
        )
        self._on_event(event)
