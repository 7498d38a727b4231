from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..catalog import Signal


@dataclass(frozen=True, slots=True)
class SignalState:
    """A signal as reported by one message.

    ``momentary`` signals (a button press, a lock opening) are occurrences each time
    they are seen; the others are states, and only a change of state means anything.
    """

    signal: Signal
    active: bool
    momentary: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decoded:
    readings: tuple[tuple[str, float], ...] = ()
    signals: tuple[SignalState, ...] = ()
    # The device's own message counter where it has one (radio SEQ, BTHome packet id):
    # a retransmission carries the same number, a new message the next one.
    sequence: int | None = None
    firmware: str | None = None  # where the message names it
