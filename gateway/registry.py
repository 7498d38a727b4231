"""Which device is which: devices declared in config or paired by a technician, looked
up by transport and address, with what the gateway last heard from each."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import TypeAdapter

from devices import CATALOG, DeviceSpec

from .config import DeviceConfig

DEVICE_CONFIG: TypeAdapter[DeviceConfig] = TypeAdapter(DeviceConfig)

# Where a device comes from: the gateway's file, a pairing on the gateway (its local API),
# or the dispatch service's configuration (gateway/remoteconfig.py).
Origin = Literal["config", "paired", "remote"]


class RegistryError(Exception):
    """A pairing the registry cannot take (an id or address already in use, ...)."""


@dataclass(slots=True)
class DeviceStatus:
    last_seen: datetime | None = None
    # Monotonic seconds of the last message; supervision runs on this, not on wall time.
    last_seen_mono: float | None = None
    online: bool | None = None  # Zigbee2MQTT availability, where the bridge reports it
    battery_pct: float | None = None
    rssi_dbm: float | None = None
    linkquality: float | None = None
    firmware: str | None = None
    silent: bool = False  # supervision has reported it silent, and it has not returned
    radio_lost: bool = False
    # Its open technical conditions by event kind (battery_low, tamper, lock_jammed), and
    # a door contact's last word: what the dispatch service is told (gateway/devicestate.py).
    faults: set[str] = field(default_factory=set)
    contact: Literal["open", "closed"] | None = None

    def public(self) -> dict[str, Any]:
        return {
            "last_seen": None if self.last_seen is None else self.last_seen.isoformat(),
            "online": self.online,
            "battery_pct": self.battery_pct,
            "rssi_dbm": self.rssi_dbm,
            "linkquality": self.linkquality,
            "firmware": self.firmware,
            "silent": self.silent,
            "radio_lost": self.radio_lost,
        }


@dataclass(slots=True)
class RegisteredDevice:
    config: DeviceConfig
    origin: Origin = "config"
    status: DeviceStatus = field(default_factory=DeviceStatus)
    # Per-device codec state a transport keeps here (a BTHome decoder remembers packet ids).
    codec: Any = None

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def spec(self) -> DeviceSpec:
        return CATALOG[self.config.type]

    @property
    def checkin(self) -> timedelta:
        if self.config.checkin_s is not None:
            return timedelta(seconds=self.config.checkin_s)
        return self.spec.checkin

    def public(self) -> dict[str, Any]:
        return {
            **self.config.model_dump(mode="json", exclude={"bindkey"}),
            "address": self.config.address,
            "origin": self.origin,
            "encrypted": getattr(self.config, "bindkey", None) is not None,
            **self.status.public(),
        }


Listener = Callable[[RegisteredDevice, bool], None]  # (device, added)
Watcher = Callable[[RegisteredDevice], None]  # a device's firmware changed


class Registry:
    def __init__(
        self, devices: Iterable[DeviceConfig], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._by_id: dict[str, RegisteredDevice] = {}
        self._by_address: dict[tuple[str, str], RegisteredDevice] = {}
        self._listeners: list[Listener] = []
        self._watchers: list[Watcher] = []
        self._clock = clock
        for config in devices:
            self._insert(RegisteredDevice(config))

    def _insert(self, device: RegisteredDevice) -> None:
        key = (device.config.transport, device.config.address)
        if device.id in self._by_id:
            raise RegistryError(f"a device with id {device.id!r} exists already")
        if key in self._by_address:
            other = self._by_address[key].id
            raise RegistryError(f"{key[0]} address {key[1]!r} belongs to {other!r} already")
        # Supervision counts from now: a device is not silent before it has had its chance.
        device.status.last_seen_mono = self._clock()
        self._by_id[device.id] = device
        self._by_address[key] = device

    def add(self, config: DeviceConfig, origin: Origin = "paired") -> RegisteredDevice:
        device = RegisteredDevice(config, origin)
        self._insert(device)
        for listener in self._listeners:
            listener(device, True)
        return device

    def remove(self, device_id: str) -> RegisteredDevice:
        device = self._by_id.get(device_id)
        if device is None:
            raise KeyError(device_id)
        if device.origin == "config":
            raise RegistryError(f"{device_id!r} is declared in the config file; remove it there")
        del self._by_id[device_id]
        del self._by_address[(device.config.transport, device.config.address)]
        for listener in self._listeners:
            listener(device, False)
        return device

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def watch_firmware(self, watcher: Watcher) -> None:
        self._watchers.append(watcher)

    def note_firmware(self, device: RegisteredDevice, build: str) -> None:
        """The firmware build a device (or its bridge) reports; watchers hear a change."""
        if device.status.firmware == build:
            return
        device.status.firmware = build
        for watcher in self._watchers:
            watcher(device)

    def by_address(self, transport: str, address: str) -> RegisteredDevice | None:
        return self._by_address.get((transport, address))

    def get(self, device_id: str) -> RegisteredDevice | None:
        return self._by_id.get(device_id)

    def __iter__(self) -> Iterator[RegisteredDevice]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)
