"""Codecs: bytes or JSON from a device into `Decoded` observations, and back.

Zigbee2MQTT is exported here. ``devices.codecs.nmea`` (GPS) and ``devices.codecs.bthome``
(BLE, which loads the Bluetooth libraries) are imported by name where they are used.
"""

from .common import Decoded, SignalState, check_value, parse_json, total
from .zigbee2mqtt import (
    BridgeDevice,
    decode_action,
    decode_availability,
    decode_bridge_devices,
    decode_bridge_listing,
    decode_state,
    encode_state,
)

__all__ = [
    "BridgeDevice",
    "Decoded",
    "SignalState",
    "check_value",
    "decode_action",
    "decode_availability",
    "decode_bridge_devices",
    "decode_bridge_listing",
    "decode_state",
    "encode_state",
    "parse_json",
    "total",
]
