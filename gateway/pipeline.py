"""From decoded input to a durable event: dedupe, detect changes, apply the home rules,
prioritise, and commit to the outbox before anything else happens to it.

Transports decode their own wire formats and hand the result here through the
``Intake`` interface (gateway/transports/plugin.py); the pipeline knows no transport."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from itertools import count

from devices import Event, EventKind, GatewayId, Priority, Signal, stable_event_id, utc_now
from devices.codecs import Decoded, SignalState
from devices.codecs.native import accuracy_of
from devices.wire import POSITION_METRICS, Command

from .actions import test_kind
from .backoff import Backoff
from .counters import DropReason, InputCounters
from .readings import ReadingsBuffer
from .registry import RegisteredDevice, Registry
from .rules import ACTIVITY, PRE_ALARM, HomeRules, RuleEvent
from .store import RecentInput, Store, StoreError

log = logging.getLogger("trygg.gateway.pipeline")

# An identical message from the same device within this window is a duplicate. A message
# the broker marks as resent (MQTT's DUP flag: it hands over again what the gateway had
# not acked, e.g. across a restart, however long that took) is one if it was seen at all.
DUPLICATE_WINDOW_S = 10.0
MAX_RECENT_INPUTS = 50_000
# The store's meta key for the home-rule alarms raised now (gateway/rules.py raised()).
RULES_RAISED_KEY = "rules.raised"
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
        readings: ReadingsBuffer | None = None,
        on_event: Callable[[Event], None] = lambda _event: None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rules: HomeRules | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        # Always there: the geofence needs no [[homes]] section, only a device's safe zone.
        self.rules = rules if rules is not None else HomeRules([])
        self.registry = registry
        self.store = store
        self.counters = counters
        self._on_event = on_event
        self._readings = readings
        self._clock = clock
        self._mono = monotonic
        self._discovered_at: dict[tuple[str, str], tuple[float, int]] = {}
        self.descriptions: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        # Ids must never repeat across restarts: a boot id plus a counter.
        self._boot = uuid.uuid4().hex
        self._seq = count()
        # Oldest first, so expiry takes from the front: amortised O(1) per message.
        self._recent: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self._raised_kept: list[tuple[str, str]] = []
        self._signal_state: dict[tuple[str, Signal], bool] = {}
        # Each device's last good fix: (latitude, longitude, accuracy in m, when by the
        # monotonic clock), sent with its next alarm that carries no position of its own.
        self._fixes: dict[str, tuple[float, float, float | None, float]] = {}
        self.store_retries = 0  # writes of held input tried again after a store failure
        # Sets off (True) or stops (False) a home's pre-alarm signal (gateway/service.py);
        # best effort: the pre-alarm and its alarm go on whether it sounded or not.
        self.signal_pre_alarm: Callable[[str, bool], Awaitable[None]] | None = None

    async def load(self) -> None:
        """Pick up what the previous run saw last, before the first message arrives."""
        recent = await self.store.recent_inputs(MAX_RECENT_INPUTS)
        self._recent = OrderedDict(sorted(recent.items(), key=lambda item: item[1]))
        kept = await self.store.meta(RULES_RAISED_KEY)
        if kept:
            try:
                pairs = [(str(d), str(k)) for d, k in json.loads(kept)]
            except (ValueError, TypeError):
                log.warning("the kept home-rule alarms are not readable; starting without them")
                pairs = []
            self.rules.restore(pairs, self.registry.get)
            self._raised_kept = self.rules.raised()

    async def _emit_rules(self, ruled: list[RuleEvent]) -> None:
        """The home rules' events, each kept like any event; then which are raised now."""
        for rule in ruled:
            await self._emit(rule.device, rule.kind, rule.active, rule.detail, self._next_id())
            if rule.kind is PRE_ALARM and self.signal_pre_alarm is not None:
                try:
                    await self.signal_pre_alarm(rule.device.config.home, rule.active)
                except Exception:  # a siren out of reach must not hold up the alarm
                    log.exception("the pre-alarm signal of %s failed", rule.device.config.home)
        raised = self.rules.raised()
        if ruled and raised != self._raised_kept:
            try:
                await self.store.set_meta(RULES_RAISED_KEY, json.dumps(raised))
                self._raised_kept = raised
            except StoreError as exc:  # the events are kept; only a restart would repeat one
                log.warning("could not keep the raised home-rule alarms: %s", exc)

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

    # -- the Intake interface, for every transport --------------------------------------
    def device(self, transport: str, address: str) -> RegisteredDevice | None:
        return self.registry.by_address(transport, address)

    def devices(self, transport: str) -> Iterator[RegisteredDevice]:
        return (d for d in self.registry if d.config.transport == transport)

    @contextlib.contextmanager
    def sender_resends(self) -> Iterator[None]:
        """Input whose sender keeps it until acked: a store failure is raised, not held."""
        token = _SENDER_RESENDS.set(True)
        try:
            yield
        finally:
            _SENDER_RESENDS.reset(token)

    async def discovered(self, transport: str, address: str, source: str, said: str = "") -> None:
        """A device that is not in the registry: shown to technicians, not ingested.
        ``said``: what its message held, as fields without their values (no reading of an
        unpaired device, whoever's it is, is kept)."""
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
        await self.store.note_discovered(transport, address, messages=pending + 1, said=said)

    def describe(
        self, transport: str, address: str, model: str | None, suggested_type: str | None
    ) -> None:
        """What a transport says a device is (Zigbee2MQTT's bridge/devices): shown with it
        while it is heard but not paired."""
        if len(self.descriptions) > 10_000:
            self.descriptions.clear()
        self.descriptions[(transport, address)] = (model, suggested_type)

    def described(self, transport: str, address: str) -> tuple[str | None, str | None]:
        return self.descriptions.get((transport, address), (None, None))

    def seen(self, device: RegisteredDevice, *, rssi: float | None = None) -> None:
        """The device spoke (even if only to repeat itself): it is alive."""
        device.status.last_seen = utc_now()
        device.status.last_seen_mono = self._mono()
        if rssi is not None:
            device.status.rssi_dbm = rssi

    def firmware(self, device: RegisteredDevice, build: str) -> None:
        self.registry.note_firmware(device, build)

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
            self.registry.note_firmware(device, decoded.firmware)
        for metric, value in decoded.readings:
            if metric == "battery_pct":
                status.battery_pct = value
            elif metric == "linkquality":
                status.linkquality = value
            elif metric == "rssi_dbm":
                status.rssi_dbm = value
        ruled: list[RuleEvent] = []
        self.rules.known(device)
        for state in decoded.signals:
            if state.signal is Signal.BUTTON_PRESS and self.rules.away_button(device):
                # The home's away button (by the door, never a pendant): away mode, no alarm.
                ruled += self.rules.toggle_away(device)
                continue
            if state.signal is Signal.DOOR_OPEN:
                status.contact = "open" if state.active else "closed"
            key = (device.config.id, state.signal)
            previous = self._signal_state.get(key)
            if state.signal in ACTIVITY:
                # Someone active: a press, movement, a door or the bed changing; never a
                # state said again (a bed still occupied, a door still open).
                moving = state.signal is Signal.MOTION and state.active
                if state.momentary or moving or (previous is not None and previous != state.active):
                    ruled += self.rules.activity(device, state.signal, state.active)
            said_again = previous == state.active or (previous is None and not state.active)
            if not state.momentary and said_again:
                self._signal_state[key] = state.active
                continue
            kind = device.spec.event_kind(state.signal)
            if kind is not None:
                await self._emit_signal(device, decoded, state, kind, source)
            if not state.momentary:
                # Only once it is kept: a change that could not be stored is still one
                # when the broker hands the message back.
                self._signal_state[key] = state.active
                if kind is not None and kind.priority is Priority.NORMAL and state.active:
                    status.faults.add(kind.name)
                elif kind is not None:
                    status.faults.discard(kind.name)
                ruled += self.rules.observe(device, state.signal, state.active)
        if decoded.readings:
            self._note_fix(device, decoded.readings)
            ruled += self.rules.observe_readings(device, decoded.readings)
        await self._emit_rules(ruled)
        # Readings last: a message whose alarm could not be kept comes again, and its
        # readings with it, so they are buffered once.
        if self._readings is not None and decoded.readings:
            # A position is kept only where the resident consented to being tracked;
            # otherwise it serves the safe zones and goes with an alarm, and is gone.
            tracked = getattr(device.config, "tracking", True)
            for metric, value in decoded.readings:
                if tracked or metric not in POSITION_METRICS:
                    self._readings.add((device.config.id, metric, value, at_ms))
            if source is not None:
                self._readings.came_from(source)
        self.counters.accept("message")
        if decoded.readings:
            self.counters.accept("reading")

    def _note_fix(self, device: RegisteredDevice, readings: tuple[tuple[str, float], ...]) -> None:
        """A position in these readings (only a good fix has one) is the device's last."""
        found = dict(readings)
        lat, lon = found.get("latitude"), found.get("longitude")
        if lat is None or lon is None:
            return
        accuracy = found.get("accuracy_m")
        if accuracy is None and "hdop" in found:
            accuracy = accuracy_of(found["hdop"])
        self._fixes[device.config.id] = (lat, lon, accuracy, self._mono())

    def _with_fix(self, device_id: str, detail: Mapping[str, object]) -> Mapping[str, object]:
        """An alarm's detail with its device's last fix (where, how well, how old), where
        the device has had one and the alarm carries none of its own."""
        fix = self._fixes.get(device_id)
        if fix is None or "latitude" in detail:
            return detail
        lat, lon, accuracy, at = fix
        age = round(max(0.0, self._mono() - at), 1)
        added: dict[str, object] = {"latitude": lat, "longitude": lon, "fix_age_s": age}
        if accuracy is not None:
            added["accuracy_m"] = accuracy
        return {**detail, **added}

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

    async def raise_test(self, device: RegisteredDevice, command: Command) -> None:
        """A signed test command's alarm: the device's own kind, marked as a test, kept
        in the outbox like any event (so its whole way to the dispatch service is tried)."""
        kind = test_kind(device.config.type)
        if kind is None:
            raise ValueError(f"a {device.config.type.value} raises no alarm to test")
        detail = {"test": True, "command": command.id, "requested_by": command.issued_by}
        event_id = stable_event_id(self.gateway_id, device.config.id, "test", command.id)
        await self._emit(device, kind, True, detail, event_id)

    async def tick_rules(self) -> None:
        """Raise the home-rule alarms whose time has come (bed exit with no return)."""
        await self._emit_rules(self.rules.tick())

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
        if active and kind.priority in (Priority.CRITICAL, Priority.HIGH):
            detail = self._with_fix(device.config.id, detail)
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
