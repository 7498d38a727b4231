"""The radio receiver's framed serial protocol (docs/radio-protocol.md)."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import CodecError, MalformedPayload, Signal, UnexpectedValue
from devices.codecs.radio import (
    FrameType,
    RadioFrame,
    RadioFrameReader,
    Trigger,
    crc16,
    decode_frame,
    encode_frame,
)

PRESS = RadioFrame(FrameType.ALARM, 0x00A1B2C3, 7, bytes([Trigger.BUTTON]))


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1  # the catalogue check value


def test_a_press_on_the_wire() -> None:
    wire = encode_frame(PRESS)
    assert wire.hex() == "a55a0701" + "00a1b2c3" + "07" + "01" + f"{crc16(wire[2:-2]):04x}"
    assert decode_frame(wire) == PRESS


@pytest.mark.parametrize(
    ("frame", "signals", "readings"),
    [
        (PRESS, {(Signal.BUTTON_PRESS, True)}, {}),
        (RadioFrame(FrameType.ALARM, 1, 1, b"\x02"), {(Signal.FALL, True)}, {}),
        (RadioFrame(FrameType.ALARM, 1, 1, b"\x04"), {(Signal.SMOKE, True)}, {}),
        (RadioFrame(FrameType.RESTORE, 1, 2, b"\x04"), {(Signal.SMOKE, False)}, {}),
        (
            RadioFrame(FrameType.CHECK_IN, 1, 3, bytes([87, 0xB5])),
            set(),
            {"battery_pct": 87.0, "rssi_dbm": -75.0},
        ),
        (
            RadioFrame(FrameType.LOW_BATTERY, 1, 4, b"\x09"),
            {(Signal.BATTERY_LOW, True)},
            {"battery_pct": 9.0},
        ),
        (RadioFrame(FrameType.TAMPER, 1, 5, b"\x01"), {(Signal.TAMPER, True)}, {}),
    ],
)
def test_frames_say_what_the_catalog_understands(
    frame: RadioFrame, signals: set[tuple[Signal, bool]], readings: dict[str, float]
) -> None:
    decoded = decode_frame(encode_frame(frame)).observations()
    assert {(s.signal, s.active) for s in decoded.signals} == signals
    assert dict(decoded.readings) == readings


def test_a_press_is_momentary_and_carries_the_device_sequence() -> None:
    (press,) = PRESS.observations().signals
    assert press.momentary and press.detail == {"seq": 7, "trigger": "button"}


frames = st.builds(
    RadioFrame,
    st.sampled_from(list(FrameType)),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 255),
).map(lambda f: RadioFrame(f.type, f.address, f.seq, _payload(f.type, f.seq)))


def _payload(kind: FrameType, n: int) -> bytes:
    return {
        FrameType.ALARM: bytes([1 + n % 4]),
        FrameType.RESTORE: bytes([1 + n % 4]),
        FrameType.CHECK_IN: bytes([n % 101, n]),
        FrameType.LOW_BATTERY: bytes([n % 101]),
        FrameType.TAMPER: bytes([n % 2]),
    }[kind]


@given(st.lists(frames, max_size=20), st.binary(max_size=50), st.randoms(use_true_random=False))
def test_a_stream_with_noise_in_any_chunks_yields_every_frame(
    sent: list[RadioFrame], noise: bytes, rng: random.Random
) -> None:
    stream = b"".join(noise[: rng.randint(0, len(noise))] + encode_frame(f) for f in sent)
    reader = RadioFrameReader()
    got: list[RadioFrame] = []
    i = 0
    while i < len(stream):
        step = rng.randint(1, 16)
        got.extend(reader.feed(stream[i : i + step]))
        i += step
    # Noise may look like a frame only if it carries a valid CRC; every real frame is found.
    assert [f for f in got if f in sent] == sent


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_codec_errors(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_frame(data)
    reader = RadioFrameReader()
    reader.feed(data)
    assert len(reader._buffer) <= 3 + 38 + 2


def test_a_corrupted_frame_is_dropped_and_the_next_one_still_arrives() -> None:
    bad = bytearray(encode_frame(PRESS))
    bad[8] ^= 0xFF
    reader = RadioFrameReader()
    assert reader.feed(bytes(bad) + encode_frame(PRESS)) == [PRESS]
    assert reader.dropped["bad_crc"] == 1


@pytest.mark.parametrize(
    ("frame_bytes", "error"),
    [
        (b"", MalformedPayload),
        (b"\xa5\x5a\x03" + bytes(7), MalformedPayload),
        (encode_frame(PRESS)[:-1], MalformedPayload),
        (encode_frame(RadioFrame(FrameType.ALARM, 1, 1, b"\x09")), UnexpectedValue),
        (encode_frame(RadioFrame(FrameType.CHECK_IN, 1, 1, b"\xc8\x00")), UnexpectedValue),
        (encode_frame(RadioFrame(FrameType.TAMPER, 1, 1, b"\x01\x02")), UnexpectedValue),
    ],
)
def test_bad_frames_are_codec_errors(frame_bytes: bytes, error: type[CodecError]) -> None:
    with pytest.raises(error):
        decode_frame(frame_bytes)


def test_an_unknown_type_is_skipped_whole() -> None:
    unknown = bytearray(encode_frame(PRESS))
    unknown[3] = 0x7F
    unknown[-2:] = crc16(bytes(unknown[2:-2])).to_bytes(2, "big")
    reader = RadioFrameReader()
    assert reader.feed(bytes(unknown) + encode_frame(PRESS)) == [PRESS]
    assert reader.dropped["bad_payload"] == 1
