"""The Zigbee2MQTT codec against the real and documented messages in shared/data."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import CodecError, DeviceType, MalformedPayload, Signal, UnexpectedValue
from devices.codecs import decode_action, decode_availability, decode_state, encode_state

from .conftest import SHARED_DATA

CATEGORY_TYPES = {
    "door_window_contact": DeviceType.DOOR_CONTACT,
    "motion_occupancy": DeviceType.MOTION,
    "water_leak": DeviceType.WATER_LEAK,
    "smoke": DeviceType.SMOKE,
    "button": DeviceType.ALARM_BUTTON,
    "sos_button": DeviceType.ALARM_BUTTON,
    "vibration": DeviceType.BED_SENSOR,
    "bed_pressure": DeviceType.BED_SENSOR,
    "door_lock": DeviceType.DIGITAL_LOCK,
}


def _messages() -> list[tuple[str, DeviceType, str, Any]]:
    devices = json.loads((SHARED_DATA / "zigbee2mqtt" / "devices.json").read_text())
    out = []
    for device in devices:
        kind = CATEGORY_TYPES[device["category"]]
        for source in ("sample_messages", "observed_messages"):
            for i, msg in enumerate(device.get(source, [])):
                out.append(
                    (
                        f"{device['model']}-{source}-{i}",
                        kind,
                        msg.get("topic") or "",
                        msg["payload"],
                    )
                )
    return out


MESSAGES = _messages()


def _signals(decoded: Any) -> dict[Signal, bool]:
    return {s.signal: s.active for s in decoded.signals}


@pytest.mark.parametrize(
    ("name", "kind", "topic", "payload"), MESSAGES, ids=[m[0] for m in MESSAGES]
)
def test_every_shared_message_decodes(
    name: str, kind: DeviceType, topic: str, payload: Any
) -> None:
    if isinstance(payload, str):  # plain-text payload of <name>/action
        assert topic.endswith("/action")
        decoded = decode_action(kind, payload.encode())
    else:
        decoded = decode_state(kind, json.dumps(payload).encode())
    for metric, value in decoded.readings:
        assert isinstance(metric, str) and isinstance(value, float)


def test_shared_data_has_the_expected_devices() -> None:
    assert len(MESSAGES) >= 30
    assert {m[1] for m in MESSAGES} >= {
        DeviceType.ALARM_BUTTON,
        DeviceType.SMOKE,
        DeviceType.DIGITAL_LOCK,
    }


@pytest.mark.parametrize(
    ("kind", "payload", "expected"),
    [
        (DeviceType.DOOR_CONTACT, {"contact": False, "battery": 100}, {Signal.DOOR_OPEN: True}),
        (DeviceType.DOOR_CONTACT, {"contact": True}, {Signal.DOOR_OPEN: False}),
        (
            DeviceType.WATER_LEAK,
            {"water_leak": True, "battery_low": False},
            {Signal.WATER_LEAK: True, Signal.BATTERY_LOW: False},
        ),
        (DeviceType.SMOKE, {"smoke": True}, {Signal.SMOKE: True}),
        (DeviceType.MOTION, {"occupancy": True}, {Signal.MOTION: True}),
        (DeviceType.BED_SENSOR, {"occupancy": False}, {Signal.BED_OCCUPIED: False}),
        (
            DeviceType.ALARM_BUTTON,
            {"action": "emergency", "battery": None},
            {Signal.BUTTON_PRESS: True},
        ),
        (DeviceType.ALARM_BUTTON, {"action": "hold"}, {Signal.BUTTON_PRESS: True}),
        (DeviceType.ALARM_BUTTON, {"action": ""}, {}),
        (DeviceType.ALARM_BUTTON, {"action": "release"}, {}),
        (DeviceType.DIGITAL_LOCK, {"lock_state": "not_fully_locked"}, {Signal.LOCK_JAMMED: True}),
        (
            DeviceType.DIGITAL_LOCK,
            {"lock_state": "locked", "action": "manual_lock"},
            {Signal.LOCK_JAMMED: False},
        ),
        (DeviceType.DIGITAL_LOCK, {"action": "unlock_failure_invalid_pin_or_id"}, {}),
    ],
)
def test_signals(kind: DeviceType, payload: dict[str, Any], expected: dict[Signal, bool]) -> None:
    assert _signals(decode_state(kind, json.dumps(payload).encode())) == expected


def test_button_press_from_shared_sos_sample_is_momentary() -> None:
    sos = next(m for m in MESSAGES if m[0].startswith("TS0215A_sos-sample"))
    decoded = decode_state(sos[1], json.dumps(sos[3]).encode())
    (press,) = decoded.signals
    assert press.signal is Signal.BUTTON_PRESS and press.momentary
    assert press.detail == {"action": "emergency"}


def test_lock_opening_says_who_and_how() -> None:
    payload = {
        "action": "unlock",
        "action_source_name": "keypad",
        "action_user": 3,
        "lock_state": "unlocked",
    }
    decoded = decode_state(DeviceType.DIGITAL_LOCK, json.dumps(payload).encode())
    opened = [s for s in decoded.signals if s.signal is Signal.LOCK_OPENED]
    assert opened and opened[0].detail == {
        "action": "unlock",
        "action_source_name": "keypad",
        "action_user": 3,
    }


def test_readings_are_named_and_numeric() -> None:
    decoded = decode_state(
        DeviceType.DOOR_CONTACT, b'{"battery":97,"linkquality":80,"voltage":3025}'
    )
    assert dict(decoded.readings) == {
        "battery_pct": 97.0,
        "linkquality": 80.0,
        "voltage_mv": 3025.0,
    }


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", MalformedPayload),
        (b"{not json", MalformedPayload),
        (b"\xff\xfe", MalformedPayload),
        (b"[1,2,3]", MalformedPayload),
        (b'"emergency"', MalformedPayload),
        (b'{"smoke": "yes"}', UnexpectedValue),
        (b'{"battery": "full"}', UnexpectedValue),
        (b'{"battery": true}', UnexpectedValue),
        (b'{"battery": 1e999}', UnexpectedValue),
        (b'{"action": 5}', UnexpectedValue),
        (b'{"lock_state": "open-ish"}', UnexpectedValue),
        (b"[" * 100_000, MalformedPayload),
    ],
)
def test_garbage_raises_only_codec_errors(payload: bytes, error: type[CodecError]) -> None:
    with pytest.raises(error):
        decode_state(DeviceType.DIGITAL_LOCK, payload)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_else(payload: bytes) -> None:
    for kind in DeviceType:
        with contextlib.suppress(CodecError):
            decode_state(kind, payload)
        with contextlib.suppress(CodecError):
            decode_action(kind, payload)
        with contextlib.suppress(CodecError):
            decode_availability(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
known_keys = st.sampled_from(
    [
        "battery",
        "contact",
        "smoke",
        "action",
        "lock_state",
        "occupancy",
        "linkquality",
        "water_leak",
        "carbon_monoxide",
        "tamper",
        "battery_low",
        "voltage",
    ]
)


@given(st.dictionaries(known_keys | st.text(max_size=10), json_values, max_size=8))
def test_arbitrary_json_objects_never_raise_anything_else(state: dict[str, Any]) -> None:
    payload = json.dumps(state, allow_nan=True).encode()
    for kind in DeviceType:
        with contextlib.suppress(CodecError):
            decode_state(kind, payload)


@given(
    st.fixed_dictionaries(
        {
            "battery": st.integers(0, 100),
            "linkquality": st.integers(0, 255),
            "smoke": st.booleans(),
            "battery_low": st.booleans(),
        }
    )
)
def test_encode_decode_round_trip(state: dict[str, Any]) -> None:
    decoded = decode_state(DeviceType.SMOKE, encode_state(state))
    assert dict(decoded.readings) == {
        "battery_pct": state["battery"],
        "linkquality": state["linkquality"],
    }
    assert _signals(decoded) == {
        Signal.SMOKE: state["smoke"],
        Signal.BATTERY_LOW: state["battery_low"],
    }


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b'{"state":"online"}', True),
        (b'{"state":"offline"}', False),
        (b"online", True),
        (b"offline", False),
    ],
)
def test_availability_current_and_legacy(payload: bytes, online: bool) -> None:
    assert decode_availability(payload) is online


def test_availability_examples_from_shared_topics() -> None:
    topics = json.loads((SHARED_DATA / "zigbee2mqtt" / "topics.json").read_text())
    avail = topics["availability"]
    for p in avail["payloads"]:
        decode_availability(json.dumps(p).encode())
    for p in avail["legacy_payloads"]:
        decode_availability(p.encode())
    with pytest.raises(UnexpectedValue):
        decode_availability(b'{"state":"sleeping"}')


def test_shared_data_path_is_real() -> None:
    assert isinstance(SHARED_DATA, Path) and (SHARED_DATA / "zigbee2mqtt" / "devices.json").exists()


def test_a_detectors_own_test_button_raises_a_test() -> None:
    tested = decode_state(DeviceType.SMOKE, b'{"smoke": true, "test": true, "battery": 90}')
    (smoke,) = tested.signals
    assert (smoke.signal, smoke.active, smoke.detail) == (Signal.SMOKE, True, {"test": True})
    real = decode_state(DeviceType.SMOKE, b'{"smoke": true, "test": false}')
    assert real.signals[0].detail == {}
    # Only a detector's alarm is a test by its button: a leak with "test" is still a leak.
    (leak,) = decode_state(DeviceType.WATER_LEAK, b'{"water_leak": true, "test": true}').signals
    assert leak.detail == {}
