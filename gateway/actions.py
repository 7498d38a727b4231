"""What the gateway can make a device do on a signed command, by transport and type.

One table: the command handler checks a command's action against it, and the device
inventory reports it to the dispatch service.
"""

from __future__ import annotations

from devices import DeviceType
from devices.wire import CommandAction

from .config import DeviceConfig

_LOCK: tuple[CommandAction, ...] = ("unlock", "lock")

# (transport, device type) -> the actions the gateway can carry out through that transport.
ACTIONS: dict[tuple[str, DeviceType], tuple[CommandAction, ...]] = {
    ("zigbee2mqtt", DeviceType.DIGITAL_LOCK): _LOCK,
    ("ble_lock", DeviceType.DIGITAL_LOCK): _LOCK,
}


def supported_actions(device: DeviceConfig) -> tuple[CommandAction, ...]:
    return ACTIONS.get((device.transport, device.type), ())
