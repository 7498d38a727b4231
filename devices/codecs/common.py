"""What every codec shares: the value objects it returns, and the guard that keeps it total.

A codec is total over its input: whatever bytes arrive, it returns a value or raises a
``CodecError`` with a reason, never anything else (``total``). JSON is bounded in size,
depth and number length before and while it is parsed, and refuses ``NaN`` / ``Infinity``
(``parse_json``). Nothing a device said enters a value object unchecked: readings are
finite numbers and device strings are text PostgreSQL and JSON can keep (no NUL, no lone
surrogate), checked once, by type, where ``Decoded`` and ``SignalState`` are built
(``check_value``).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, ParamSpec, TypeVar

from ..catalog import Signal
from ..errors import CodecError, MalformedPayload, UnexpectedValue

MAX_JSON_BYTES = 1024 * 1024  # the most any gateway is configured to take in one message
MAX_JSON_DEPTH = 16  # device messages are flat; the bridge's device list nests about 6 deep
MAX_JSON_DIGITS = 40  # no device counts past 128 bits; Python refuses past 4,300 anyway
MAX_TEXT = 256  # a device string (an action, a user name, a firmware build)
MAX_DETAIL_DEPTH = 4

P = ParamSpec("P")
R = TypeVar("R")


def total(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Make a codec function total: any exception on its input becomes a CodecError."""

    def wrap(decode: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(decode)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return decode(*args, **kwargs)
            except CodecError:
                raise
            # A codec is pure: whatever else fails inside it failed on its input (a library
            # that raises IndexError, a number too large for a float), so it is bad input.
            except Exception as exc:
                raise MalformedPayload(f"{what}: {type(exc).__name__}: {exc}"[:200]) from exc

        return guarded

    return wrap


# -- JSON -----------------------------------------------------------------------------
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(payload: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (strings do not count)."""
    brackets = _STRINGS.sub(b"", payload).translate(None, _NOT_BRACKETS)
    return max(accumulate(_STEP[b] for b in brackets), default=0)


def _refuse_constant(name: str) -> Any:
    raise MalformedPayload(f"JSON {name} is not a number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise UnexpectedValue(f"an integer of {len(text)} digits")
    return int(text)


# Most messages take the fast decoder (the C scanner's own numbers; a NaN or Infinity
# literal refused). Only text with a long run of digits pays for checking each integer.
# A number beyond a float (1e400) parses as infinity and is refused where values enter
# an observation (check_value, Decoded), like every other non-finite number.
_FAST = json.JSONDecoder(parse_constant=_refuse_constant)
_STRICT = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_bounded_int)
_DIGITS_ONLY = bytes(ord("0") if chr(b).isdigit() and b < 128 else ord(" ") for b in range(256))
_LONG_RUN = b"0" * (MAX_JSON_DIGITS + 1)


def _has_long_number(payload: bytes) -> bool:
    return _LONG_RUN in payload.translate(_DIGITS_ONLY)  # two passes in C, no regex


def parse_json(
    payload: bytes, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """JSON from a device, bounded in size and depth before it is parsed and in integer
    length while it is; NaN and Infinity refused. A float literal beyond range (1e400)
    comes out as infinity: values are checked where they enter an observation."""
    if len(payload) > max_bytes:
        raise MalformedPayload(f"JSON of {len(payload)} bytes (at most {max_bytes})")
    # Counting brackets is cheap; only a message with many of them is measured properly.
    if payload.count(b"[") + payload.count(b"{") > max_depth and json_depth(payload) > max_depth:
        raise MalformedPayload(f"JSON nested deeper than {max_depth}")
    decoder = _STRICT if _has_long_number(payload) else _FAST
    try:
        # As json.loads reads bytes (UTF-8, -16 or -32); a surrogate that gets through
        # is refused as text later, where strings enter an observation.
        return decoder.decode(payload.decode(json.detect_encoding(payload), "surrogatepass"))
    except CodecError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayload(f"not JSON: {exc}") from exc
    except (RecursionError, ValueError) as exc:
        raise MalformedPayload(f"JSON refused: {exc}"[:200]) from exc


# -- values ---------------------------------------------------------------------------
def _no_check(where: str, value: Any, depth: int) -> None:
    pass


def _check_text(where: str, value: str, depth: int = 0) -> None:
    if len(value) > MAX_TEXT:
        raise UnexpectedValue(f"{where}: text longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise UnexpectedValue(f"{where}: a NUL character in text")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: JSON allows it, UTF-8 does not
            raise UnexpectedValue(f"{where}: a lone surrogate in text") from exc


def _check_int(where: str, value: int, depth: int) -> None:
    if not -(2**63) <= value < 2**63:
        raise UnexpectedValue(f"{where}: an integer beyond 64 bits")


def _check_float(where: str, value: float, depth: int) -> None:
    if not math.isfinite(value):
        raise UnexpectedValue(f"{where}: {value} is not a finite number")


def _check_mapping(where: str, value: Mapping[Any, Any], depth: int) -> None:
    for key, item in value.items():
        if not isinstance(key, str):
            raise UnexpectedValue(f"{where}: a key that is not text")
        _check_text(where, key)
        check_value(f"{where}.{key}", item, depth + 1)


def _check_sequence(where: str, value: list[Any] | tuple[Any, ...], depth: int) -> None:
    for item in value:
        check_value(where, item, depth + 1)


# The kinds of value a device may put into an observation, and how each is checked.
# bool before int: a bool is an int to isinstance.
VALUE_CHECKS: tuple[tuple[type, Callable[[str, Any, int], None]], ...] = (
    (type(None), _no_check),
    (bool, _no_check),
    (int, _check_int),
    (float, _check_float),
    (str, _check_text),
    (Mapping, _check_mapping),
    (list, _check_sequence),
    (tuple, _check_sequence),
)


def check_value(where: str, value: object, depth: int = 0) -> None:
    """Raise UnexpectedValue unless ``value`` is something JSON and PostgreSQL keep as is."""
    if depth > MAX_DETAIL_DEPTH:
        raise UnexpectedValue(f"{where}: nested deeper than {MAX_DETAIL_DEPTH}")
    for kind, check in VALUE_CHECKS:
        if isinstance(value, kind):
            check(where, value, depth)
            return
    raise UnexpectedValue(f"{where}: a {type(value).__name__} is not a device value")


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

    def __post_init__(self) -> None:
        if self.detail:
            check_value("detail", self.detail)


@dataclass(frozen=True, slots=True)
class Decoded:
    readings: tuple[tuple[str, float], ...] = ()
    signals: tuple[SignalState, ...] = ()
    # The device's own message counter where it has one (radio SEQ, BTHome packet id):
    # a retransmission carries the same number, a new message the next one.
    sequence: int | None = None
    firmware: str | None = None  # where the message names it

    def __post_init__(self) -> None:
        for metric, value in self.readings:
            if type(value) is not float or not math.isfinite(value):  # the common case first
                if type(value) is not int:  # bool is not a reading either
                    raise UnexpectedValue(
                        f"reading {metric!r}: {value!r:.20} is not a finite number"
                    )
                _check_int(f"reading {metric!r}", value, 0)
        if self.sequence is not None:
            _check_int("sequence", self.sequence, 0)
        if self.firmware is not None:
            _check_text("firmware", self.firmware)
