"""The home's own MQTT broker (the one Zigbee2MQTT and the gateway share): its ACL.

Only two identities connect to it, Zigbee2MQTT and the gateway, and only the gateway
may publish a device's ``/set`` (for a lock, that opens the door). Zigbee2MQTT must
still read ``/set``, and mosquitto's ``deny`` refuses reading too, so the ACL cannot
grant Zigbee2MQTT ``<base>/#`` and take ``/set`` away. Instead it grants Zigbee2MQTT
writes on exactly the topics it publishes: the bridge's, every single-level friendly
name (``<base>/+``, which never matches ``<base>/<name>/set``) with its availability,
and, for friendly names with a ``/`` in them, each configured device's own topics. A
device with such a name paired later is heard once the ACL is written again
(``trygg gateway broker-acl``) and the broker reloaded (SIGHUP).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import ValidationError

from .config import DeviceConfig, GatewayConfig, NativeDevice, Zigbee2MqttDevice
from .registry import DEVICE_CONFIG

ZIGBEE2MQTT_USER = "zigbee2mqtt"
NATIVE_ROOT = "trygg/v1/dev"  # gateway/transports/native.py TOPIC_ROOT
_WILDCARDS = frozenset("+#\n\r\x00")


class HomeBrokerError(Exception):
    """The home broker's ACL cannot be written for this configuration."""


def home_broker_acl(
    config: GatewayConfig,
    devices: Iterable[DeviceConfig] = (),
    *,
    zigbee2mqtt_user: str = ZIGBEE2MQTT_USER,
    source: str = "",
) -> str:
    """The ACL file for the home broker of the gateway ``config`` (and its paired ``devices``)."""
    z2m = config.zigbee2mqtt
    if not z2m.username:
        raise HomeBrokerError(
            "[zigbee2mqtt] username is not set: the home broker needs the gateway's own identity"
        )
    if z2m.username == zigbee2mqtt_user:
        raise HomeBrokerError(
            f"[zigbee2mqtt] username must not be {zigbee2mqtt_user!r}, Zigbee2MQTT's own"
        )
    base = z2m.base_topic.rstrip("/")
    names = sorted({d.address for d in [*config.devices, *devices] if _is_z2m(d)})
    for name in names:
        if _WILDCARDS & set(name) or name.endswith("/set") or name.startswith("/"):
            raise HomeBrokerError(f"Zigbee2MQTT friendly name {name!r} cannot be given an ACL")
    deep = [n for n in names if "/" in n]
    natives = sorted({d.id for d in [*config.devices, *devices] if isinstance(d, NativeDevice)})
    for device_id in natives:
        if device_id in (zigbee2mqtt_user, z2m.username):
            raise HomeBrokerError(
                f"native device {device_id!r} has the name of a broker identity; rename it"
            )
    lines = [
        f"# The home broker's ACL{' for ' + source if source else ''}, written by",
        "# `trygg gateway broker-acl`. Anonymous clients are refused by the broker's",
        "# configuration (allow_anonymous false); these are the only two identities.",
        "",
        f"user {zigbee2mqtt_user}",
        f"topic read {base}/#",
        f"topic write {base}/bridge/#",
        f"topic write {base}/+",
        f"topic write {base}/+/availability",
        *(f"topic write {base}/{n}" for n in deep),
        *(f"topic write {base}/{n}/availability" for n in deep),
        "",
        f"user {z2m.username}",
        f"topic read {base}/#",
        f"topic write {base}/bridge/request/#",
        *(f"topic write {base}/{n}/set" for n in names),
        *(f"topic write {base}/{n}/get" for n in names),
        *([f"topic read {NATIVE_ROOT}/+/+"] if natives else []),
        "",
    ]
    # Each native device logs in as itself and may publish only under its own id: the
    # topic it arrives on names it truly (docs/native-api.md).
    for device_id in natives:
        lines += [f"user {device_id}", f"topic write {NATIVE_ROOT}/{device_id}/+", ""]
    return "\n".join(lines)


def _is_z2m(device: DeviceConfig) -> bool:
    return isinstance(device, Zigbee2MqttDevice)


def paired_devices(store: Path) -> Sequence[DeviceConfig]:
    """Devices paired through the gateway's local API, read from its store without
    writing to it (the gateway may be running)."""
    if not store.exists():
        return []
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT id, body FROM paired_device ORDER BY paired_at").fetchall()
    except sqlite3.Error as exc:
        raise HomeBrokerError(f"{store}: cannot read the paired devices: {exc}") from None
    devices: list[DeviceConfig] = []
    for device_id, body in rows:
        try:
            devices.append(DEVICE_CONFIG.validate_json(body))
        except ValidationError:
            raise HomeBrokerError(f"{store}: paired device {device_id!r} is unreadable") from None
    return devices
