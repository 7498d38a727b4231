"""Trygg BLE lock GATT protocol (docs/ble-lock.md): the lock's state characteristic.

STATE (read, notify), 4 bytes: state, battery %, sequence, cause.
COMMAND (write with response): opaque bytes the lock verifies itself (a command signed
by the dispatch service); the gateway passes them on and never builds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..catalog import Signal
from ..errors import MalformedPayload, UnexpectedValue
from .common import Decoded, SignalState, total

SERVICE_UUID = "6e0b0001-5f3a-4c8e-9d2b-7a1c0e5f2b10"
STATE_UUID = "6e0b0002-5f3a-4c8e-9d2b-7a1c0e5f2b10"
COMMAND_UUID = "6e0b0003-5f3a-4c8e-9d2b-7a1c0e5f2b10"
LOW_BATTERY_PCT = 15  # locks need the current to turn the bolt: warn early


class LockState(IntEnum):
    LOCKED = 0
    UNLOCKED = 1
    JAMMED = 2
    MOVING = 3


class LockCause(IntEnum):
    UNKNOWN = 0
    KEYPAD = 1
    REMOTE = 2  # a command through the gateway
    MANUAL = 3  # thumb turn or key from inside
    AUTO_RELOCK = 4


@dataclass(frozen=True, slots=True)
class LockStatus:
    state: LockState
    battery_pct: int
    seq: int
    cause: LockCause

    def observations(self, *, initial: bool = False) -> Decoded:
        """``initial`` for a state read on connecting: it says how the lock is, not that
        it just opened, so it raises no opening."""
        signals = [
            SignalState(Signal.LOCK_JAMMED, self.state is LockState.JAMMED),
            SignalState(Signal.BATTERY_LOW, self.battery_pct <= LOW_BATTERY_PCT),
        ]
        if self.state is LockState.UNLOCKED and not initial:
            detail = {"cause": self.cause.name.lower()}
            signals.append(SignalState(Signal.LOCK_OPENED, True, momentary=True, detail=detail))
        return Decoded(
            readings=(("battery_pct", float(self.battery_pct)),),
            signals=tuple(signals),
            sequence=None if initial else self.seq,
        )


def encode_status(status: LockStatus) -> bytes:
    return bytes([status.state, status.battery_pct, status.seq, status.cause])


@total("lock state")
def decode_status(data: bytes | bytearray) -> LockStatus:
    if len(data) != 4:
        raise MalformedPayload(f"lock state is 4 bytes, not {len(data)}")
    try:
        state = LockState(data[0])
        cause = LockCause(data[3])
    except ValueError as exc:
        raise UnexpectedValue(f"lock state {data[0]} / cause {data[3]}") from exc
    if data[1] > 100:
        raise UnexpectedValue(f"battery {data[1]} %")
    return LockStatus(state, data[1], data[2], cause)
