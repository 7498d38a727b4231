"""BTHome v2 against the 45 cases in shared/data/bthome (values from bthome-ble 3.25.0)."""

from __future__ import annotations

import contextlib
import csv
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trygg_sim.bthome import BINARY as SIM_BINARY
from trygg_sim.bthome import advertisement, objects

from devices import CodecError, DeviceType, Repeated, Replayed, Signal, UnexpectedValue
from devices.codecs.bthome import NOT_SIGNALS, PRESSES, READINGS, SIGNALS, BthomeDecoder, _base

from .conftest import SHARED_DATA

CASES = list(csv.DictReader((SHARED_DATA / "bthome" / "cases.csv").open(encoding="utf-8")))


def decoder(case: dict[str, str], kind: DeviceType = DeviceType.ALARM_BUTTON) -> BthomeDecoder:
    key = bytes.fromhex(case["bindkey"]) if case["bindkey"] else None
    return BthomeDecoder(kind, case["mac"], key)


@pytest.mark.parametrize("case", CASES, ids=[c["case_id"] for c in CASES])
def test_every_case_decodes_to_the_reference_values(case: dict[str, str]) -> None:
    expected: dict[str, Any] = json.loads(case["expected_json"])
    decoded = decoder(case).decode(bytes.fromhex(case["payload_hex"]), case["local_name"])
    readings = dict(decoded.readings)
    for key, value in expected["sensors"].items():
        if _base(key) in READINGS and isinstance(value, int | float):
            name = READINGS[_base(key)] + key[len(_base(key)) :]
            assert readings[name] == pytest.approx(value), key
    signals = {(s.signal, s.active) for s in decoded.signals if not s.momentary}
    for key, value in expected["binary_sensors"].items():
        if _base(key) in SIGNALS:
            assert (SIGNALS[_base(key)], value) in signals, key
    presses = [
        e
        for k, e in expected["events"].items()
        if _base(k) == "button" and e["event_type"] in PRESSES
    ]
    assert len([s for s in decoded.signals if s.momentary]) == len(presses)


def test_the_cases_cover_what_home_care_needs() -> None:
    seen: set[Signal] = set()
    for case in CASES:
        seen |= {s.signal for s in decoder(case).decode(bytes.fromhex(case["payload_hex"])).signals}
    assert {
        Signal.BUTTON_PRESS,
        Signal.SMOKE,
        Signal.CO,
        Signal.WATER_LEAK,
        Signal.DOOR_OPEN,
        Signal.MOTION,
        Signal.BATTERY_LOW,
        Signal.TAMPER,
    } <= seen


ENCRYPTED = [c for c in CASES if c["bindkey"]]
PLAIN = [c for c in CASES if not c["bindkey"]]


@pytest.mark.parametrize("case", ENCRYPTED, ids=[c["case_id"] for c in ENCRYPTED])
def test_a_wrong_key_or_no_key_is_refused(case: dict[str, str]) -> None:
    payload = bytes.fromhex(case["payload_hex"])
    wrong = BthomeDecoder(DeviceType.ALARM_BUTTON, case["mac"], bytes(16))
    with pytest.raises(UnexpectedValue, match="decryption failed"):
        wrong.decode(payload)
    keyless = BthomeDecoder(DeviceType.ALARM_BUTTON, case["mac"], None)
    with pytest.raises(UnexpectedValue, match="no bindkey"):
        keyless.decode(payload)
    if not payload[0] & 0x02:  # without the MAC in the payload, the nonce uses the address
        other = BthomeDecoder(
            DeviceType.ALARM_BUTTON, "00:11:22:33:44:55", bytes.fromhex(case["bindkey"])
        )
        with pytest.raises(UnexpectedValue, match="decryption failed"):
            other.decode(payload)


def test_a_plain_advertisement_from_a_device_with_a_key_is_refused() -> None:
    key = bytes.fromhex(ENCRYPTED[0]["bindkey"])
    for case in PLAIN[:5]:
        with pytest.raises(UnexpectedValue, match="plain advertisement"):
            BthomeDecoder(DeviceType.ALARM_BUTTON, case["mac"], key).decode(
                bytes.fromhex(case["payload_hex"])
            )


@pytest.mark.parametrize("case", ENCRYPTED, ids=[c["case_id"] for c in ENCRYPTED])
def test_a_truncated_encrypted_payload_is_refused(case: dict[str, str]) -> None:
    payload = bytes.fromhex(case["payload_hex"])
    with pytest.raises(CodecError):
        decoder(case).decode(payload[:-3])


def test_a_retransmission_is_repeated_and_a_new_press_carries_the_next_packet_id() -> None:
    pendant = BthomeDecoder(DeviceType.ALARM_BUTTON, "A4:C1:38:00:00:01")
    first = bytes.fromhex("4000013a01")  # packet id 1, button press
    second = bytes.fromhex("4000023a01")  # the resident presses again
    assert pendant.decode(first, heard_at=100.0).sequence == 1
    with pytest.raises(Repeated):  # the radio repeats the same packet at once
        pendant.decode(first, heard_at=100.5)
    # Seconds later the same packet id is bthome-ble's to believe again; the pipeline
    # still knows it by its sequence (tests/test_ble_transport.py).
    assert pendant.decode(first, heard_at=106.0).sequence == 1
    decoded = pendant.decode(second, heard_at=106.5)
    assert decoded.sequence == 2
    assert [s.signal for s in decoded.signals if s.momentary] == [Signal.BUTTON_PRESS]


def test_each_advertisement_says_only_what_it_carries() -> None:
    smoke = BthomeDecoder(DeviceType.SMOKE, "A4:C1:38:00:00:02")
    assert smoke.decode(bytes.fromhex("4000012901")).signals  # packet 1: smoke
    later = smoke.decode(bytes.fromhex("40000201" + "5d"))  # packet 2: battery only
    assert later.signals == () and later.sequence == 2


def test_a_sensor_does_not_raise_presses() -> None:
    case = next(c for c in CASES if c["case_id"] == "button_press")
    decoded = decoder(case, DeviceType.DOOR_CONTACT).decode(bytes.fromhex(case["payload_hex"]))
    assert not any(s.signal is Signal.BUTTON_PRESS for s in decoded.signals)


@pytest.mark.parametrize(
    "payload", [b"", b"\x40" * 100, bytes.fromhex("e00102"), bytes.fromhex("41")]
)
def test_garbage_is_a_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        BthomeDecoder(DeviceType.ALARM_BUTTON, "A4:C1:38:00:00:02").decode(payload)


def test_a_bindkey_must_be_16_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        BthomeDecoder(DeviceType.ALARM_BUTTON, "A4:C1:38:00:00:03", b"short")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.booleans())
def test_arbitrary_bytes_raise_only_codec_errors(payload: bytes, keyed: bool) -> None:
    key = bytes(range(16)) if keyed else None
    with contextlib.suppress(CodecError):
        BthomeDecoder(DeviceType.ALARM_BUTTON, "A4:C1:38:00:00:04", key).decode(payload)


@given(
    st.integers(0, 255),
    st.integers(0, 100),
    st.sampled_from(["press", "double_press", "long_press"]),
    st.integers(0, 2**32 - 1),
    st.binary(min_size=16, max_size=16),
)
def test_the_simulators_encrypted_advertisements_decode(
    packet_id: int, battery: int, button: str, counter: int, key: bytes
) -> None:
    from trygg_sim.bthome import advertisement, objects

    mac = "B4:35:22:F5:3D:A4"
    body = objects(packet_id=packet_id, battery=battery, button=button)
    data = advertisement(body, trigger_based=True, bindkey=key, mac=mac, counter=counter)
    decoded = BthomeDecoder(DeviceType.ALARM_BUTTON, mac, key).decode(data)
    assert decoded.sequence == packet_id
    assert decoded.readings == (("battery_pct", float(battery)),)
    (press,) = decoded.signals
    assert (press.signal, press.detail) == (Signal.BUTTON_PRESS, {"action": button})


def test_the_simulator_encrypts_exactly_as_the_real_button_did() -> None:
    from trygg_sim.bthome import advertisement, objects

    case = next(c for c in CASES if c["case_id"] == "enc_button")
    body = objects(packet_id=7, battery=100, button="press")
    data = advertisement(
        body,
        trigger_based=True,
        bindkey=bytes.fromhex(case["bindkey"]),
        mac=case["mac"],
        counter=0x1BA,
    )
    assert data.hex() == case["payload_hex"]


def _pendant_press(packet_id: int, counter: int, key: bytes, mac: str) -> bytes:
    from trygg_sim.bthome import advertisement, objects

    body = objects(packet_id=packet_id, battery=90, button="press")
    return advertisement(body, trigger_based=True, bindkey=key, mac=mac, counter=counter)


def test_a_captured_encrypted_advertisement_replayed_later_is_refused() -> None:
    case = next(c for c in CASES if c["case_id"] == "enc_button")  # a real Shelly press
    key, mac = bytes.fromhex(case["bindkey"]), case["mac"]
    captured = bytes.fromhex(case["payload_hex"])  # encryption counter 0x1BA
    pendant = BthomeDecoder(DeviceType.ALARM_BUTTON, mac, key)
    assert pendant.decode(captured, heard_at=10.0).signals
    newer = _pendant_press(8, 0x1BB, key, mac)
    assert pendant.decode(newer, heard_at=20.0).sequence == 8
    for at in (20.5, 30.0, 3600.0):  # at once, or an hour later
        with pytest.raises(Replayed, match="counter 442 is behind 443"):
            pendant.decode(captured, heard_at=at)
    # The device's own next press still gets through.
    assert pendant.decode(_pendant_press(9, 0x1BC, key, mac), heard_at=3601.0).sequence == 9


def test_forged_advertisements_do_not_lift_the_replay_check() -> None:
    case = next(c for c in CASES if c["case_id"] == "enc_button")
    key, mac = bytes.fromhex(case["bindkey"]), case["mac"]
    captured = bytes.fromhex(case["payload_hex"])
    pendant = BthomeDecoder(DeviceType.ALARM_BUTTON, mac, key)
    pendant.decode(captured, heard_at=1.0)
    pendant.decode(_pendant_press(8, 1000, key, mac), heard_at=2.0)
    # Two advertisements under a wrong key make bthome-ble doubt its key (and, left to
    # itself, stop checking counters); the replay after them is still refused.
    for counter in (2000, 2001):
        with pytest.raises(UnexpectedValue, match="decryption failed"):
            pendant.decode(_pendant_press(9, counter, bytes(16), mac), heard_at=3.0)
    with pytest.raises(Replayed):
        pendant.decode(captured, heard_at=10.0)
    assert pendant.decode(_pendant_press(9, 1001, key, mac), heard_at=11.0).sequence == 9


def test_the_same_encrypted_advertisement_again_is_a_repeat_not_a_replay() -> None:
    case = next(c for c in CASES if c["case_id"] == "enc_button")
    pendant = decoder(case)
    captured = bytes.fromhex(case["payload_hex"])
    pendant.decode(captured, heard_at=1.0)
    for at in (1.2, 9.0):  # a retransmission, and the same bytes seconds later
        with pytest.raises(Repeated):
            pendant.decode(captured, heard_at=at)


# -- the whole binary-sensor table of BTHome v2 ------------------------------------------

# What each of BTHome's binary sensors is on each kind of device (bthome.io/format):
# a signal, or nothing (NOT_SIGNALS); "lock" (on: unlocked) opens a digital lock.
EXPECTED_SIGNALS = {
    "opening": Signal.DOOR_OPEN,
    "battery_low": Signal.BATTERY_LOW,
    "carbon_monoxide": Signal.CO,
    "door": Signal.DOOR_OPEN,
    "garage_door": Signal.DOOR_OPEN,
    "window": Signal.DOOR_OPEN,
    "gas": Signal.GAS,
    "heat": Signal.HEAT,
    "moisture": Signal.WATER_LEAK,
    "motion": Signal.MOTION,
    "moving": Signal.MOTION,
    "vibration": Signal.MOTION,
    "occupancy": Signal.MOTION,
    "presence": Signal.PRESENCE,
    "problem": Signal.DEVICE_FAULT,
    "safety": Signal.DEVICE_FAULT,
    "smoke": Signal.SMOKE,
    "tamper": Signal.TAMPER,
}


@pytest.mark.parametrize("name", sorted(SIM_BINARY))
def test_every_binary_sensor_bthome_defines_is_a_signal_or_said_to_be_nothing(name: str) -> None:
    """Each object through the real bthome-ble, on and then off: the signal the table
    names, or nothing at all for those that say nothing Trygg acts on."""
    kind = DeviceType.DIGITAL_LOCK if name == "lock" else DeviceType.SMOKE
    device = BthomeDecoder(kind, "A4:C1:38:00:00:09")
    on = device.decode(advertisement(objects(packet_id=1, **{name: True})))  # type: ignore[arg-type]
    off = device.decode(advertisement(objects(packet_id=2, **{name: False})))  # type: ignore[arg-type]
    said_on = {s.signal: s.active for s in on.signals}
    said_off = {s.signal: s.active for s in off.signals}
    if name == "lock":
        assert said_on == {Signal.LOCK_OPENED: True} and said_off == {}
    elif name in EXPECTED_SIGNALS:
        assert said_on == {EXPECTED_SIGNALS[name]: True}
        assert said_off == {EXPECTED_SIGNALS[name]: False}
    else:
        assert name in NOT_SIGNALS, name
        assert said_on == said_off == {}


def test_the_table_covers_every_binary_sensor_of_the_library() -> None:
    from bthome_ble.const import MEAS_TYPES
    from sensor_state_data.description import BaseBinarySensorDescription

    library = {
        str(getattr(t.meas_format.device_class, "value", t.meas_format.device_class))
        for t in MEAS_TYPES.values()
        if isinstance(t.meas_format, BaseBinarySensorDescription)
    }
    assert library, "bthome-ble names no binary sensors"
    assert library <= set(SIGNALS) | NOT_SIGNALS | {"lock"}, library - set(SIGNALS) - NOT_SIGNALS


def test_a_bed_sensors_presence_is_someone_in_bed() -> None:
    bed = BthomeDecoder(DeviceType.BED_SENSOR, "A4:C1:38:00:00:0A")
    (said,) = bed.decode(advertisement(objects(packet_id=1, presence=True))).signals
    assert (said.signal, said.active) == (Signal.BED_OCCUPIED, True)
