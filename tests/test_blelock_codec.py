"""The BLE lock state characteristic (docs/ble-lock.md): table cases, garbage, round trips."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import CodecError, MalformedPayload, Signal, UnexpectedValue
from devices.codecs.blelock import (
    LockCause,
    LockState,
    LockStatus,
    decode_status,
    encode_status,
)


def signals(raw: bytes, *, initial: bool = False) -> dict[Signal, bool]:
    decoded = decode_status(raw).observations(initial=initial)
    return {s.signal: s.active for s in decoded.signals}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x00\x50\x01\x04", {Signal.LOCK_JAMMED: False, Signal.BATTERY_LOW: False}),
        (
            b"\x01\x50\x02\x01",
            {Signal.LOCK_JAMMED: False, Signal.BATTERY_LOW: False, Signal.LOCK_OPENED: True},
        ),
        (b"\x02\x50\x03\x00", {Signal.LOCK_JAMMED: True, Signal.BATTERY_LOW: False}),
        (b"\x00\x0f\x04\x00", {Signal.LOCK_JAMMED: False, Signal.BATTERY_LOW: True}),
        (b"\x03\x10\x05\x02", {Signal.LOCK_JAMMED: False, Signal.BATTERY_LOW: False}),
    ],
)
def test_states(raw: bytes, expected: dict[Signal, bool]) -> None:
    assert signals(raw) == expected


def test_an_opening_carries_its_cause_and_sequence() -> None:
    decoded = decode_status(b"\x01\x50\x07\x02").observations()
    (opened,) = [s for s in decoded.signals if s.signal is Signal.LOCK_OPENED]
    assert opened.momentary and opened.detail == {"cause": "remote"}
    assert decoded.sequence == 7
    assert decoded.readings == (("battery_pct", 80.0),)


def test_the_state_read_on_connect_is_no_opening() -> None:
    decoded = decode_status(b"\x01\x50\x07\x02").observations(initial=True)
    assert Signal.LOCK_OPENED not in {s.signal for s in decoded.signals}
    assert decoded.sequence is None  # so it is never taken for a repeat of a real change


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", MalformedPayload),
        (b"\x00\x50\x01", MalformedPayload),
        (b"\x00\x50\x01\x00\x00", MalformedPayload),
        (b"\x09\x50\x01\x00", UnexpectedValue),
        (b"\x00\x65\x01\x00", UnexpectedValue),
        (b"\x00\x50\x01\x09", UnexpectedValue),
    ],
)
def test_garbage_is_a_codec_error(raw: bytes, error: type[CodecError]) -> None:
    with pytest.raises(error):
        decode_status(raw)


@given(st.binary(max_size=16))
def test_arbitrary_bytes_raise_only_codec_errors(raw: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_status(raw)


@given(
    st.sampled_from(LockState),
    st.integers(0, 100),
    st.integers(0, 255),
    st.sampled_from(LockCause),
)
def test_encode_decode_round_trip(
    state: LockState, battery: int, seq: int, cause: LockCause
) -> None:
    status = LockStatus(state, battery, seq, cause)
    assert decode_status(encode_status(status)) == status
