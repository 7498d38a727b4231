"""From a raw message to a durable event: validate, decode, dedupe, detect changes,
prioritise, and commit to the outbox before anything else happens to it."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from itertools import count

from devices import CodecError, Event, GatewayId, Signal, UnexpectedValue, stable_event_id, utc_now
from devices.codecs import Decoded, decode_action, decode_availability, decode_state

from .counters import DropReason, InputCounters
from .readings import ReadingsBuffer
from .registry import RegisteredDevice, Registry
from .store import RecentInput, Store

log = logging.getLogger("trygg.gateway.pipeline")

# Zigbee2MQTT publishes these below a device's topic; "set"/"get" are commands to it.
_SUBTOPICS = ("availability", "action", "set", "get")
# An identical message from the same device within this window is a redelivery (the
# broker resends what the gateway had not acknowledged, e.g. across a restart).
DUPLICATE_WINDOW_S = 10.0


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
    ) -> None:
        self.gateway_id = gateway_id
        self.registry = registry
        self.store = store
        self.counters = counters
        self.base_topic = base_topic.rstrip("/")
        self.max_payload_bytes = max_payload_bytes
        self._on_event = on_event
        self._readings = readings
        self._clock = clock
        # Ids must never repeat across restarts: a boot id plus a counter.
        self._boot = uuid.uuid4().hex
        self._seq = count()
        self._recent: dict[tuple[str, bytes], float] = {}
        self._signal_state: dict[tuple[str, Signal], bool] = {}

    async def load(self) -> None:
        """Pick up what the previous run saw last, before the first message arrives."""
        self._recent = await self.store.recent_inputs(self._clock() - DUPLICATE_WINDOW_S)

    # -- Zigbee2MQTT --------------------------------------------------------------------
    async def handle_zigbee2mqtt(self, topic: str, payload: bytes) -> None:
        source = f"mqtt:{topic[:200]}"
        if len(payload) > self.max_payload_bytes:
            self.counters.drop(DropReason.OVERSIZED, source, f"{len(payload)} bytes")
            return
        prefix = self.base_topic + "/"
        if not topic.startswith(prefix) or topic == prefix:
            self.counters.drop(DropReason.UNKNOWN_TOPIC, source)
            return
        rest = topic[len(prefix) :]
        if rest == "bridge" or rest.startswith("bridge/"):
            return  # the bridge's own state and logs: not device input
        device, sub = self._resolve(rest)
        if device is None:
            self.counters.drop(DropReason.UNKNOWN_DEVICE, source, "not in the device registry")
            await self.store.note_discovered("zigbee2mqtt", rest)
            return
        try:
            if sub == "availability":
                device.status.online = decode_availability(payload)
                self.counters.accept("availability")
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
        if self._is_duplicate(device.config.id, digest):
            self.counters.drop(DropReason.DUPLICATE, source, "the same message again")
            return
        await self._accept(device, decoded, (device.config.id, digest, self._clock()))

    def _resolve(self, rest: str) -> tuple[RegisteredDevice | None, str | None]:
        device = self.registry.by_address(rest)
        if device is not None:
            return device, None
        name, _, sub = rest.rpartition("/")
        if sub in _SUBTOPICS:
            return self.registry.by_address(name), sub
        return None, None

    def _is_duplicate(self, device_id: str, digest: bytes) -> bool:
        now = self._clock()
        if len(self._recent) > 50_000:  # keep memory bounded under a flood
            self._recent = {k: t for k, t in self._recent.items() if now - t < DUPLICATE_WINDOW_S}
        seen = self._recent.get((device_id, digest))
        self._recent[(device_id, digest)] = now
        return seen is not None and 0 <= now - seen < DUPLICATE_WINDOW_S

    # -- shared by every transport -----------------------------------------------------
    async def _accept(
        self, device: RegisteredDevice, decoded: Decoded, source: RecentInput
    ) -> None:
        status = device.status
        now = utc_now()
        status.last_seen = now
        at_ms = int(now.timestamp() * 1000)
        for metric, value in decoded.readings:
            if metric == "battery_pct":
                status.battery_pct = value
            elif metric == "linkquality":
                status.linkquality = value
            if self._readings is not None:
                self._readings.add((device.config.id, metric, value, at_ms))
        self.counters.accept("message")
        if decoded.readings:
            self.counters.accept("reading")
        for state in decoded.signals:
            key = (device.config.id, state.signal)
            if not state.momentary:
                previous = self._signal_state.get(key)
                self._signal_state[key] = state.active
                if previous == state.active or (previous is None and not state.active):
                    continue
            kind = device.spec.event_kind(state.signal)
            if kind is None:
                continue  # a signal for home rules, not an alarm by itself
            event = Event(
                id=stable_event_id(self.gateway_id, self._boot, str(next(self._seq))),
                kind=kind.name,
                priority=kind.priority,
                device_id=device.config.id,
                device_type=device.config.type.value,
                home_id=device.config.home,
                resident_id=device.config.resident,
                occurred_at=utc_now(),
                restore=not state.active,
                detail=state.detail,
            )
            await self.store.put(event, source, forget_before=source[2] - DUPLICATE_WINDOW_S)
            self.counters.accept("event")
            log.info(
                "accepted %s%s from %s (%s)",
                event.kind,
                " restore" if event.restore else "",
                event.device_id,
                event.priority,
            )
            self._on_event(event)
