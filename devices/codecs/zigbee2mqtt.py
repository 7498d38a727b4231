"""Zigbee2MQTT device messages (``zigbee2mqtt/<friendly_name>``) to observations.

Zigbee2MQTT publishes the device's whole state as one JSON object each time any of it
changes, so a state signal (``smoke: true``) repeats in every message until it clears;
the gateway's pipeline turns state changes into events. ``action`` is the exception: it
is an occurrence, and Zigbee2MQTT resets it to ``""`` right after.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..catalog import DeviceType, Signal
from ..errors import CodecError, MalformedPayload, UnexpectedValue
from .common import Decoded, SignalState, check_value, parse_json, total
from .exposes import RULES, Expose, Rule, flatten, rule_for, suggest_type

# What each property means is one table (devices/codecs/exposes.py), read with the
# device's own exposes from bridge/devices where the bridge has sent them.
NUMERIC: dict[str, str] = {k: r.metric for k, r in RULES.items() if r.metric is not None}

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


# A property as Zigbee2MQTT describes it when the bridge has not (yet) said: a binary
# is true/false with true on, but a contact's "on" (open) is false.
_ASSUMED: dict[str, Expose] = {
    "contact": Expose("contact", "binary", value_on=False, value_off=True),
}

_BINARY = Expose("", "binary")  # any other: true/false, true on

# The alarm an IAS zone's generic "alarm" flag is, by what the device is.
PRIMARY_SIGNAL: dict[DeviceType, Signal] = {
    DeviceType.ALARM_BUTTON: Signal.BUTTON_PRESS,
    DeviceType.GPS_PENDANT: Signal.BUTTON_PRESS,
    DeviceType.FALL_DETECTOR: Signal.FALL,
    DeviceType.SMOKE: Signal.SMOKE,
    DeviceType.CO: Signal.CO,
    DeviceType.GAS: Signal.GAS,
    DeviceType.HEAT: Signal.HEAT,
    DeviceType.WATER_LEAK: Signal.WATER_LEAK,
    DeviceType.DOOR_CONTACT: Signal.DOOR_OPEN,
    DeviceType.MOTION: Signal.MOTION,
    DeviceType.PRESENCE: Signal.PRESENCE,
    DeviceType.BED_SENSOR: Signal.BED_OCCUPIED,
}


def _active(key: str, value: object, rule: Rule, expose: Expose, described: bool) -> bool:
    """Whether a signal's value says it is on: the expose's value_on, or for an enum one
    of the rule's active values (another value of the enum is off, never an error)."""
    if expose.type == "enum" or (rule.active and isinstance(value, str) and not described):
        if not isinstance(value, str):
            raise UnexpectedValue(f"{key!r} must be a string, got {type(value).__name__}")
        return value.lower() in rule.active
    if value == expose.value_on and type(value) is type(expose.value_on):
        return True
    if value == expose.value_off and type(value) is type(expose.value_off):
        return False
    raise UnexpectedValue(
        f"{key!r} must be {expose.value_on!r} or {expose.value_off!r}, got {value!r:.40}"
    )


def _decode_object(
    device_type: DeviceType,
    state: Mapping[str, Any],
    exposes: Mapping[str, Expose] | None = None,
    model: str | None = None,
) -> Decoded:
    readings: list[tuple[str, float]] = []
    signals: list[SignalState] = []
    test = False
    for key, value in state.items():
        if value is None:  # seen from real devices (battery: null); nothing to say
            continue
        metric = NUMERIC.get(key)  # the common case first: a reading, as its name says
        if metric is not None and (exposes is None or key not in exposes) and model is None:
            readings.append((metric, _number(key, value)))
            continue
        rule = rule_for(key, model)
        if rule is None or rule.kind == "ignore":
            continue  # last_seen, sensitivity, firmware-specific keys: not ours to judge
        described = exposes.get(key) if exposes else None
        if described is None and value.__class__ is bool and rule.plain_binary:
            # The common signal: true/false as its name says (a contact's "on" is false).
            assumed = _ASSUMED.get(key)
            on = True if assumed is None else assumed.value_on
            signals.append(SignalState(rule.signal, value is on))  # type: ignore[arg-type]
            continue
        if described is not None and not rule.maps(described):
            continue  # the same name, another meaning here (a numeric "vibration")
        expose = described or _ASSUMED.get(key) or _BINARY
        if rule.kind == "reading":
            readings.append((rule.metric or key, _number(key, value)))
        elif rule.kind in ("signal", "primary"):
            if described is not None and not described.state:
                continue  # a setting (a siren's "alarm"), not what the home says
            sig = rule.signal if rule.kind == "signal" else PRIMARY_SIGNAL.get(device_type)
            active = _active(key, value, rule, expose, described is not None)
            if sig is None:
                continue
            if sig is Signal.BUTTON_PRESS and device_type not in _PRESS_TYPES:
                continue
            if rule.momentary or sig is Signal.BUTTON_PRESS:
                if active:
                    signals.append(SignalState(sig, True, momentary=True, detail={key: value}))
            else:
                signals.append(SignalState(sig, active))
        elif rule.kind == "states":
            if not isinstance(value, str):
                raise UnexpectedValue(f"{key!r} must be a string, got {type(value).__name__}")
            signals.extend(SignalState(sig, value.lower() == v) for v, sig in rule.states)
        elif rule.kind == "occupancy":
            if not isinstance(value, bool):
                raise UnexpectedValue(f"{key!r} must be true or false, got {value!r:.40}")
            signal = Signal.BED_OCCUPIED if device_type is DeviceType.BED_SENSOR else Signal.MOTION
            signals.append(SignalState(signal, value))
        elif rule.kind == "action":
            if not isinstance(value, str):
                raise UnexpectedValue(f"{key!r} must be a string, got {type(value).__name__}")
            occurrence = _action_signal(device_type, value, state)
            if occurrence is not None:
                signals.append(occurrence)
        elif rule.kind == "lock":
            if not isinstance(value, str) or value not in LOCK_STATES:
                raise UnexpectedValue(f"'lock_state' must be one of {sorted(LOCK_STATES)}")
            signals.append(SignalState(Signal.LOCK_JAMMED, value in LOCK_JAMMED_STATES))
        elif rule.kind == "test":
            test = test or value is True or (described is not None and value == expose.value_on)
    if test:
        # The detector's own test button (Zigbee2MQTT's "test" while it is held): what it
        # raises is a test, recorded as one and sounded nowhere (cloud/alarms.py).
        signals = [_as_test(s) if s.signal in _TESTABLE else s for s in signals]
    return Decoded(tuple(readings), tuple(signals))


_TESTABLE = {Signal.SMOKE, Signal.CO, Signal.GAS, Signal.HEAT}


def _as_test(state: SignalState) -> SignalState:
    return SignalState(state.signal, state.active, state.momentary, {**state.detail, "test": True})


@total("Zigbee2MQTT state")
def decode_state(
    device_type: DeviceType,
    payload: bytes,
    exposes: Mapping[str, Expose] | None = None,
    model: str | None = None,
) -> Decoded:
    """Decode the JSON object published on ``zigbee2mqtt/<friendly_name>``, by the
    device's own exposes (``bridge/devices``) where known."""
    state = parse_json(payload)
    if not isinstance(state, dict):
        raise MalformedPayload(f"expected a JSON object, got {type(state).__name__}")
    return _decode_object(device_type, state, exposes, model)


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


# The bridge's device list: some 5-20 KiB per device with its exposes.
BRIDGE_MAX_BYTES = 4 * 1024 * 1024
BRIDGE_MAX_DEVICES = 1000


@dataclass(frozen=True, slots=True)
class BridgeDevice:
    """One device of the bridge's list, as far as Trygg reads it."""

    friendly_name: str
    build: str | None
    model: str | None
    exposes: Mapping[str, Expose]

    @property
    def suggested_type(self) -> DeviceType | None:
        return suggest_type(self.exposes, self.model)


def _clean(label: str, value: object, limit: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        check_value(label, value)
    except CodecError:
        return None
    return value[:limit]


@total("Zigbee2MQTT bridge/devices")
def decode_bridge_listing(payload: bytes) -> dict[str, BridgeDevice]:
    """The bridge's retained device list (``bridge/devices``): friendly name -> what it
    says of the device (firmware build, model, exposes). An entry whose name is not
    clean text is left out; a device is known by its name."""
    listing = parse_json(payload, max_bytes=BRIDGE_MAX_BYTES)
    if not isinstance(listing, list):
        raise MalformedPayload(f"expected a JSON array, got {type(listing).__name__}")
    found: dict[str, BridgeDevice] = {}
    for entry in listing[:BRIDGE_MAX_DEVICES]:
        if not isinstance(entry, dict):
            continue
        name = _clean("bridge device", entry.get("friendly_name"), 256)
        if name is None:
            continue
        definition = entry.get("definition")
        definition = definition if isinstance(definition, dict) else {}
        found[name] = BridgeDevice(
            friendly_name=name,
            build=_clean("bridge device", entry.get("software_build_id"), 64),
            model=_clean("bridge device", definition.get("model"), 64),
            exposes=flatten(definition.get("exposes")),
        )
    return found


def decode_bridge_devices(payload: bytes) -> dict[str, str]:
    """Friendly name -> firmware build, for the devices of the bridge's list that name one."""
    return {n: d.build for n, d in decode_bridge_listing(payload).items() if d.build}


def encode_state(state: Mapping[str, Any]) -> bytes:
    """Encode a device state the way Zigbee2MQTT publishes it (used by the simulator)."""
    return json.dumps(dict(state), separators=(",", ":"), sort_keys=True).encode()
