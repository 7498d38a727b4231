"""Zigbee2MQTT devices read by their own description, against the real model catalogue:
zigbee-herdsman-converters at its pinned version (scripts/zigbee-catalogue.sh), every
model's exposes produced by the package itself (tests/zigbee_catalogue.js). The coverage
of the safety-relevant exposes has a floor; the models chosen below are decoded with
their real exposes and payloads as those models send them; the simulator's models are
described as the catalogue describes them."""

from __future__ import annotations

from typing import Any

import pytest
from trygg_sim.zigbee_models import MODELS, bridge_devices

from devices import DeviceType, Signal, UnexpectedValue
from devices.codecs import decode_bridge_listing, decode_state, encode_state
from devices.codecs.exposes import Expose, flatten, suggest_type

from .catalogue import Catalogue, coverage, load

PINNED = "26.112.0"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load()


@pytest.fixture(scope="module")
def exposes_of(catalogue: Catalogue) -> dict[str, dict[str, Expose]]:
    return {model: exposes for model, _vendor, exposes in catalogue.described}


def test_the_catalogue_is_the_real_one_at_its_pinned_version(catalogue: Catalogue) -> None:
    assert catalogue.version == PINNED
    assert len(catalogue.models) > 4000
    vendors = {m["vendor"] for m in catalogue.models}
    assert {"Aqara", "IKEA", "Philips", "Tuya", "Heiman", "Danalock"} <= vendors


def test_every_model_with_a_safety_relevant_expose_is_read_whole(catalogue: Catalogue) -> None:
    """The floor: every model that exposes a safety-relevant state (devices/codecs/
    exposes.py SAFETY, docs/devices.md) has each such expose mapped; the list of those
    that are not can only shrink from empty."""
    found = coverage(catalogue)
    assert found.definitions == len(catalogue.models)
    assert found.without_exposes < 150  # exposes that need a real device to say
    assert found.total >= 750
    assert dict(found.unmapped) == {}
    assert found.mapped == found.total


# (model, device type as installed, payload as the model publishes it, signals expected)
CASES: list[tuple[str, DeviceType, dict[str, Any], dict[Signal, bool]]] = [
    (
        "MCCGQ11LM",
        DeviceType.DOOR_CONTACT,
        {"contact": False, "battery": 91},
        {Signal.DOOR_OPEN: True},
    ),
    ("MCCGQ11LM", DeviceType.DOOR_CONTACT, {"contact": True}, {Signal.DOOR_OPEN: False}),
    (
        "SJCGQ11LM",
        DeviceType.WATER_LEAK,
        {"water_leak": True, "battery_low": False},
        {Signal.WATER_LEAK: True, Signal.BATTERY_LOW: False},
    ),
    (
        "MIR-HE200-TY",
        DeviceType.FALL_DETECTOR,
        {"fall_down_status": "fall", "presence": True},
        {Signal.FALL: True, Signal.PRESENCE: True},
    ),
    (
        "MIR-HE200-TY",
        DeviceType.FALL_DETECTOR,
        {"fall_down_status": "maybe_fall"},
        {Signal.FALL: False},
    ),
    ("MIR-HE200-TY", DeviceType.FALL_DETECTOR, {"fall_down_status": "none"}, {Signal.FALL: False}),
    ("HS2FD-EF1-3.0", DeviceType.FALL_DETECTOR, {"fall_status": "fall_alarm"}, {Signal.FALL: True}),
    ("RD24G01", DeviceType.PRESENCE, {"presence_state": "stationary"}, {Signal.PRESENCE: True}),
    ("RD24G01", DeviceType.PRESENCE, {"presence_state": "none"}, {Signal.PRESENCE: False}),
    ("M415-5C", DeviceType.GAS, {"gas": True}, {Signal.GAS: True}),
    (
        "CO-8ZBS",
        DeviceType.CO,
        {"carbon_monoxide": True, "tamper": False},
        {Signal.CO: True, Signal.TAMPER: False},
    ),
    # a model whose values are not true/false: ON is the alarm
    ("DCR-CO", DeviceType.CO, {"carbon_monoxide": "ON"}, {Signal.CO: True}),
    ("DCR-CO", DeviceType.CO, {"carbon_monoxide": "OFF"}, {Signal.CO: False}),
    (
        "W599001",
        DeviceType.SMOKE,
        {"smoke": False, "heat": True},
        {Signal.SMOKE: False, Signal.HEAT: True},
    ),
    (
        "LDSENK08",
        DeviceType.DOOR_CONTACT,
        {"contact": True, "vibration": True},
        {Signal.DOOR_OPEN: False, Signal.MOTION: True},
    ),
    ("BW-IS9", DeviceType.WATER_LEAK, {"water_leak_alarm_1": True}, {Signal.WATER_LEAK: True}),
    ("S8", DeviceType.DOOR_CONTACT, {"alarm": "ALARM"}, {Signal.DOOR_OPEN: True}),
    (
        "mKomfy_Sensor",
        DeviceType.MOTION,
        {"alarm_status": "tamper"},
        {Signal.TAMPER: True, Signal.BATTERY_LOW: False},
    ),
    (
        "V3-BTZB/V3-BTZBE",
        DeviceType.DIGITAL_LOCK,
        {"lock_state": "not_fully_locked", "state": "LOCK"},
        {Signal.LOCK_JAMMED: True},
    ),
    (
        "V3-BTZB/V3-BTZBE",
        DeviceType.DIGITAL_LOCK,
        {"lock_state": "locked"},
        {Signal.LOCK_JAMMED: False},
    ),
    (
        "V3-BTZB/V3-BTZBE",
        DeviceType.DIGITAL_LOCK,
        {"lock_state": "unlocked"},
        {Signal.LOCK_JAMMED: False},
    ),
    # a siren's "alarm" is a setting one makes, not something the home says
    ("TS0216", DeviceType.SMOKE, {"alarm": True}, {}),
    # a plug says nothing of the home
    ("ZNCZ02LM", DeviceType.MOTION, {"state": "ON", "power": 3.2}, {}),
]


@pytest.mark.parametrize(("model", "kind", "payload", "expected"), CASES)
def test_real_models_by_their_real_exposes(
    exposes_of: dict[str, dict[str, Expose]],
    model: str,
    kind: DeviceType,
    payload: dict[str, Any],
    expected: dict[Signal, bool],
) -> None:
    decoded = decode_state(kind, encode_state(payload), exposes_of[model], model)
    assert {s.signal: s.active for s in decoded.signals} == expected


def test_an_sos_press_is_a_press_and_its_release_nothing(
    exposes_of: dict[str, dict[str, Expose]],
) -> None:
    exposes = exposes_of["SEB01ZB"]
    (press,) = decode_state(DeviceType.ALARM_BUTTON, b'{"sos": true}', exposes).signals
    assert (press.signal, press.active, press.momentary) == (Signal.BUTTON_PRESS, True, True)
    assert decode_state(DeviceType.ALARM_BUTTON, b'{"sos": false}', exposes).signals == ()


def test_a_smoke_alarms_test_button_is_a_test_never_an_alarm(
    exposes_of: dict[str, dict[str, Expose]],
) -> None:
    exposes = exposes_of["W599001"]
    (smoke, heat) = decode_state(
        DeviceType.SMOKE, b'{"smoke": true, "heat": false, "test": true}', exposes
    ).signals
    assert smoke.signal is Signal.SMOKE and smoke.detail == {"test": True}
    assert heat.active is False
    (real,) = decode_state(DeviceType.SMOKE, b'{"smoke": true, "test": false}', exposes).signals
    assert real.detail == {}


def test_a_lock_opened_on_its_keypad_says_how(exposes_of: dict[str, dict[str, Expose]]) -> None:
    body = {"action": "unlock", "action_source_name": "keypad", "action_user": 3}
    decoded = decode_state(
        DeviceType.DIGITAL_LOCK, encode_state(body), exposes_of["V3-BTZB/V3-BTZBE"]
    )
    (opened,) = decoded.signals
    assert opened.signal is Signal.LOCK_OPENED
    assert opened.detail == {"action": "unlock", "action_source_name": "keypad", "action_user": 3}


def test_a_value_the_description_does_not_allow_is_refused_with_why(
    exposes_of: dict[str, dict[str, Expose]],
) -> None:
    with pytest.raises(UnexpectedValue, match="'carbon_monoxide' must be 'ON' or 'OFF'"):
        decode_state(DeviceType.CO, b'{"carbon_monoxide": true}', exposes_of["DCR-CO"])
    with pytest.raises(UnexpectedValue, match="'fall_down_status' must be a string"):
        decode_state(
            DeviceType.FALL_DETECTOR, b'{"fall_down_status": 1}', exposes_of["MIR-HE200-TY"]
        )


@pytest.mark.parametrize(
    ("model", "suggested"),
    [
        ("MCCGQ11LM", DeviceType.DOOR_CONTACT),
        ("SJCGQ11LM", DeviceType.WATER_LEAK),
        ("MIR-HE200-TY", DeviceType.FALL_DETECTOR),
        ("V3-BTZB/V3-BTZBE", DeviceType.DIGITAL_LOCK),
        ("M415-5C", DeviceType.GAS),
        ("CO-8ZBS", DeviceType.CO),
        ("SEB01ZB", DeviceType.ALARM_BUTTON),
        ("WXKG11LM", DeviceType.ALARM_BUTTON),
        ("ZG-204ZE", DeviceType.PRESENCE),
        ("RTCGQ11LM", DeviceType.MOTION),
        ("W599001", DeviceType.SMOKE),
        ("ZNCZ02LM", None),  # a plug
    ],
)
def test_the_type_an_installer_is_offered_comes_from_the_exposes(
    exposes_of: dict[str, dict[str, Expose]], model: str, suggested: DeviceType | None
) -> None:
    assert suggest_type(exposes_of[model], model) is suggested


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_each_simulated_model_is_described_as_the_catalogue_describes_it(
    exposes_of: dict[str, dict[str, Expose]], kind: DeviceType
) -> None:
    model = MODELS[kind]
    real = exposes_of[model.model]
    simulated = flatten(list(model.exposes))
    for name, expose in simulated.items():
        assert name in real, (model.model, name)
        assert (expose.type, expose.access) == (real[name].type, real[name].access), name
        if expose.type == "binary":
            assert (expose.value_on, expose.value_off) == (
                real[name].value_on,
                real[name].value_off,
            )
        assert set(expose.values) <= set(real[name].values), name
        assert expose.unit == real[name].unit, name
    # The bridge list the simulator publishes reads back as it was described.
    listed = decode_bridge_listing(bridge_devices([("home/device", kind)]))["home/device"]
    assert listed.model == model.model
    assert listed.exposes == simulated
