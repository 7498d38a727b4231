"""The real models the simulated Zigbee devices are, and the ``bridge/devices`` list that
Zigbee2MQTT publishes for them: each model's exposes as zigbee-herdsman-converters
describes it (tests/test_zigbee_catalogue.py checks each against the real catalogue), so
the gateway reads a simulated device by its description as it reads a real one."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from devices import DeviceType

# access flags, as zigbee-herdsman-converters has them
STATE, SET, GET = 1, 2, 4


def numeric(name: str, unit: str | None = None, access: int = STATE) -> dict[str, Any]:
    expose: dict[str, Any] = {"type": "numeric", "name": name, "property": name, "access": access}
    if unit:
        expose["unit"] = unit
    return expose


def binary(
    name: str, on: object = True, off: object = False, access: int = STATE
) -> dict[str, Any]:
    return {
        "type": "binary",
        "name": name,
        "property": name,
        "access": access,
        "value_on": on,
        "value_off": off,
    }


def enum(name: str, values: Iterable[str], access: int = STATE) -> dict[str, Any]:
    return {
        "type": "enum",
        "name": name,
        "property": name,
        "access": access,
        "values": list(values),
    }


@dataclass(frozen=True)
class Model:
    model: str
    vendor: str
    description: str
    exposes: tuple[dict[str, Any], ...]


_BATTERY = (numeric("battery", "%"), numeric("voltage", "mV"))

# One real model per type the simulator has on Zigbee2MQTT.
MODELS: dict[DeviceType, Model] = {
    DeviceType.ALARM_BUTTON: Model(
        "WXKG11LM",
        "Aqara",
        "Wireless mini switch",
        (*_BATTERY, enum("action", ["single", "double", "triple", "quadruple", "hold", "release"])),
    ),
    DeviceType.FALL_DETECTOR: Model(
        "MIR-HE200-TY",
        "Tuya",
        "Human presence sensor with fall function",
        (
            numeric("illuminance", "lx"),
            binary("presence"),
            binary("occupancy"),
            enum("fall_down_status", ["none", "maybe_fall", "fall"]),
            numeric("fall_sensitivity", access=STATE | SET),
        ),
    ),
    DeviceType.DOOR_CONTACT: Model(
        "MCCGQ11LM",
        "Aqara",
        "Door and window sensor",
        (*_BATTERY, binary("contact", on=False, off=True), numeric("device_temperature", "°C")),
    ),
    DeviceType.MOTION: Model(
        "RTCGQ11LM",
        "Aqara",
        "Motion sensor",
        (*_BATTERY, binary("occupancy"), numeric("illuminance", "lx")),
    ),
    DeviceType.BED_SENSOR: Model(
        "TS0601_bed_presence_sensor",
        "Tuya",
        "Bed presence sensor",
        (binary("occupancy"), numeric("battery", "%"), numeric("illuminance", "lx")),
    ),
    DeviceType.SMOKE: Model(
        "W599001",
        "Schneider Electric",
        "Wiser smoke alarm",
        (
            numeric("battery", "%", STATE | GET),
            numeric("temperature", "°C", STATE | GET),
            binary("smoke"),
            binary("tamper"),
            binary("battery_low"),
            binary("test"),
            binary("heat"),
        ),
    ),
    DeviceType.CO: Model(
        "CO-8ZBS",
        "Climax",
        "Carbon monoxide detector",
        (
            binary("carbon_monoxide"),
            binary("battery_low"),
            binary("tamper"),
            numeric("battery", "%"),
        ),
    ),
    DeviceType.GAS: Model("M415-5C", "BYUN", "Gas sensor", (binary("gas"),)),
    # No Zigbee heat-only detector is described in the catalogue: a smoke alarm with a
    # heat sensor, installed where smoke would false-alarm (a kitchen).
    DeviceType.HEAT: Model(
        "W599001",
        "Schneider Electric",
        "Wiser smoke alarm",
        (
            numeric("battery", "%", STATE | GET),
            binary("smoke"),
            binary("heat"),
            binary("battery_low"),
            binary("test"),
        ),
    ),
    DeviceType.SIREN: Model(
        "HS2WD-E",
        "Heiman",
        "Smart siren",
        (numeric("battery", "%", STATE | GET), numeric("max_duration", "s", STATE | SET | GET)),
    ),
    DeviceType.PRESENCE: Model(
        "ZG-204ZE",
        "HOBEIAN",
        "Millimeter wave motion detection",
        (
            binary("presence"),
            numeric("illuminance", "lx"),
            numeric("battery", "%"),
            numeric("fading_time", "s", STATE | SET),
            binary("indicator", on="ON", off="OFF", access=STATE | SET),
        ),
    ),
    DeviceType.WATER_LEAK: Model(
        "SJCGQ11LM",
        "Aqara",
        "Water leak sensor",
        (*_BATTERY, binary("water_leak"), binary("battery_low")),
    ),
    DeviceType.DIGITAL_LOCK: Model(
        "V3-BTZB/V3-BTZBE",
        "Danalock",
        "BT/ZB smartlock",
        (
            {
                "type": "lock",
                "features": [
                    binary("state", on="LOCK", off="UNLOCK", access=STATE | SET | GET),
                    enum("lock_state", ["not_fully_locked", "locked", "unlocked"]),
                ],
            },
            numeric("battery", "%"),
            enum(
                "action",
                [
                    "unknown",
                    "lock",
                    "unlock",
                    "lock_failure_invalid_pin_or_id",
                    "lock_failure_invalid_schedule",
                    "unlock_failure_invalid_pin_or_id",
                ],
            ),
            enum("action_source_name", ["keypad", "rfid", "manual", "rf"]),
            numeric("action_user"),
        ),
    ),
}


def entry(friendly_name: str, device_type: DeviceType, index: int) -> dict[str, Any]:
    """A device of the bridge's list, as Zigbee2MQTT 2.x publishes it."""
    ieee = f"0x00158d00{index:08x}"
    model = MODELS.get(device_type)
    body: dict[str, Any] = {
        "friendly_name": friendly_name,
        "ieee_address": ieee,
        "type": "EndDevice",
        "network_address": 0x1000 + index,
        "supported": model is not None,
        "interview_completed": True,
    }
    if model is not None:
        body["definition"] = {
            "model": model.model,
            "vendor": model.vendor,
            "description": model.description,
            "exposes": list(model.exposes),
        }
    return body


def bridge_devices(devices: Iterable[tuple[str, DeviceType]]) -> bytes:
    """``bridge/devices``: the coordinator, then every device with its description."""
    listing: list[dict[str, Any]] = [
        {
            "friendly_name": "Coordinator",
            "ieee_address": "0x00124b0000000001",
            "type": "Coordinator",
        }
    ]
    listing += [entry(name, kind, i) for i, (name, kind) in enumerate(devices, start=1)]
    return json.dumps(listing, separators=(",", ":")).encode()
