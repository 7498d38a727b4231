"""BLE: BTHome v2 advertisements through a bleak scanner.

bleak calls ``on_advertisement`` for every advertisement heard; that callback only
filters and queues (it runs in the event loop and must not wait), and a consumer task
decodes and hands each to the pipeline. A scanner that has heard nothing for
``quiet_restart_s`` is stopped and started again: BlueZ scanners are known to stall.

With ``backend = "sim"`` the scanner is bleak's own ``BleakScanner`` with a backend that
receives advertisements from the simulator over UDP instead of from a radio; everything
from the detection callback on is the same code. Datagram format: docs/ble.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from devices import CodecError, Repeated, Replayed, UnexpectedValue
from devices.codecs import parse_json
from devices.codecs.bthome import BTHOME_UUID, BthomeDecoder

from ..backoff import Backoff
from ..config import BleDevice, BleSection, DeviceConfig, GatewayConfig
from ..counters import DropReason
from ..store import StoreError
from .plugin import Intake, LinkHealth, TransportPlugin

log = logging.getLogger("trygg.gateway.ble")

MAX_DATAGRAM = 2048


class SimScanner(BaseBleakScanner):
    """A bleak scanner backend fed over UDP by the simulator: there is no radio here."""

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        sim_host: str = "127.0.0.1",
        sim_port: int = 9750,
        **_backend_options: object,  # bleak passes its platform options (bluez=, cb=)
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self.host = sim_host
        self.port = sim_port
        self.bad_datagrams = 0
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def bound_port(self) -> int | None:
        if self._transport is None:
            return None
        port: int = self._transport.get_extra_info("sockname")[1]
        return port

    async def start(self) -> None:
        self.seen_devices = {}
        loop = asyncio.get_running_loop()
        scanner = self

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                scanner._received(data)

        try:
            self._transport, _ = await loop.create_datagram_endpoint(
                Receiver, local_addr=(self.host, self.port)
            )
        except OSError as exc:
            raise BleakError(
                f"sim scanner cannot listen on {self.host}:{self.port}: {exc}"
            ) from exc

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _received(self, data: bytes) -> None:
        try:
            device, advertisement = parse_sim_advertisement(data)
        except ValueError as exc:
            self.bad_datagrams += 1
            if self.bad_datagrams == 1 or self.bad_datagrams % 1000 == 0:
                log.warning(
                    "sim BLE: dropped a bad datagram (%d so far): %s", self.bad_datagrams, exc
                )
            return
        if not self.is_allowed_uuid(advertisement.service_uuids):
            return
        device = self.create_or_update_device(
            device.address, device.address, device.name, None, advertisement
        )
        self.call_detection_callbacks(device, advertisement)


def parse_sim_advertisement(data: bytes) -> tuple[BLEDevice, AdvertisementData]:
    """One datagram of the simulator: a JSON object describing one advertisement."""
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"{len(data)} bytes")
    raw = parse_json(data, max_depth=4)  # a CodecError is a ValueError
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    address, name, rssi = raw.get("address"), raw.get("name"), raw.get("rssi", -127)
    service_data = raw.get("service_data", {})
    if not isinstance(address, str) or not 1 <= len(address) <= 64:
        raise ValueError("address must be a string")
    if name is not None and not isinstance(name, str):
        raise ValueError("name must be a string")
    if not isinstance(rssi, int) or isinstance(rssi, bool) or not -127 <= rssi <= 20:
        raise ValueError("rssi must be an integer in dBm")
    if not isinstance(service_data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in service_data.items()
    ):
        raise ValueError("service_data maps UUID strings to hex strings")
    try:
        decoded = {uuid.lower(): bytes.fromhex(hex_) for uuid, hex_ in service_data.items()}
    except ValueError as exc:
        raise ValueError("service_data values must be hex") from exc
    advertisement = AdvertisementData(
        local_name=name,
        manufacturer_data={},
        service_data=decoded,
        service_uuids=list(decoded),
        tx_power=None,
        rssi=rssi,
        platform_data=(),
    )
    return BLEDevice(address.upper(), name, None), advertisement


def sim_advertisement(
    address: str, service_data: bytes, *, rssi: int = -60, name: str = ""
) -> bytes:
    """The datagram the simulator sends for one BTHome advertisement."""
    body: dict[str, object] = {
        "address": address,
        "rssi": rssi,
        "service_data": {BTHOME_UUID: service_data.hex()},
    }
    if name:
        body["name"] = name
    return json.dumps(body, separators=(",", ":")).encode()


Advertisement = tuple[str, bytes, float, str, float]  # address, data, rssi, name, heard at


class BleTransport:
    def __init__(
        self,
        settings: BleSection,
        pipeline: Intake,
        *,
        clock: Any = time.monotonic,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self._clock = clock
        self._queue: asyncio.Queue[Advertisement] = asyncio.Queue(settings.max_queue)
        self.scanning = asyncio.Event()
        self.restarts = 0
        self.internal_errors = 0
        self.last_heard = clock()
        self.scanner: BleakScanner | None = None
        self._heard = asyncio.Event()
        self.name = "ble"

    @property
    def ready(self) -> asyncio.Event:
        return self.scanning

    def health(self) -> LinkHealth:
        up = self.scanning.is_set()
        state = "scanning" if up else "not scanning"
        return LinkHealth(("ble",), state, up, "BLE not scanning", "ble")

    def summary(self) -> str:
        return ""

    # -- called by bleak, in the event loop: cheap, never waits ------------------------
    def on_advertisement(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        self.last_heard = self._clock()
        self._heard.set()
        data = advertisement.service_data.get(BTHOME_UUID)
        if data is None:
            return  # not BTHome (phones, headphones, beacons): none of ours
        address, rssi, name = device.address.upper(), float(advertisement.rssi), device.name or ""
        item = (address, bytes(data), rssi, name, self.last_heard)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.pipeline.counters.drop(DropReason.QUEUE_FULL, "ble", "advertisement queue full")

    # -- the consumer ------------------------------------------------------------------
    async def handle(
        self, address: str, data: bytes, rssi: float, name: str = "", heard_at: float = 0.0
    ) -> None:
        source = f"ble:{address}"
        device = self.pipeline.device("ble", address)
        if device is None:
            await self.pipeline.discovered("ble", address, source, "BTHome advertisement")
            return
        config = device.config
        if not isinstance(config, BleDevice):  # pragma: no cover - registry keys by transport
            return
        decoder = device.codec
        if not isinstance(decoder, BthomeDecoder):
            decoder = device.codec = BthomeDecoder(config.type, address, config.key)
        counters = self.pipeline.counters
        try:
            decoded = decoder.decode(data, name, heard_at=heard_at)
        except Replayed as exc:
            counters.drop(DropReason.REPLAYED, source, str(exc))
            return
        except Repeated as exc:
            # Not taken as a sign of life: a replayed last advertisement must not hide a
            # device that went silent (a real one sends new packets every check-in).
            counters.drop(DropReason.DUPLICATE, source, str(exc))
            return
        except UnexpectedValue as exc:
            counters.drop(DropReason.UNEXPECTED_VALUE, source, str(exc))
            return
        except CodecError as exc:
            counters.drop(DropReason.MALFORMED, source, str(exc))
            return
        digest = hashlib.blake2b(data, digest_size=16).digest()
        await self.pipeline.accept(device, decoded, digest=digest, rssi=rssi, source=source)

    async def _consume(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self.handle(*item)
            except StoreError as exc:
                # Devices repeat what matters (a pendant sends a press several times);
                # the store's own retry is what saves the alarm.
                log.error("could not store BLE input from %s: %s", item[0], exc)
            except Exception as exc:  # a bug on one advertisement must not stop the rest
                self.internal_errors += 1
                counters = self.pipeline.counters
                counters.drop(DropReason.INTERNAL_ERROR, f"ble:{item[0]}", repr(exc), exc)

    # -- the scanner -------------------------------------------------------------------
    def _scanner(self) -> BleakScanner:
        s = self.settings
        if s.backend == "sim":
            return BleakScanner(
                self.on_advertisement,
                scanning_mode=s.scanning_mode,
                backend=SimScanner,
                sim_host=s.sim_host,
                sim_port=s.sim_port,
            )
        bluez: Any = {"adapter": s.adapter} if s.adapter else {}
        return BleakScanner(self.on_advertisement, scanning_mode=s.scanning_mode, bluez=bluez)

    async def run(self) -> None:
        consumer = asyncio.create_task(self._consume(), name="ble-consumer")
        try:
            await self._scan_forever()
        finally:
            consumer.cancel()

    async def _scan_forever(self) -> None:
        backoff = Backoff()
        quiet = self.settings.quiet_restart_s
        while True:
            scanner = self._scanner()
            try:
                await scanner.start()
            except (TimeoutError, BleakError, OSError, ValueError, RuntimeError) as exc:
                # dbus-fast raises its own errors for a missing BlueZ; they carry a message.
                delay = backoff.next_delay()
                log.warning(
                    "BLE scanner (%s) did not start: %s; retrying in %.1f s",
                    self.settings.backend,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self.scanner = scanner
            self.scanning.set()
            self.last_heard = self._clock()
            log.info("BLE scanning (%s backend)", self.settings.backend)
            try:
                while True:
                    self._heard.clear()
                    try:
                        await asyncio.wait_for(self._heard.wait(), quiet)
                    except TimeoutError:
                        break
                self.restarts += 1
                log.warning(
                    "BLE: nothing heard for %.0f s; restarting the scanner (restart %d)",
                    quiet,
                    self.restarts,
                )
                backoff.reset()
            finally:
                self.scanning.clear()
                self.scanner = None
                try:
                    await scanner.stop()
                except (TimeoutError, BleakError, OSError) as exc:
                    log.warning("BLE scanner did not stop cleanly: %s", exc)


def _scanner(config: GatewayConfig, intake: Intake) -> Sequence[BleTransport]:
    return [BleTransport(config.ble or BleSection(), intake)]


def _scanning(config: GatewayConfig, _device: DeviceConfig) -> str | None:
    if config.ble_enabled:
        return None
    return "BLE is not enabled on this gateway (add a [ble] section)"


# BTHome devices: one scanner for all of them, started by [ble] or by a BLE device.
PLUGINS = {"ble": TransportPlugin("ble", links=_scanner, pairing=_scanning)}
