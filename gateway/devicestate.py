"""Each device's state, reported to the dispatch service (docs/wire-protocol.md).

The gateway knows what each device last said of itself (battery, signal, firmware, a
door contact open or closed), when it last spoke and must next, and which technical
conditions are open (silent, battery low, tampered with, lock jammed). The dispatch
service gets that on ``devices_topic(<id>)``:

- on every connect, and every ``summary_s`` (15 min), a **summary**: every device, in
  parts of at most ``MAX_DEVICE_STATES``;
- in between, every ``batch_s`` (5 s), the devices whose state **changed** since they
  were last sent, if any;
- with the summary, and whenever it changes, the list of devices heard but not paired
  (newest 100, with the fields their messages held), for the technicians to pair.

A change is what a technician would act on: a fault opened or cleared, the battery by a
whole percent, the signal by a step (linkquality by 25 of 255, RSSI by 10 dB), firmware,
availability, a contact opened or closed. A device speaking is not a change (its last
seen goes with the summary, and a silence is a fault): so a gateway of 20 quiet devices
sends one summary of about 4 KB every 15 minutes and a change now and then. For 10,000
such gateways that is 11 summaries a second (45 KB/s) plus their changes.

Nothing here is kept on disk: a restarted gateway sends its summary anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

import aiomqtt
from pydantic import ValidationError

from devices import utc_now
from devices.wire import (
    MAX_DEVICE_STATES,
    MAX_DISCOVERED,
    DeviceState,
    DeviceStates,
    DiscoveredDevice,
    devices_topic,
)

from .registry import RegisteredDevice, Registry
from .store import Discovered, StoreError

log = logging.getLogger("trygg.gateway.devicestate")

Publish = Callable[[str, str], Awaitable[None]]
# What makes a state worth sending again: everything but the times (though a check-in
# interval changed, by the centre's configuration, moves the check-in due: it is sent).
_Key = tuple[object, ...]


def _step(value: float | None, size: float) -> int | None:
    return None if value is None else int(value // size)


def significant(state: DeviceState) -> _Key:
    # Seen: due is last seen plus the interval; never seen: due from the gateway's start.
    due, seen = state.checkin_due, state.last_seen
    checkin = due - seen if due is not None and seen is not None else due
    return (
        checkin,
        _step(state.battery_pct, 1),
        _step(state.linkquality, 25),
        _step(state.rssi_dbm, 10),
        state.firmware,
        state.online,
        tuple(state.faults),
        state.contact,
    )


class DeviceStateReport:
    def __init__(
        self,
        gateway_id: str,
        registry: Registry,
        *,
        batch_s: float = 5.0,
        summary_s: float = 900.0,
        started: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        discovered: Callable[[], Awaitable[list[Discovered]]] | None = None,
        described: Callable[[str, str], tuple[str | None, str | None]] | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.registry = registry
        self.batch_s = batch_s
        self.summary_s = summary_s
        # Until a device first speaks, its first check-in is due from the gateway's start.
        self._started = started or utc_now()
        self._monotonic = monotonic
        self._sent: dict[str, _Key] = {}
        # The devices heard but not paired (gateway/store.py), sent whole when they change.
        self._discovered = discovered
        # (transport, address) -> (model, suggested type), as its transport describes it.
        self._described = described or (lambda _transport, _address: (None, None))
        self._discovered_sent: frozenset[tuple[str, str, str, str | None, str | None]] | None = None
        self.summaries = 0
        self.changes_sent = 0
        self.messages = 0

    def state(self, device: RegisteredDevice) -> DeviceState:
        status = device.status
        faults = set(status.faults)
        if status.silent:
            faults.add("device_silent")
        if status.radio_lost:
            faults.add("radio_lost")
        since = status.last_seen or self._started
        return DeviceState(
            id=device.id,
            last_seen=status.last_seen,
            battery_pct=_clamped(status.battery_pct, 0, 100),
            linkquality=_clamped(status.linkquality, 0, 255),
            rssi_dbm=_clamped(status.rssi_dbm, -150, 20),
            firmware=status.firmware[:64] if status.firmware else None,
            online=status.online,
            faults=sorted(faults)[:16],
            checkin_due=(since + device.checkin).astimezone(UTC),
            contact=status.contact,
        )

    def states(self) -> list[DeviceState]:
        """Every device's state; one the wire cannot carry is left out, and logged."""
        states: list[DeviceState] = []
        for device in self.registry:
            try:
                states.append(self.state(device))
            except ValidationError as exc:
                log.warning("the state of %s cannot be reported: %s", device.id, exc)
        return states

    def changed(self) -> list[DeviceState]:
        """The devices whose state differs from what was last sent of them."""
        return [s for s in self.states() if self._sent.get(s.id) != significant(s)]

    async def discovered(self) -> list[DiscoveredDevice] | None:
        """The devices heard but not paired, as the wire carries them (None: not kept)."""
        if self._discovered is None:
            return None
        try:
            rows = await self._discovered()
        except StoreError:  # a faulted store: the list goes when it can be read again
            return None
        found: list[DiscoveredDevice] = []
        for d in rows[:MAX_DISCOVERED]:
            model, suggested = self._described(d.transport, d.address)
            with contextlib.suppress(ValueError):  # a row the wire cannot carry is left out
                found.append(
                    DiscoveredDevice(
                        transport=d.transport[:32],
                        address=d.address[:256],
                        first_seen=datetime.fromisoformat(d.first_seen).astimezone(UTC),
                        last_seen=datetime.fromisoformat(d.last_seen).astimezone(UTC),
                        messages=max(0, d.messages),
                        said=d.said[:200],
                        model=model,
                        suggested_type=suggested,
                    )
                )
        return found

    async def send_summary(self, publish: Publish) -> None:
        states = self.states()
        discovered = await self.discovered()
        await self._send(publish, states, summary=True, discovered=discovered)
        self._sent = {s.id: significant(s) for s in states}
        self._discovered_sent = _discovered_key(discovered)
        self.summaries += 1

    async def send_changes(self, publish: Publish) -> int:
        """The changed devices, and the discovered list if it changed; how many devices."""
        changed = self.changed()
        discovered = await self.discovered()
        key = _discovered_key(discovered)
        news = discovered if key != self._discovered_sent else None
        if changed or news is not None:
            await self._send(publish, changed, summary=False, discovered=news)
            for state in changed:
                self._sent[state.id] = significant(state)
            self._discovered_sent = key
            self.changes_sent += len(changed)
        return len(changed)

    async def _send(
        self,
        publish: Publish,
        states: Sequence[DeviceState],
        summary: bool,
        discovered: list[DiscoveredDevice] | None,
    ) -> None:
        topic = devices_topic(self.gateway_id)
        parts = list(_chunks(states, MAX_DEVICE_STATES)) or [[]]
        now = utc_now()
        for n, part in enumerate(parts, start=1):
            message = DeviceStates(
                gateway_id=self.gateway_id,
                sent_at=now,
                summary=summary,
                part=n,
                parts=len(parts),
                devices=list(part),
                discovered=discovered if n == 1 else None,
            )
            await publish(topic, message.model_dump_json(exclude_none=True))
            self.messages += 1

    async def run(self, publish: Publish) -> None:
        """While connected: the summary at once, then changes and summaries on time."""
        next_summary = self._monotonic()
        while True:
            try:
                if self._monotonic() >= next_summary:
                    await self.send_summary(publish)
                    log.debug("reported the state of %d devices", len(self.registry))
                    next_summary = self._monotonic() + self.summary_s
                else:
                    await self.send_changes(publish)
            except aiomqtt.MqttError:
                raise  # the uplink reconnects, and the summary goes again
            except Exception:  # a report must never take the uplink down
                log.exception("could not report the devices' states; trying again")
            await asyncio.sleep(self.batch_s)


def _discovered_key(
    discovered: list[DiscoveredDevice] | None,
) -> frozenset[tuple[str, str, str, str | None, str | None]] | None:
    """What makes the discovered list worth sending again: who, what they said, and
    what their transport describes them as."""
    if discovered is None:
        return None
    return frozenset(
        (d.transport, d.address, d.said, d.model, d.suggested_type) for d in discovered
    )


def _clamped(value: float | None, low: float, high: float) -> float | None:
    """A reading as the wire takes it: a device saying 104 % is at 100 %."""
    if value is None or value != value:  # NaN
        return None
    return min(high, max(low, float(value)))


def _chunks(items: Sequence[DeviceState], size: int) -> Iterable[Sequence[DeviceState]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
