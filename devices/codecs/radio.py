"""The framed serial protocol of 869 MHz social-alarm radio receivers (docs/radio-protocol.md)."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import IntEnum

from ..catalog import Signal
from ..errors import CodecError, MalformedPayload, UnexpectedValue
from .common import Decoded, SignalState, total

SYNC = b"\xa5\x5a"
HEADER = 6  # TYPE + ADDR + SEQ
MAX_PAYLOAD = 32
MAX_FRAME = 2 + 1 + HEADER + MAX_PAYLOAD + 2


class FrameType(IntEnum):
    ALARM = 0x01
    CHECK_IN = 0x02
    LOW_BATTERY = 0x03
    TAMPER = 0x04
    RESTORE = 0x05


class Trigger(IntEnum):
    BUTTON = 0x01
    FALL = 0x02
    PULL_CORD = 0x03
    SMOKE = 0x04


TRIGGER_SIGNALS = {
    Trigger.BUTTON: Signal.BUTTON_PRESS,
    Trigger.FALL: Signal.FALL,
    Trigger.PULL_CORD: Signal.BUTTON_PRESS,
    Trigger.SMOKE: Signal.SMOKE,
}
PAYLOAD_SIZES = {
    FrameType.ALARM: 1,
    FrameType.CHECK_IN: 2,
    FrameType.LOW_BATTERY: 1,
    FrameType.TAMPER: 1,
    FrameType.RESTORE: 1,
}


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@dataclass(frozen=True, slots=True)
class RadioFrame:
    type: FrameType
    address: int
    seq: int
    payload: bytes = b""

    def observations(self) -> Decoded:
        """What the frame says, in the codec vocabulary the pipeline speaks."""
        return replace(self._observations(), sequence=self.seq)

    def _observations(self) -> Decoded:
        p = self.payload
        detail = {"seq": self.seq}
        if self.type is FrameType.ALARM:
            trigger = Trigger(p[0])
            momentary = trigger is not Trigger.SMOKE
            state = SignalState(
                TRIGGER_SIGNALS[trigger],
                True,
                momentary,
                {**detail, "trigger": trigger.name.lower()},
            )
            return Decoded(signals=(state,))
        if self.type is FrameType.CHECK_IN:
            return Decoded(
                readings=(
                    ("battery_pct", float(p[0])),
                    ("rssi_dbm", float(struct.unpack("b", p[1:2])[0])),
                )
            )
        if self.type is FrameType.LOW_BATTERY:
            return Decoded(
                readings=(("battery_pct", float(p[0])),),
                signals=(SignalState(Signal.BATTERY_LOW, True),),
            )
        if self.type is FrameType.TAMPER:
            return Decoded(signals=(SignalState(Signal.TAMPER, p[0] == 1),))
        trigger = Trigger(p[0])
        return Decoded(
            signals=(
                SignalState(
                    TRIGGER_SIGNALS[trigger],
                    False,
                    detail={**detail, "trigger": trigger.name.lower()},
                ),
            )
        )


def encode_frame(frame: RadioFrame) -> bytes:
    if not 0 <= frame.address <= 0xFFFFFFFF or not 0 <= frame.seq <= 0xFF:
        raise ValueError("address is 32 bits and seq 8 bits")
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"payload over {MAX_PAYLOAD} bytes")
    body = bytes([HEADER + len(frame.payload), frame.type]) + frame.address.to_bytes(4, "big")
    body += bytes([frame.seq]) + frame.payload
    return SYNC + body + crc16(body).to_bytes(2, "big")


def _validate(frame_type: int, payload: bytes) -> FrameType:
    try:
        kind = FrameType(frame_type)
    except ValueError as exc:
        raise UnexpectedValue(f"unknown frame type 0x{frame_type:02x}") from exc
    if len(payload) != PAYLOAD_SIZES[kind]:
        raise UnexpectedValue(f"{kind.name} payload of {len(payload)} bytes")
    if (
        kind in (FrameType.ALARM, FrameType.RESTORE)
        and payload[0] not in Trigger._value2member_map_
    ):
        raise UnexpectedValue(f"unknown trigger 0x{payload[0]:02x}")
    if kind in (FrameType.CHECK_IN, FrameType.LOW_BATTERY) and payload[0] > 100:
        raise UnexpectedValue(f"battery {payload[0]} %")
    if kind is FrameType.TAMPER and payload[0] not in (0, 1):
        raise UnexpectedValue("tamper is 0 or 1")
    return kind


@total("radio frame")
def decode_frame(data: bytes) -> RadioFrame:
    """Exactly one frame, SYNC to CRC."""
    if len(data) < 2 + 1 + HEADER + 2 or data[:2] != SYNC:
        raise MalformedPayload("not a radio frame (sync or size)")
    length = data[2]
    if not HEADER <= length <= HEADER + MAX_PAYLOAD or len(data) != 3 + length + 2:
        raise MalformedPayload(f"bad length {length}")
    body = data[2 : 3 + length]
    if int.from_bytes(data[3 + length :], "big") != crc16(body):
        raise MalformedPayload("bad CRC")
    payload = bytes(body[7:])
    kind = _validate(body[1], payload)
    return RadioFrame(kind, int.from_bytes(body[2:6], "big"), body[6], payload)


@dataclass
class RadioFrameReader:
    """Frames out of a serial byte stream of any chunking; resynchronises after noise."""

    dropped: Counter[str] = field(default_factory=Counter)
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, chunk: bytes) -> list[RadioFrame]:
        self._buffer += chunk
        frames: list[RadioFrame] = []
        while True:
            start = self._buffer.find(SYNC)
            if start < 0:
                del self._buffer[: max(0, len(self._buffer) - 1)]  # keep a possible half SYNC
                return frames
            del self._buffer[:start]
            if len(self._buffer) < 3:
                return frames
            length = self._buffer[2]
            if not HEADER <= length <= HEADER + MAX_PAYLOAD:
                self.dropped["bad_length"] += 1
                del self._buffer[:1]
                continue
            size = 3 + length + 2
            if len(self._buffer) < size:
                return frames
            candidate = bytes(self._buffer[:size])
            try:
                frames.append(decode_frame(candidate))
            except UnexpectedValue:
                self.dropped["bad_payload"] += 1
                del self._buffer[:size]  # a valid frame we do not understand: skip it whole
                continue
            except CodecError:
                self.dropped["bad_crc"] += 1
                del self._buffer[:1]
                continue
            del self._buffer[:size]
