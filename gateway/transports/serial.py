"""Serial ports: social-alarm radio receivers (docs/radio-protocol.md) and GPS receivers
(NMEA 0183), through pyserial-asyncio-fast.

A port that fails to open, or goes away (a USB receiver unplugged), is opened again by
path with backoff; plugged back in, it carries on. Name the port by a stable path
(``/dev/serial/by-id/...``) so a replug that gets a new ttyUSB number is still found.
If a port stays away for ``lost_after_s``, every device behind it gets a ``radio_lost``
technical event, and a restore when the port is back. A GPS receiver's positions are
held against its safe zone by the home rules (gateway/rules.py), not here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

import serial
import serial_asyncio_fast

from devices import CodecError, Signal, UnexpectedValue
from devices.codecs.nmea import MAX_HDOP, MIN_SATELLITES, NmeaLineReader, decode_sentence
from devices.codecs.radio import RadioFrameReader

from ..backoff import Backoff
from ..config import DeviceConfig, GatewayConfig, SerialPort, radio_address
from ..counters import DropReason
from ..registry import RegisteredDevice
from .plugin import Intake, LinkHealth, TransportPlugin

log = logging.getLogger("trygg.gateway.serial")

READ_SIZE = 4096


class SerialTransportError(Exception):
    """A serial port could not be opened or was lost."""


class PortUnplugged(SerialTransportError):
    """The port reported end of stream: the device was unplugged or closed."""


class SerialTransport:
    """One serial port and the decoder for the protocol it speaks."""

    def __init__(
        self,
        port: SerialPort,
        pipeline: Intake,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.pipeline = pipeline
        self._clock = clock
        self.connected = asyncio.Event()
        self.opens = 0
        self.unplugs = 0
        self.open_failures = 0
        self.lost = False  # devices behind the port have been reported radio lost
        self._radio = RadioFrameReader()
        self._radio_drops: Counter[str] = Counter()
        self._nmea = NmeaLineReader()
        self._nmea_overlong = 0
        # Whether the receiver's last GGA was a good fix: an RMC (which says nothing of
        # satellites or HDOP) places the resident only then. None: no GGA heard yet.
        self._gga_good: bool | None = None
        self.source = f"serial:{port.name}"
        self.name = f"serial-{port.name}"

    @property
    def ready(self) -> asyncio.Event:
        return self.connected

    def health(self) -> LinkHealth:
        name = self.port.name
        up = self.connected.is_set()
        problem = f"serial port {name} closed"
        return LinkHealth(("serial", name), "open" if up else "closed", up, problem, self.source)

    def summary(self) -> str:
        return ""

    async def run(self) -> None:
        backoff = Backoff(first_s=0.2, cap_s=5.0)
        away_since = self._clock()
        while True:
            try:
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.port.path, baudrate=self.port.speed
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                await self._away(away_since)
                delay = backoff.next_delay()
                self.open_failures += 1
                log.log(
                    logging.WARNING if self.open_failures % 50 == 1 else logging.DEBUG,
                    "serial %s (%s): cannot open: %s; retrying in %.1f s",
                    self.port.name,
                    self.port.path,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self.opens += 1
            self.open_failures = 0
            backoff.reset()
            self.connected.set()
            log.info(
                "serial %s open: %s at %d baud (%s)",
                self.port.name,
                self.port.path,
                self.port.speed,
                self.port.protocol,
            )
            if self.lost:
                await self._set_lost(False)
            try:
                await self._read(reader)
            except (serial.SerialException, OSError, PortUnplugged) as exc:
                self.unplugs += 1
                log.warning("serial %s lost (%s); opening it again", self.port.name, exc)
            finally:
                self.connected.clear()
                writer.close()
                away_since = self._clock()
                self._radio = RadioFrameReader()  # a half frame from before means nothing now
                self._nmea = NmeaLineReader()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            chunk = await reader.read(READ_SIZE)
            if not chunk:
                raise PortUnplugged("end of stream")
            await self.feed(chunk)

    async def _away(self, since: float) -> None:
        if not self.lost and self._clock() - since >= self.port.lost_after_s:
            await self._set_lost(True)

    async def _set_lost(self, lost: bool) -> None:
        self.lost = lost
        detail: dict[str, object] = {"port": self.port.name}
        for device in self._devices():
            device.status.radio_lost = lost
            await self.pipeline.raise_signal(device, Signal.RADIO_LOST, lost, detail)
        if lost:
            log.error(
                "serial %s away for %.0f s: devices behind it reported radio lost",
                self.port.name,
                self.port.lost_after_s,
            )

    def _devices(self) -> list[RegisteredDevice]:
        on_port = self.pipeline.devices(self.port.protocol)  # a protocol is its devices' transport
        return [d for d in on_port if getattr(d.config, "port", None) == self.port.name]

    # -- decoding ----------------------------------------------------------------------
    async def feed(self, chunk: bytes) -> None:
        if self.port.protocol == "radio":
            await self._feed_radio(chunk)
        else:
            await self._feed_nmea(chunk)

    async def _feed_radio(self, chunk: bytes) -> None:
        frames = self._radio.feed(chunk)
        counters = self.pipeline.counters
        for reason, total in self._radio.dropped.items():
            for _ in range(total - self._radio_drops[reason]):
                counters.drop(DropReason.MALFORMED, self.source, f"radio frame: {reason}")
            self._radio_drops[reason] = total
        for frame in frames:
            address = radio_address(self.port.name, frame.address)
            device = self.pipeline.device("radio", address)
            if device is None:
                said = f"radio {frame.type.name.lower().replace('_', ' ')} frame"
                await self.pipeline.discovered("radio", address, self.source, said)
                continue
            await self.pipeline.accept(device, frame.observations(), source=self.source)

    async def _feed_nmea(self, chunk: bytes) -> None:
        counters = self.pipeline.counters
        lines = self._nmea.feed(chunk)
        if self._nmea.overlong != self._nmea_overlong:
            self._nmea_overlong = self._nmea.overlong
            counters.drop(DropReason.OVERSIZED, self.source, "noise without line ends")
        device = self.pipeline.device("nmea", self.port.name)
        for line in lines:
            try:
                fix = decode_sentence(line)
            except UnexpectedValue as exc:
                counters.drop(DropReason.UNEXPECTED_VALUE, self.source, str(exc))
                continue
            except CodecError as exc:
                counters.drop(DropReason.MALFORMED, self.source, str(exc))
                continue
            if device is None:
                await self.pipeline.discovered("nmea", self.port.name, self.source, "NMEA 0183")
                continue
            if fix is None:
                self.pipeline.seen(device)  # a well-formed sentence: the receiver is alive
                continue
            config = device.config
            limits = (
                getattr(config, "min_satellites", MIN_SATELLITES),
                getattr(config, "max_hdop", MAX_HDOP),
            )
            if fix.sentence == "GGA":
                good = self._gga_good = fix.good(*limits)
            else:
                good = fix.good(*limits) and self._gga_good is not False
            await self.pipeline.accept(device, fix.observations(good), source=self.source)


def _ports(protocol: str) -> Callable[[GatewayConfig, Intake], Sequence[SerialTransport]]:
    def links(config: GatewayConfig, intake: Intake) -> Sequence[SerialTransport]:
        return [SerialTransport(p, intake) for p in config.serial if p.protocol == protocol]

    return links


def _port_configured(config: GatewayConfig, device: DeviceConfig) -> str | None:
    ports = {p.name for p in config.serial}
    port = getattr(device, "port", None)
    return None if port in ports else f"no [[serial]] port named {port!r} in the gateway's config"


# A radio receiver's and a GPS receiver's devices: one link per [[serial]] port.
PLUGINS = {
    name: TransportPlugin(name, links=_ports(name), pairing=_port_configured)
    for name in ("radio", "nmea")
}
