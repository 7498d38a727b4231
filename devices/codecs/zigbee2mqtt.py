"""Zigbee2MQTT device messages (``zigbee2mqtt/<friendly_name>``) to observations.

Zigbee2MQTT publishes the device's whole state as one JSON object each time any of it
changes, so a state signal (``smoke: true``) repeats in every message until it clears;
the gateway's pipeline turns state changes into events. ``action`` is the exception: it
is an occurrence, and Zigbee2MQTT resets it to ``""`` right after.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..catalog import DeviceType, Signal
from ..errors import CodecError, MalformedPayload, UnexpectedValue
from .common import Decoded, SignalState, check_value, parse_json, total

# Numeric properties kept as readings, under the metric name on the right.
NUMERIC: dict[str, str] = {
    "battery": "battery_pct",
    "voltage": "voltage_mv",
    "temperature": "temperature_c",
    "device_temperature": "device_temperature_c",
    "humidity": "humidity_pct",
    "pressure": "pressure_hpa",
    "illuminance": "illuminance",
    "illuminance_lux": "illuminance_lux",
    "linkquality": "linkquality",
    "strength": "vibration_strength",
    "co2": "co2_ppm",
}

# Binary properties that are signals: property -> (signal, value that means "active").
BINARY: dict[str, tuple[Signal, bool]] = {
    "contact": (Signal.DOOR_OPEN, False),  # contact true = closed
    "water_leak": (Signal.WATER_LEAK, True),
    "smoke": (Signal.SMOKE, True),
    "carbon_monoxide": (Signal.CO, True),
    "tamper": (Signal.TAMPER, True),
    "battery_low": (Signal.BATTERY_LOW, True),
    "fall": (Signal.FALL, True),
}

_PRESS_TYPES = {DeviceType.ALARM_BUTTON, DeviceType.FALL_DETECTOR, DeviceType.GPS_PENDANT}
# Actions that are not a press: the release after a hold, and the reset to "".
_NOT_A_PRESS = {"", "release"}
LOCK_JAMMED_STATES = {"not_fully_locked"}
LOCK_STATES = {"locked", "unlocked", "not_fully_locked"}


def _action_signal(
    device_type: DeviceType, action: str, state: Mapping[str, Any]
) -> SignalState | None:
    if device_type in _PRESS_TYPES and action not in _NOT_A_PRESS:
        return SignalState(Signal.BUTTON_PRESS, True, momentary=True, detail={"action": action})
    if device_type is DeviceType.DIGITAL_LOCK and "unlock" in action and "failure" not in action:
        detail: dict[str, Any] = {"action": action}
        for key in ("action_source_name", "action_user"):
            value = state.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                detail[key] = value
        return SignalState(Signal.LOCK_OPENED, True, momentary=True, detail=detail)
    return None


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnexpectedValue(f"{key!r} must be a number, got {type(value).__name__}")
    return float(value)  # parse_json let only finite numbers of at most 40 digits through


def _decode_object(device_type: DeviceType, state: Mapping[str, Any]) -> Decoded:
    readings: list[tuple[str, float]] = []
    signals: list[SignalState] = []
    for key, value in state.items():
        if value is None:  # seen from real devices (battery: null); nothing to say
            continue
        if key in NUMERIC:
            readings.append((NUMERIC[key], _number(key, value)))
        elif key in BINARY:
            if not isinstance(value, bool):
                raise UnexpectedValue(f"{key!r} must be true or false, got {value!r:.40}")
            signal, active_when = BINARY[key]
            signals.append(SignalState(signal, value is active_when))
        elif key == "occupancy":
            if not isinstance(value, bool):
                raise UnexpectedValue(f"'occupancy' must be true or false, got {value!r:.40}")
            signal = Signal.BED_OCCUPIED if device_type is DeviceType.BED_SENSOR else Signal.MOTION
            signals.append(SignalState(signal, value))
        elif key == "action":
            if not isinstance(value, str):
                raise UnexpectedValue(f"'action' must be a string, got {type(value).__name__}")
            occurrence = _action_signal(device_type, value, state)
            if occurrence is not None:
                signals.append(occurrence)
        elif key == "lock_state":
            if not isinstance(value, str) or value not in LOCK_STATES:
                raise UnexpectedValue(f"'lock_state' must be one of {sorted(LOCK_STATES)}")
            signals.append(SignalState(Signal.LOCK_JAMMED, value in LOCK_JAMMED_STATES))
        # Anything else (last_seen, sensitivity, firmware-specific keys) is not ours to judge.
    if state.get("test") is True:
        # The detector's own test button (Zigbee2MQTT's "test" while it is held): what it
        # raises is a test, recorded as one and sounded nowhere (cloud/alarms.py).
        signals = [_as_test(s) if s.signal in _TESTABLE else s for s in signals]
    return Decoded(tuple(readings), tuple(signals))


_TESTABLE = {Signal.SMOKE, Signal.CO}


def _as_test(state: SignalState) -> SignalState:
    return SignalState(state.signal, state.active, state.momentary, {**state.detail, "test": True})


@total("Zigbee2MQTT state")
def decode_state(device_type: DeviceType, payload: bytes) -> Decoded:
    """Decode the JSON object published on ``zigbee2mqtt/<friendly_name>``."""
    state = parse_json(payload)
    if not isinstance(state, dict):
        raise MalformedPayload(f"expected a JSON object, got {type(state).__name__}")
    return _decode_object(device_type, state)


@total("Zigbee2MQTT action")
def decode_action(device_type: DeviceType, payload: bytes) -> Decoded:
    """Decode the plain-text payload of the ``zigbee2mqtt/<friendly_name>/action`` topic."""
    try:
        action = payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise MalformedPayload("action payload is not UTF-8") from exc
    if len(action) > 64:
        raise UnexpectedValue("action payload longer than 64 characters")
    occurrence = _action_signal(device_type, action, {})
    return Decoded(signals=(occurrence,) if occurrence else ())


@total("Zigbee2MQTT availability")
def decode_availability(payload: bytes) -> bool:
    """``{"state":"online"}`` (Zigbee2MQTT 2.x) or plain ``online`` (legacy) -> True."""
    text = payload.strip()
    if text in (b"online", b"offline"):
        return text == b"online"
    try:
        value = parse_json(text, max_bytes=1024)
    except MalformedPayload as exc:
        raise MalformedPayload(f"availability is neither JSON nor online/offline: {exc}") from exc
    if isinstance(value, dict) and value.get("state") in ("online", "offline"):
        return bool(value["state"] == "online")
    raise UnexpectedValue("availability state must be 'online' or 'offline'")


@total("Zigbee2MQTT bridge/devices")
def decode_bridge_devices(payload: bytes) -> dict[str, str]:
    """The bridge's retained device list (``bridge/devices``): friendly name -> firmware
    build, for the devices that name one. An entry whose strings are not clean text is
    left out; it names no firmware we could show."""
    listing = parse_json(payload)
    if not isinstance(listing, list):
        raise MalformedPayload(f"expected a JSON array, got {type(listing).__name__}")
    builds: dict[str, str] = {}
    for entry in listing:
        if not isinstance(entry, dict):
            continue
        name, build = entry.get("friendly_name"), entry.get("software_build_id")
        if isinstance(name, str) and isinstance(build, str) and build:
            try:
                check_value("bridge device", [name, build])
            except CodecError:
                continue
            builds[name] = build[:64]
    return builds


def encode_state(state: Mapping[str, Any]) -> bytes:
    """Encode a device state the way Zigbee2MQTT publishes it (used by the simulator)."""
    return json.dumps(dict(state), separators=(",", ":"), sort_keys=True).encode()
