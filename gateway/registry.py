"""Which device is which: the configured devices, looked up by transport address."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from devices import CATALOG, DeviceSpec

from .config import Zigbee2MqttDevice


@dataclass(slots=True)
class DeviceStatus:
    last_seen: datetime | None = None
    online: bool | None = None
    battery_pct: float | None = None
    linkquality: float | None = None


@dataclass(slots=True)
class RegisteredDevice:
    config: Zigbee2MqttDevice
    status: DeviceStatus = field(default_factory=DeviceStatus)

    @property
    def spec(self) -> DeviceSpec:
        return CATALOG[self.config.type]


class Registry:
    def __init__(self, devices: list[Zigbee2MqttDevice]) -> None:
        self._by_address = {d.address: RegisteredDevice(d) for d in devices}

    def by_address(self, address: str) -> RegisteredDevice | None:
        return self._by_address.get(address)
