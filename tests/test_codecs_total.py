"""Every codec is total: whatever arrives, it returns observations or raises a CodecError,
and nothing non-finite (and no text JSON or PostgreSQL cannot keep) ever comes out.

Each codec gets arbitrary bytes and inputs shaped like its protocol, with the red-team
classes that once escaped: deep nesting, integers past 4,300 digits, 10**400, NaN and
Infinity, lone surrogates and NUL in strings, u-blox's "$PUBX*1F", "nan" in an RMC field.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from trygg_sim.bthome import advertisement

from devices import CodecError, DeviceType, MalformedPayload, UnexpectedValue
from devices.codecs import (
    Decoded,
    decode_action,
    decode_availability,
    decode_bridge_devices,
    decode_state,
    parse_json,
)
from devices.codecs.blelock import decode_status
from devices.codecs.bthome import BthomeDecoder
from devices.codecs.camera import MotionMeter
from devices.codecs.nmea import GpsFix, decode_sentence, encode_sentence
from devices.codecs.radio import SYNC, crc16, decode_frame

Z2M_TYPES = [DeviceType.ALARM_BUTTON, DeviceType.DIGITAL_LOCK, DeviceType.BED_SENSOR]


def assert_clean(value: object) -> None:
    """No non-finite number, no NUL, no lone surrogate anywhere in what came out."""
    if isinstance(value, Decoded):
        for metric, number in value.readings:
            assert isinstance(number, float) and math.isfinite(number), metric
        for state in value.signals:
            assert_clean(state.detail)
        assert_clean(value.firmware)
    elif isinstance(value, GpsFix):
        assert_clean([value.latitude, value.longitude, value.speed_kmh])
        assert_clean(value.observations())
    elif isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, str):
        assert "\x00" not in value
        value.encode("utf-8")  # raises on a lone surrogate
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_clean(key)
            assert_clean(item)
    elif isinstance(value, list | tuple):
        for item in value:
            assert_clean(item)


def total(decode: Any, *args: Any, **kwargs: Any) -> object:
    """Call a codec: a CodecError is an answer; anything else escaping fails the test."""
    try:
        out = decode(*args, **kwargs)
    except CodecError as exc:
        assert str(exc)  # always with a reason
        return None
    assert_clean(out)
    return out


# -- JSON, as Zigbee2MQTT devices (and anything pretending to be one) send it ----------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["\ud800", "a\x00b", "\udfff\ud800", "emergency", "single", "unlock"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "battery",
        "action",
        "contact",
        "smoke",
        "occupancy",
        "lock_state",
        "voltage",
        "action_user",
        "action_source_name",
        "linkquality",
        "temperature",
    ]
)


def _huge_number(digits: int) -> str:
    return "1" * digits


@st.composite
def hostile_json(draw: st.DrawFn) -> bytes:
    """Well-formed JSON text, or nearly, with the shapes that broke the codecs."""
    state = draw(st.dictionaries(KEYS | st.text(max_size=6), json_values, max_size=6))
    text = json.dumps(state)  # NaN / Infinity come out as their (non-standard) literals
    trick = draw(st.integers(0, 5))
    key = draw(KEYS)
    if trick == 1:
        depth = draw(st.integers(1, 5000))
        text = text[:-1] + ("," if state else "") + f'"{key}": ' + "[" * depth + "]" * depth + "}"
    elif trick == 2:
        number = _huge_number(draw(st.sampled_from([41, 401, 4301, 10_000])))
        text = text[:-1] + ("," if state else "") + f'"{key}": {number}' + "}"
    elif trick == 3:
        number = draw(st.sampled_from(["1e400", "-1e999", "NaN", "Infinity", "-Infinity"]))
        text = text[:-1] + ("," if state else "") + f'"{key}": {number}' + "}"
    elif trick == 4:
        text = text[: draw(st.integers(0, len(text)))]  # cut short
    return text.encode("utf-8", "surrogatepass")


@given(st.binary(max_size=300), st.sampled_from(Z2M_TYPES))
def test_zigbee2mqtt_arbitrary_bytes(payload: bytes, kind: DeviceType) -> None:
    total(decode_state, kind, payload)
    total(decode_action, kind, payload)
    total(decode_availability, payload)
    total(decode_bridge_devices, payload)


@settings(max_examples=150)
@given(hostile_json(), st.sampled_from(Z2M_TYPES))
def test_zigbee2mqtt_hostile_json(payload: bytes, kind: DeviceType) -> None:
    total(decode_state, kind, payload)
    total(decode_availability, payload)
    total(decode_bridge_devices, b"[" + payload + b"]")


@pytest.mark.parametrize(
    ("payload", "error", "reason"),
    [
        (b'{"battery": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", MalformedPayload, "deeper"),
        (b'{"battery": ' + b"1" * 5000 + b"}", UnexpectedValue, "digits"),
        (b'{"battery": ' + str(10**400).encode() + b"}", UnexpectedValue, "digits"),
        (b'{"battery": 1e400}', UnexpectedValue, "not a finite number"),
        (b'{"battery": NaN}', MalformedPayload, "NaN"),
        (b'{"temperature": -Infinity}', MalformedPayload, "Infinity"),
        (b'{"action": "\\ud800"}', UnexpectedValue, "lone surrogate"),
        (b'{"action": "sos\\u0000"}', UnexpectedValue, "NUL"),
        (b'{"action": "' + b"x" * 300 + b'"}', UnexpectedValue, "longer"),
    ],
)
def test_the_red_team_zigbee2mqtt_payloads_are_codec_errors(
    payload: bytes, error: type[CodecError], reason: str
) -> None:
    with pytest.raises(error, match=reason):
        decode_state(DeviceType.ALARM_BUTTON, payload)


def test_a_lock_user_name_with_a_nul_is_refused() -> None:
    payload = b'{"action": "unlock", "action_user": 3, "action_source_name": "key\\u0000pad"}'
    with pytest.raises(UnexpectedValue, match="NUL"):
        decode_state(DeviceType.DIGITAL_LOCK, payload)


def test_json_limits_are_checked_before_parsing() -> None:
    with pytest.raises(MalformedPayload, match="bytes"):
        parse_json(b" " * 2048, max_bytes=1024)
    # Brackets inside strings are text, not nesting.
    assert parse_json(b'{"a": "' + b"[" * 5000 + b'"}') == {"a": "[" * 5000}


# -- NMEA: sentences with a valid checksum, so the parser behind it is reached ----------
FIELD = st.one_of(
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="$*"),
        max_size=10,
    ),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "1_0", "4916.45", "12311.12", "N", "W", "A"]),
    st.decimals(allow_nan=False, places=4).map(str),
)


@st.composite
def nmea_bodies(draw: st.DrawFn) -> str:
    talker = draw(st.sampled_from(["GP", "GN", "GL", "P", "PUBX", "PSRF", "PFST", "GPX"]))
    kind = draw(st.sampled_from(["GGA", "RMC", "GSA", "GSV", "GLL", "ZDA", "VTG", "", ",00"]))
    fields = draw(st.lists(FIELD, max_size=16))
    return ",".join([talker + kind, *fields])


@given(st.binary(max_size=200))
def test_nmea_arbitrary_bytes(line: bytes) -> None:
    total(decode_sentence, line)


@settings(max_examples=400)
@given(nmea_bodies())
def test_nmea_sentences_with_valid_checksums(body: str) -> None:
    total(decode_sentence, encode_sentence(body))


@pytest.mark.parametrize(
    "line",
    [
        b"$PUBX*1F",  # u-blox's proprietary sentence, empty: pynmea2 raises IndexError
        encode_sentence("GPRMC,123519,A,4807.038,N,01131.000,E,nan,084.4,230394,003.1,W"),
        encode_sentence("GPRMC,123519,A,4807.038,N,01131.000,E,inf,084.4,230394,003.1,W"),
        encode_sentence("GPGGA,123519,48nan,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        encode_sentence("GPGGA,123519,9507.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
    ],
)
def test_the_red_team_sentences_are_codec_errors(line: bytes) -> None:
    with pytest.raises(CodecError):
        decode_sentence(line)


def test_a_real_pubx_position_sentence_is_accepted_without_a_fix() -> None:
    body = "PUBX,00,081350.00,4717.113210,N,00833.915187,E,546.589,G3,2.1,2.0,0.007,77.52,"
    body += "0.007,,0.92,1.19,0.77,9,0,0"  # u-blox's documented example
    assert decode_sentence(encode_sentence(body)) is None


# -- BTHome: service data, plain and encrypted, to one decoder that keeps its state ----
OBJECT_IDS = st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x05, 0x0C, 0x11, 0x21, 0x2D, 0x3A, 0x53])


@st.composite
def bthome_payloads(draw: st.DrawFn) -> bytes:
    objects = b"".join(
        bytes([draw(OBJECT_IDS)]) + draw(st.binary(max_size=4))
        for _ in range(draw(st.integers(0, 6)))
    )
    return objects + draw(st.binary(max_size=3))


KEY = bytes(range(16))
MAC = "B4:35:22:F5:3D:A4"


@given(st.lists(st.binary(max_size=70), max_size=5), st.booleans())
def test_bthome_arbitrary_bytes(adverts: list[bytes], keyed: bool) -> None:
    pendant = BthomeDecoder(DeviceType.ALARM_BUTTON, MAC, KEY if keyed else None)
    for n, data in enumerate(adverts):
        total(pendant.decode, data, heard_at=float(n))


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(
            bthome_payloads(),
            st.integers(0, 2**32 - 1),
            st.sampled_from([KEY, bytes(16)]),
            st.floats(0, 100),
        ),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_bthome_structured_service_data(
    adverts: list[tuple[bytes, int, bytes, float]], encrypted: bool
) -> None:
    pendant = BthomeDecoder(DeviceType.ALARM_BUTTON, MAC, KEY if encrypted else None)
    for body, counter, key, at in adverts:
        if encrypted:
            data = advertisement(body, bindkey=key, mac=MAC, counter=counter)
        else:
            data = advertisement(body)
        total(pendant.decode, data, heard_at=at)


# -- radio frames with a valid CRC, lock states, camera frames -------------------------
@given(st.integers(0, 0xFF), st.binary(min_size=5, max_size=40))
def test_radio_frames_with_valid_crcs(kind: int, rest: bytes) -> None:
    body = bytes([min(len(rest) + 1, 0xFF), kind]) + rest
    frame = total(decode_frame, SYNC + body + crc16(body).to_bytes(2, "big"))
    if frame is not None:
        assert_clean(frame.observations())  # type: ignore[attr-defined]


@given(st.binary(max_size=8))
def test_lock_states(data: bytes) -> None:
    status = total(decode_status, data)
    if status is not None:
        assert_clean(status.observations())  # type: ignore[attr-defined]


@settings(max_examples=60)
@given(
    arrays(
        st.sampled_from([np.uint8, np.float32, np.int16]),
        array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=40),
    )
)
def test_camera_frames_of_any_shape(frame: np.ndarray) -> None:
    meter = MotionMeter()
    for _ in range(2):
        reading = total(meter.measure, frame)
        if reading is not None:
            assert_clean(reading.observations())  # type: ignore[attr-defined]
