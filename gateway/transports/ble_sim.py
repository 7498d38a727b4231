"""A bleak client backend for the simulator's BLE locks (``[ble] sim_gatt_port``).

There is no radio in a simulation: the simulator serves its locks' GATT over a small
loopback TCP protocol (docs/simulator.md, "BLE locks"), and this backend speaks it at
bleak's lowest seam, so that ``BleakClient``, bleak-retry-connector and ``BleLockLink``
above it are the real code path. One TCP connection is one BLE connection; the server
closing it is the link lost.

Lines of JSON. The client asks ``{"id": n, "op": "connect" | "read" | "write" | "notify",
"address": MAC, "uuid": ..., "data": hex}`` and the server answers ``{"id": n, "ok": true,
"data": hex}`` or ``{"id": n, "error": "..."}``; notifications come as ``{"notify": uuid,
"data": hex}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, ClassVar

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError

from devices.codecs.blelock import COMMAND_UUID, SERVICE_UUID, STATE_UUID

log = logging.getLogger("trygg.gateway.ble_sim")

MAX_LINE = 4096


class SimGattClient(BaseBleakClient):
    """bleak's client backend, reaching a simulated lock over loopback TCP."""

    host: ClassVar[str] = "127.0.0.1"
    port: ClassVar[int] = 9751

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.get("disconnected_callback"),
            timeout=float(kwargs.get("timeout", 10.0)),
        )
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._subscribers: dict[str, NotifyCallback] = {}

    @property
    def mtu_size(self) -> int:
        return 247

    @property
    def is_connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise BleakError(f"simulated GATT server {self.host}:{self.port}: {exc}") from exc
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader), name="ble-sim-gatt")
        await self._request({"op": "connect", "address": self.address})
        services = BleakGATTServiceCollection()
        service = BleakGATTService(None, 1, SERVICE_UUID)
        services.add_service(service)
        for handle, uuid, props in (
            (2, STATE_UUID, ["read", "notify"]),
            (4, COMMAND_UUID, ["write"]),
        ):
            services.add_characteristic(
                BleakGATTCharacteristic(None, handle, uuid, props, lambda: 512, service)  # type: ignore[arg-type]
            )
        self.services = services

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                if len(line) > MAX_LINE:
                    log.warning("simulated GATT server sent an oversized line")
                    continue
                try:
                    message = json.loads(line)
                    if "notify" in message:
                        callback = self._subscribers.get(str(message["notify"]))
                        if callback is not None:
                            callback(bytearray.fromhex(str(message["data"])))
                        continue
                    future = self._pending.pop(int(message["id"]), None)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("simulated GATT server sent garbage: %s", exc)
                    continue
                if future is not None and not future.done():
                    future.set_result(message)
        except OSError as exc:
            log.debug("simulated GATT link: %s", exc)
        finally:
            self._lost()

    def _lost(self) -> None:
        writer, self._writer = self._writer, None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BleakError("Not connected"))
        self._pending.clear()
        if writer is not None:
            writer.close()
            if self._disconnected_callback is not None:
                self._disconnected_callback()

    async def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise BleakError("Not connected")
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        try:
            writer.write(json.dumps({"id": self._next_id, **request}).encode() + b"\n")
            await writer.drain()
            async with asyncio.timeout(self._timeout):
                answer = await future
        except (OSError, TimeoutError) as exc:
            raise BleakError(f"simulated GATT {request['op']}: {exc!r}") from exc
        finally:
            self._pending.pop(self._next_id, None)
        if "error" in answer:
            raise BleakError(str(answer["error"]))
        return answer

    async def disconnect(self) -> None:
        task, self._reader_task = self._reader_task, None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def unpair(self) -> None:
        return None

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        answer = await self._request({"op": "read", "uuid": characteristic.uuid})
        return bytearray.fromhex(str(answer.get("data", "")))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        raise BleakError("the simulated lock has no descriptors")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        request = {"op": "write", "uuid": characteristic.uuid, "data": bytes(data).hex()}
        await self._request(request)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        raise BleakError("the simulated lock has no descriptors")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        await self._request({"op": "notify", "uuid": characteristic.uuid})
        self._subscribers[characteristic.uuid] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._subscribers.pop(characteristic.uuid, None)


def sim_gatt_backend(host: str, port: int) -> type[BaseBleakClient]:
    """The backend class that reaches the simulator's GATT server at ``host:port``."""
    return type("SimGattClient", (SimGattClient,), {"host": host, "port": port})
