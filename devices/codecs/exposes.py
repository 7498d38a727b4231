"""Zigbee2MQTT devices by their own description: what each property a device exposes
means to Trygg, in one table.

Zigbee2MQTT publishes ``bridge/devices``: every device with its model and ``exposes``,
a tree of properties, each ``binary`` (with the values meaning on and off), ``enum`` (with
its values), ``numeric`` (with a unit), or a composite / specific (``lock``) whose
``features`` are more properties; ``access`` says whether a property is published (1),
settable (2) and readable on request (4). ``flatten`` turns that tree into the leaf
properties; ``RULES`` says what each means: a signal, a reading, an action, the lock's
state, a test flag, or nothing. A property is looked up by its name, then by its name
without a trailing channel number (``occupancy_2``), then as an IAS zone's alarm
(``water_leak_alarm_1``, ``alarm_1``); ``MODEL_RULES`` is for a model whose property
means something else than the same name does elsewhere.

Adding a property or a model is one row here (docs/devices.md).
"""

from __future__ import annotations

import builtins
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..catalog import DeviceType, Signal

# access flags (zigbee-herdsman-converters lib/exposes.ts)
PUBLISHED = 1
SETTABLE = 2

MAX_LEAVES = 256  # a device's exposes; more is not a device's
MAX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class Expose:
    """One leaf property as Zigbee2MQTT describes it."""

    property: str
    type: str  # binary, enum, numeric, text, list, …
    access: int = PUBLISHED
    value_on: object = True
    value_off: object = False
    values: tuple[str, ...] = ()
    unit: str | None = None

    @builtins.property  # the field above is Zigbee2MQTT's "property"
    def state(self) -> bool:
        """Published by the device, not a setting one makes (a siren's ``alarm``, a
        thermostat's ``child_lock`` are settings: they say nothing of the home)."""
        return bool(self.access & PUBLISHED) and not self.access & SETTABLE


def _leaf(raw: Mapping[str, Any]) -> Expose | None:
    prop = raw.get("property") or raw.get("name")
    kind = raw.get("type")
    if not isinstance(prop, str) or not isinstance(kind, str) or not prop or len(prop) > 64:
        return None
    access = raw.get("access", PUBLISHED)
    values = raw.get("values")
    unit = raw.get("unit")
    return Expose(
        property=prop,
        type=kind,
        access=access if isinstance(access, int) and not isinstance(access, bool) else 0,
        value_on=raw.get("value_on", True),
        value_off=raw.get("value_off", False),
        values=tuple(str(v)[:64] for v in values[:64]) if isinstance(values, list) else (),
        unit=unit[:16] if isinstance(unit, str) else None,
    )


def flatten(exposes: object) -> dict[str, Expose]:
    """The leaf properties of a device's ``exposes``, by property; a malformed entry is
    left out (a bridge of another version may describe more than this knows)."""
    found: dict[str, Expose] = {}

    def walk(items: object, depth: int) -> None:
        if not isinstance(items, list) or depth > MAX_DEPTH:
            return
        for raw in items:
            if len(found) >= MAX_LEAVES:
                return
            if not isinstance(raw, dict):
                continue
            features = raw.get("features")
            if isinstance(features, list) and features:
                walk(features, depth + 1)
                continue
            leaf = _leaf(raw)
            if leaf is not None:
                found.setdefault(leaf.property, leaf)

    walk(exposes, 0)
    return found


# -- what a property means ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """``kind``: signal (active on the expose's ``value_on``, or for an enum on one of
    ``active``), primary (the device type's own alarm: an IAS zone's ``alarm_1``),
    occupancy (a bed's occupancy or a room's motion), reading (``metric``), action, lock,
    test, or ignore (known, and not about the home)."""

    kind: str
    signal: Signal | None = None
    metric: str | None = None
    active: frozenset[str] = field(default_factory=frozenset)  # enum values, lowercase
    momentary: bool = False  # a press: no "restore" follows
    # kind "states": an enum whose values are several signals (value, lowercase -> signal)
    states: tuple[tuple[str, Signal], ...] = ()
    # A signal of its own read as true/false: the common case, decoded first.
    plain_binary: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        plain = (
            self.kind == "signal" and self.signal is not None and not self.active
            and not self.momentary and self.signal is not Signal.BUTTON_PRESS
        )  # fmt: skip
        object.__setattr__(self, "plain_binary", plain)

    def maps(self, expose: Expose) -> bool:
        """Whether this rule can read this expose (a binary rule an enum cannot)."""
        values = {v.lower() for v in expose.values}
        if self.kind == "ignore":
            return False
        if self.kind == "reading":
            return expose.type == "numeric"
        if self.kind in ("action", "lock"):
            return expose.type in ("enum", "text")
        if self.kind == "states":
            return expose.type == "enum" and bool(values & {v for v, _s in self.states})
        if expose.type == "enum":
            return bool(self.active & values)
        return expose.type == "binary"


def signal(sig: Signal, *active: str, momentary: bool = False) -> Rule:
    return Rule("signal", sig, active=frozenset(active), momentary=momentary)


def reading(metric: str) -> Rule:
    return Rule("reading", metric=metric)


PRIMARY = Rule("primary")
OCCUPANCY = Rule("occupancy")
IGNORE = Rule("ignore")

# Property -> rule. Binary signals are active on the expose's value_on (Zigbee2MQTT's
# "on" is the state a person would call active: contact's value_on is false, open).
RULES: dict[str, Rule] = {
    # alarms
    "smoke": signal(Signal.SMOKE),
    "smoke_state": signal(Signal.SMOKE, "alarm"),
    "gas": signal(Signal.GAS),
    "gas_sensor_state": signal(Signal.GAS, "alarm"),
    "carbon_monoxide": signal(Signal.CO),
    "co_state": signal(Signal.CO, "alarm"),
    "heat": signal(Signal.HEAT),
    "water_leak": signal(Signal.WATER_LEAK),
    "active_water_leak": signal(Signal.WATER_LEAK),
    "water_leakage_state": signal(Signal.WATER_LEAK, "water_leakage_yes"),
    "water_warning": signal(Signal.WATER_LEAK, "alarm"),
    "fall": signal(Signal.FALL),
    "fall_down_status": signal(Signal.FALL, "fall"),
    "fall_status": signal(Signal.FALL, "fall_alarm"),
    "sos": signal(Signal.BUTTON_PRESS, momentary=True),
    # an IAS zone's alarm, and a sensor's generic alarm state: the device type's own
    "alarm": Rule("primary", active=frozenset({"alarm"})),
    "alarm_status": Rule("primary", active=frozenset({"alarm"})),
    # what the home rules read
    "contact": signal(Signal.DOOR_OPEN),
    "door_state": signal(Signal.DOOR_OPEN, "open", "error_forced_open"),
    "garage_door_contact": signal(Signal.DOOR_OPEN),
    "occupancy": OCCUPANCY,
    # someone is there (a radar sees a person lying still too): not movement
    "presence": signal(Signal.PRESENCE),
    "presence_state": signal(Signal.PRESENCE, "presence", "motion", "stationary"),
    # movement: a still person ("static", "peaceful") is not
    "motion_state": signal(Signal.MOTION, "large", "small"),
    "human_motion_state": signal(Signal.MOTION, "large", "small", "motion", "active"),
    "vibration": signal(Signal.MOTION),
    # the device's own health
    "battery_low": signal(Signal.BATTERY_LOW),
    "tamper": signal(Signal.TAMPER),
    # a detector's own fault (not in SAFETY: a meter's or a breaker's faults share the name)
    "fault": signal(
        Signal.DEVICE_FAULT, "fault", "serious_fault", "sensor_fault", "probe_fault", "power_fault"
    ),
    "device_fault": signal(Signal.DEVICE_FAULT),
    # locks, buttons, tests
    "lock_state": Rule("lock"),
    "action": Rule("action"),
    "test": Rule("test"),
    # readings
    "battery": reading("battery_pct"),
    "voltage": reading("voltage_mv"),
    "temperature": reading("temperature_c"),
    "device_temperature": reading("device_temperature_c"),
    "humidity": reading("humidity_pct"),
    "pressure": reading("pressure_hpa"),
    "illuminance": reading("illuminance"),
    "illuminance_lux": reading("illuminance_lux"),
    "linkquality": reading("linkquality"),
    "strength": reading("vibration_strength"),
    "co2": reading("co2_ppm"),
    "smoke_density": reading("smoke_density"),
    "gas_value": reading("gas_value"),
}

# (model, property) -> rule, for a model whose property means what the name does not.
MODEL_RULES: dict[tuple[str, str], Rule] = {
    # A heating sensor's status: its tamper switch and its battery, in one enum.
    ("mKomfy_Sensor", "alarm_status"): Rule(
        "states", states=(("tamper", Signal.TAMPER), ("battery_alarm", Signal.BATTERY_LOW))
    ),
    # A thermo-hygrometer's thresholds and a valve's calibration: not an alarm of the
    # home (the readings are kept as readings).
    ("NAS-PD07", "alarm"): IGNORE,
    ("POK020", "alarm"): IGNORE,
}

# The safety-relevant set the coverage is measured over (docs/devices.md): a published
# state (not a setting) named so, binary or enum; with a channel suffix too.
SAFETY = frozenset(
    {
        "smoke", "smoke_state", "gas", "gas_sensor_state", "carbon_monoxide", "co_state",
        "heat", "water_leak", "active_water_leak", "water_leakage_state", "water_warning",
        "fall", "fall_down_status", "fall_status", "sos", "alarm", "alarm_status",
        "contact", "door_state", "garage_door_contact",
        "occupancy", "presence", "presence_state", "motion_state", "human_motion_state",
        "vibration",
        "battery_low", "tamper", "lock_state", "test",
    }
)  # fmt: skip

_CHANNEL = re.compile(r"^(.+?)_(?:l)?\d+$")


def names(prop: str) -> Iterable[str]:
    """The names a property is looked up by: itself, without a channel number, and as an
    IAS zone alarm's zone (``gas_alarm_1`` -> ``gas``; ``alarm_alarm_1`` -> ``alarm``)."""
    yield prop
    base = m.group(1) if (m := _CHANNEL.match(prop)) else prop
    if base != prop:
        yield base
    zone = base.removesuffix("_alarm")
    if zone != base and zone in SAFETY:  # not a "fault_alarm", a "power_alarm"
        yield zone


@functools.lru_cache(maxsize=4096)  # a home's devices repeat the same few names
def rule_for(prop: str, model: str | None = None) -> Rule | None:
    for name in names(prop):
        if model is not None and (model, name) in MODEL_RULES:
            return MODEL_RULES[(model, name)]
        if name in RULES:
            return RULES[name]
    return None


def safety_relevant(expose: Expose, model: str | None = None) -> bool:
    """In the set coverage is measured over, unless the model's row says it is not."""
    return (
        expose.state
        and expose.type in ("binary", "enum")
        and any(name in SAFETY for name in names(expose.property))
        and rule_for(expose.property, model) is not IGNORE
    )


def mapped(expose: Expose, model: str | None = None) -> bool:
    rule = rule_for(expose.property, model)
    return rule is not None and rule.maps(expose)


# -- the device type an installer is offered ------------------------------------------------

# The first of these a device exposes (as a published state) names its type.
_SUGGESTIONS: tuple[tuple[Signal | str, DeviceType], ...] = (
    ("lock_state", DeviceType.DIGITAL_LOCK),
    (Signal.FALL, DeviceType.FALL_DETECTOR),
    (Signal.SMOKE, DeviceType.SMOKE),
    (Signal.GAS, DeviceType.GAS),
    (Signal.CO, DeviceType.CO),
    (Signal.HEAT, DeviceType.HEAT),
    (Signal.WATER_LEAK, DeviceType.WATER_LEAK),
    (Signal.BUTTON_PRESS, DeviceType.ALARM_BUTTON),
    (Signal.DOOR_OPEN, DeviceType.DOOR_CONTACT),
    (Signal.PRESENCE, DeviceType.PRESENCE),
    ("occupancy", DeviceType.MOTION),
    ("action", DeviceType.ALARM_BUTTON),
)


def suggest_type(exposes: Mapping[str, Expose], model: str | None = None) -> DeviceType | None:
    """The type a device's exposes say it is, for the installer to confirm; None when
    they say nothing of the home (a plug, a light)."""
    said: set[Signal | str] = set()
    for expose in exposes.values():
        rule = rule_for(expose.property, model)
        if rule is None or not rule.maps(expose):
            continue
        if rule.kind == "signal" and rule.signal is not None and expose.state:
            said.add(rule.signal)
        elif rule.kind == "lock":
            said.add("lock_state")
        elif rule.kind == "occupancy" and expose.state:
            said.add("occupancy")
        elif rule.kind == "action":
            said.add("action")
    for wanted, device_type in _SUGGESTIONS:
        if wanted in said:
            return device_type
    return None
