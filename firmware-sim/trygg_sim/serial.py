"""Serial devices on pseudo-terminals: a social-alarm radio receiver and a GPS pendant.

Each one opens a pty and links a stable path to its slave side (as udev's
/dev/serial/by-id links do); the gateway opens that path with pyserial. ``unplug`` and
``plug`` pull the cable and put it back (a new pty behind the same path).
"""

from __future__ import annotations

import math
import os
import random
import tty
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devices.codecs.nmea import encode_sentence
from devices.codecs.radio import FrameType, RadioFrame, Trigger, encode_frame


class PtyPort:
    """The device end of a serial cable: bytes written here come out of ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._master: int | None = None
        self._slave: int | None = None
        self.bytes_sent = 0

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> None:
        if self._master is not None:
            return
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no line discipline: bytes pass as they are
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self.path.symlink_to(os.ttyname(self._slave))

    def unplug(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        self.path.unlink(missing_ok=True)

    def write(self, data: bytes) -> bool:
        """False when unplugged: what a device sends then is lost, as on a real cable."""
        if self._master is None:
            return False
        view = memoryview(data)
        while view:
            view = view[os.write(self._master, view) :]
        self.bytes_sent += len(data)
        return True


@dataclass
class RadioTransmitter:
    """One 869 MHz device (pendant, pull cord, smoke) as its receiver hears it."""

    address: int
    battery_pct: int = 100
    rssi_dbm: int = -70
    seq: int = 0

    def _frame(self, kind: FrameType, payload: bytes) -> bytes:
        self.seq = (self.seq + 1) % 256
        return encode_frame(RadioFrame(kind, self.address, self.seq, payload))

    def press(self, trigger: Trigger = Trigger.BUTTON, repeats: int = 3) -> bytes:
        """A press, sent ``repeats`` times with one sequence number, as radios do."""
        return self._frame(FrameType.ALARM, bytes([trigger])) * repeats

    def restore(self, trigger: Trigger) -> bytes:
        return self._frame(FrameType.RESTORE, bytes([trigger]))

    def check_in(self) -> bytes:
        rssi = self.rssi_dbm.to_bytes(1, "big", signed=True)
        return self._frame(FrameType.CHECK_IN, bytes([self.battery_pct]) + rssi)

    def low_battery(self) -> bytes:
        return self._frame(FrameType.LOW_BATTERY, bytes([self.battery_pct]))

    def tamper(self, active: bool) -> bytes:
        return self._frame(FrameType.TAMPER, bytes([1 if active else 0]))


@dataclass
class GpsWalk:
    """A GPS pendant's receiver: NMEA GGA and RMC once a second of simulated time.

    The wearer starts at ``home`` and walks ``bearing_deg`` at ``speed_kmh`` while
    ``walking``; ``indoors`` loses the fix. ``clock_drift_s`` is how wrong the receiver's
    clock is (the gateway must not order anything by it).
    """

    latitude: float
    longitude: float
    speed_kmh: float = 0.0
    bearing_deg: float = 0.0
    indoors: bool = False
    satellites: int = 8
    clock_drift_s: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def advance(self, seconds: float) -> None:
        if self.speed_kmh <= 0:
            return
        metres = self.speed_kmh / 3.6 * seconds
        bearing = math.radians(self.bearing_deg)
        self.latitude += metres * math.cos(bearing) / 111_320
        self.longitude += (
            metres * math.sin(bearing) / (111_320 * math.cos(math.radians(self.latitude)))
        )

    def sentences(self, now: datetime) -> bytes:
        t = now + timedelta(seconds=self.clock_drift_s)
        hhmmss = t.strftime("%H%M%S.00")
        if self.indoors:
            gga = f"GPGGA,{hhmmss},,,,,0,00,99.9,,M,,M,,"
            rmc = f"GPRMC,{hhmmss},V,,,,,,,{t:%d%m%y},,,N"
            return encode_sentence(gga) + encode_sentence(rmc)
        jitter = self.rng.gauss(0, 2.0) / 111_320  # a few metres of noise
        lat, lon = self.latitude + jitter, self.longitude + jitter
        sats = max(4, self.satellites + self.rng.randint(-1, 1))
        where = f"{_dm(lat, 2, 'NS')},{_dm(lon, 3, 'EW')}"
        gga = f"GPGGA,{hhmmss},{where},1,{sats:02d},0.9,30.0,M,0.0,M,,"
        knots = self.speed_kmh / 1.852
        rmc = f"GPRMC,{hhmmss},A,{where},{knots:.1f},{self.bearing_deg:.1f},{t:%d%m%y},,,A"
        return encode_sentence(gga) + encode_sentence(rmc)


def _dm(value: float, degree_digits: int, hemispheres: str) -> str:
    degrees = int(abs(value))
    minutes = (abs(value) - degrees) * 60
    return f"{degrees:0{degree_digits}d}{minutes:07.4f},{hemispheres[value < 0]}"


def line_noise(rng: random.Random, size: int = 40) -> bytes:
    """What a loose connector adds: random bytes, sometimes a broken sentence."""
    noise = bytes(rng.randrange(256) for _ in range(size))
    return noise + b"$GPGGA,1234*00\r\n"


def now_utc() -> datetime:
    return datetime.now(UTC)
