"""NMEA 0183 from GPS receivers: bytes off a serial line -> sentences -> position fixes.

Only GGA and RMC carry what a GPS pendant needs (position, fix quality, satellites,
speed); other well-formed sentences (GSA, GSV, GLL, ZDA, proprietary) are accepted and
yield no fix. A sentence without a checksum, with a wrong one, or two sentences run
together by a noisy line, is a ``MalformedPayload``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import pynmea2

from ..errors import MalformedPayload, UnexpectedValue
from .common import Decoded, check_value, total

MAX_SENTENCE = 120  # NMEA says 82 characters; receivers exceed it a little, noise much more
KNOTS_TO_KMH = 1.852
# A fix good enough to place someone by (the receiver's config may say otherwise).
MIN_SATELLITES = 4
MAX_HDOP = 5.0
# An NMEA number is digits with an optional sign and decimal point; Python's float() also
# takes "nan", "inf", "1e999" and "1_0", which no receiver sends and no reading may be.
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_INTEGER = re.compile(r"\d{1,9}")


@dataclass(frozen=True, slots=True)
class GpsFix:
    """What one GGA or RMC sentence says. ``valid`` is False for a no-fix sentence."""

    sentence: str  # "GGA" or "RMC"
    valid: bool
    latitude: float | None
    longitude: float | None
    quality: int | None = None  # GGA: 0 none, 1 GPS, 2 DGPS, 6 estimated, ...
    satellites: int | None = None
    speed_kmh: float | None = None
    hdop: float | None = None  # GGA: horizontal dilution of precision (1 ideal, 20 poor)

    def __post_init__(self) -> None:
        check_value("GPS fix", [self.latitude, self.longitude, self.speed_kmh, self.hdop])
        if self.latitude is not None and not -90 <= self.latitude <= 90:
            raise UnexpectedValue(f"latitude {self.latitude:.4f} is not on Earth")
        if self.longitude is not None and not -180 <= self.longitude <= 180:
            raise UnexpectedValue(f"longitude {self.longitude:.4f} is not on Earth")

    def good(self, min_satellites: int = MIN_SATELLITES, max_hdop: float = MAX_HDOP) -> bool:
        """A fix good enough to place the resident by: valid, and where the sentence says
        (GGA), enough satellites and a small enough HDOP. One bad fix (three satellites,
        HDOP 7) can be hundreds of metres off: it must not take anyone out of a zone."""
        if not self.valid or self.latitude is None or self.longitude is None:
            return False
        if self.satellites is not None and self.satellites < min_satellites:
            return False
        return self.hdop is None or self.hdop <= max_hdop

    def observations(self, good: bool | None = None) -> Decoded:
        """Readings from a fix: its quality always, its position only when it is ``good``
        (by default: by this sentence alone, with the default limits)."""
        placed = self.good() if good is None else good and self.valid
        readings: list[tuple[str, float]] = [("gps_fix", 1.0 if self.valid else 0.0)]
        if placed and self.latitude is not None and self.longitude is not None:
            readings += [("latitude", self.latitude), ("longitude", self.longitude)]
        if self.satellites is not None:
            readings.append(("satellites", float(self.satellites)))
        if self.hdop is not None:
            readings.append(("hdop", self.hdop))
        if self.valid and self.speed_kmh is not None:
            readings.append(("speed_kmh", self.speed_kmh))
        return Decoded(readings=tuple(readings))


def checksum(body: str) -> str:
    """The XOR of the characters between ``$`` and ``*``, as two hex digits."""
    return f"{functools.reduce(lambda acc, ch: acc ^ ord(ch), body, 0):02X}"


def encode_sentence(body: str) -> bytes:
    """``GPGGA,...`` -> ``$GPGGA,...*hh\\r\\n`` (used by the simulator)."""
    return f"${body}*{checksum(body)}\r\n".encode("ascii")


def _coordinate(value: str, hemisphere: str, degree_digits: int) -> float | None:
    if not value or hemisphere not in ("N", "S", "E", "W"):
        return None
    head, tail = value[:degree_digits], value[degree_digits:]
    if not head.isdigit() or not _NUMBER.fullmatch(tail) or tail[0] in "+-":
        raise MalformedPayload(f"bad coordinate {value!r}")
    degrees, minutes = int(head), float(tail)
    if not 0 <= minutes < 60:
        raise MalformedPayload(f"bad coordinate {value!r}")
    decimal = degrees + minutes / 60
    return -decimal if hemisphere in ("S", "W") else decimal


def _int(value: str) -> int | None:
    if not value:
        return None
    if not _INTEGER.fullmatch(value):
        raise MalformedPayload(f"not a number: {value[:20]!r}")
    return int(value)


def _float(value: str) -> float | None:
    if not value:
        return None
    if not _NUMBER.fullmatch(value):
        raise MalformedPayload(f"not a number: {value[:20]!r}")
    return float(value)


@total("NMEA sentence")
def decode_sentence(line: bytes | str) -> GpsFix | None:
    """One sentence (with or without its line ending) -> a fix, or None for other types."""
    try:
        text = line.decode("ascii") if isinstance(line, bytes) else line
    except UnicodeDecodeError as exc:
        raise MalformedPayload("NMEA sentence is not ASCII") from exc
    text = text.strip("\r\n\x00 ")
    if len(text) > MAX_SENTENCE:
        raise MalformedPayload(f"sentence longer than {MAX_SENTENCE} characters")
    if not text.startswith("$"):
        raise MalformedPayload("sentence does not start with $")
    body, star, sent = text[1:].rpartition("*")
    if not star:
        raise MalformedPayload("sentence has no checksum")
    if "$" in body:
        raise MalformedPayload("two sentences run together")
    if sent.upper() != checksum(body):
        raise MalformedPayload(f"checksum {sent!r} does not match {checksum(body)}")
    fields = body.split(",")
    kind = fields[0][2:] if len(fields[0]) == 5 else ""
    if kind == "GGA":
        return _gga(fields)
    if kind == "RMC":
        return _rmc(fields)
    try:
        pynmea2.parse(text)  # well-formed enough for the library; no fix in it
    # pynmea2's errors are not all its own: "$PUBX*1F" (valid checksum) is an IndexError.
    except Exception as exc:
        name = type(exc).__name__
        raise MalformedPayload(f"unparseable {fields[0][:10]!r} sentence ({name})") from exc
    return None


def _gga(f: list[str]) -> GpsFix:
    if len(f) < 8:
        raise MalformedPayload("GGA sentence cut short")
    quality = _int(f[6])
    return GpsFix(
        "GGA",
        valid=bool(quality) and quality != 6,  # 6 = dead reckoning, not a position
        latitude=_coordinate(f[2], f[3], 2),
        longitude=_coordinate(f[4], f[5], 3),
        quality=quality,
        satellites=_int(f[7]),
        hdop=_float(f[8]) if len(f) > 8 else None,
    )


def _rmc(f: list[str]) -> GpsFix:
    if len(f) < 8:
        raise MalformedPayload("RMC sentence cut short")
    knots = _float(f[7])
    return GpsFix(
        "RMC",
        valid=f[2] == "A",
        latitude=_coordinate(f[3], f[4], 2),
        longitude=_coordinate(f[5], f[6], 3),
        speed_kmh=None if knots is None else round(knots * KNOTS_TO_KMH, 3),
    )


class NmeaLineReader:
    """Reassembles sentences from serial chunks of any size; pure, keeps no I/O.

    A run of bytes longer than any sentence without a line end is thrown away and
    counted in ``overlong``, so line noise cannot grow the buffer without bound.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.overlong = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        lines = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if line:
                lines.append(line)
        if len(self._buffer) > 4 * MAX_SENTENCE:
            self._buffer.clear()
            self.overlong += 1
        return lines
