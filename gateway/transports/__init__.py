"""Transports: they decode what devices send, hand it to the pipeline, reconnect by
themselves, and (some) act on devices. One registry of them, by device transport.

A transport's module is imported only when the gateway has a use for it (a device of
it, or its configuration section), so bleak and OpenCV load only for gateways with
such devices.
"""

from __future__ import annotations

import importlib

from ..config import TRANSPORTS, GatewayConfig
from .mqtt import Zigbee2MqttInput, Zigbee2MqttTransport
from .plugin import DeviceLink, Intake, Link, LinkHealth, TransportPlugin

# device transport -> (the module that declares it, the [section] of the gateway's
# configuration that starts it without any device of it configured, if any)
MODULES: dict[str, tuple[str, str | None]] = {
    "zigbee2mqtt": ("mqtt", "zigbee2mqtt"),
    "radio": ("serial", "serial"),
    "nmea": ("serial", "serial"),
    "ble": ("ble", "ble"),
    "ble_lock": ("ble_lock", None),
    "camera": ("camera", None),
    "native": ("native", "native"),
}
assert set(MODULES) == set(TRANSPORTS), "every transport of the config union has a module"


def plugin(transport: str) -> TransportPlugin:
    """The registry entry of a device transport (imports its module on first use)."""
    module, _ = MODULES[transport]
    plugins: dict[str, TransportPlugin] = importlib.import_module(f"{__name__}.{module}").PLUGINS
    return plugins[transport]


def in_use(config: GatewayConfig) -> list[TransportPlugin]:
    """The transports this configuration uses, in the registry's order."""
    configured = {device.transport for device in config.devices}
    return [
        plugin(name)
        for name, (_, section) in MODULES.items()
        if name in configured or (section is not None and getattr(config, section))
    ]


__all__ = [
    "MODULES",
    "DeviceLink",
    "Intake",
    "Link",
    "LinkHealth",
    "TransportPlugin",
    "Zigbee2MqttInput",
    "Zigbee2MqttTransport",
    "in_use",
    "plugin",
]
