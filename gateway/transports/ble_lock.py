"""Digital locks on a BLE GATT link, through bleak and bleak-retry-connector.

One link per lock keeps a connection open, subscribes to the lock's state
notifications (docs/ble-lock.md) and reads the state once on every connect. A lost
link is connected again with backoff; bleak-retry-connector does the retries inside
one attempt that BlueZ needs. ``command`` passes an opaque signed command to the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any, cast

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from devices import CodecError, UnexpectedValue
from devices.codecs.blelock import (
    COMMAND_UUID,
    STATE_UUID,
    LockCause,
    LockState,
    LockStatus,
    decode_status,
)
from devices.wire import Command

from ..actions import ActResult
from ..backoff import Backoff
from ..config import GatewayConfig
from ..counters import DropReason
from ..registry import RegisteredDevice
from .plugin import Intake, TransportPlugin

log = logging.getLogger("trygg.gateway.ble_lock")

CONNECT_ATTEMPTS = 3
MAX_COMMAND = 512


class LockLinkError(Exception):
    """The lock is not connected, or it refused or lost a command."""


class BleLockLink:
    def __init__(
        self,
        device: RegisteredDevice,
        pipeline: Intake,
        *,
        backend: type[BaseBleakClient] | None = None,
    ) -> None:
        self.device = device
        self.pipeline = pipeline
        self.backend = backend  # None: the platform's (BlueZ); tests pass a GATT server
        self.connected = asyncio.Event()
        self.connects = 0
        self._client: BleakClient | None = None
        self._lost = asyncio.Event()
        self._notifications: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue(1000)
        self._watchers: list[asyncio.Queue[LockStatus]] = []
        self.source = f"ble_lock:{device.config.address}"

    async def command(self, payload: bytes, timeout_s: float = 10.0) -> None:
        """Write a command to the lock and wait for the lock's write response."""
        if not 1 <= len(payload) <= MAX_COMMAND:
            raise LockLinkError(f"a command is 1-{MAX_COMMAND} bytes")
        client = self._client
        if client is None or not self.connected.is_set():
            raise LockLinkError(f"lock {self.device.id} is not connected")
        try:
            async with asyncio.timeout(timeout_s):
                await client.write_gatt_char(COMMAND_UUID, payload, response=True)
        except (BleakError, TimeoutError) as exc:
            raise LockLinkError(f"lock {self.device.id}: command failed: {exc}") from exc

    async def run(self) -> None:
        consumer = asyncio.create_task(self._consume(), name=f"lock-{self.device.id}")
        try:
            await self._connect_forever()
        finally:
            consumer.cancel()

    async def _connect_forever(self) -> None:
        backoff = Backoff(first_s=1.0, cap_s=60.0)
        address = self.device.config.address
        options: dict[str, Any] = {} if self.backend is None else {"backend": self.backend}
        while True:
            self._lost.clear()
            try:
                client = await establish_connection(
                    BleakClient,
                    BLEDevice(address, self.device.id, None),
                    self.device.id,
                    disconnected_callback=self._disconnected,
                    max_attempts=CONNECT_ATTEMPTS,
                    **options,
                )
            except (BleakError, OSError, TimeoutError) as exc:
                delay = backoff.next_delay()
                log.warning(
                    "lock %s: cannot connect: %s; retrying in %.1f s", self.device.id, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            try:
                await client.start_notify(STATE_UUID, self._on_state)
                state = await client.read_gatt_char(STATE_UUID)
                self._notifications.put_nowait((bytes(state), True))
                self._client = client
                self.connects += 1
                self.connected.set()
                backoff.reset()
                log.info("lock %s connected", self.device.id)
                await self._lost.wait()
                log.warning("lock %s: link lost; connecting again", self.device.id)
            except (BleakError, OSError, TimeoutError) as exc:
                log.warning("lock %s: link failed: %s", self.device.id, exc)
                await asyncio.sleep(backoff.next_delay())
            finally:
                self.connected.clear()
                self._client = None
                try:
                    await client.disconnect()
                except (BleakError, OSError, TimeoutError) as exc:
                    log.debug("lock %s: disconnect: %s", self.device.id, exc)

    def _disconnected(self, _client: BleakClient) -> None:
        self._lost.set()

    def _on_state(self, _characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            self._notifications.put_nowait((bytes(data), False))
        except asyncio.QueueFull:
            self.pipeline.counters.drop(DropReason.QUEUE_FULL, self.source, "notifications")

    async def _consume(self) -> None:
        while True:
            data, initial = await self._notifications.get()
            try:
                status = decode_status(data)
            except UnexpectedValue as exc:
                self.pipeline.counters.drop(DropReason.UNEXPECTED_VALUE, self.source, str(exc))
                continue
            except CodecError as exc:
                self.pipeline.counters.drop(DropReason.MALFORMED, self.source, str(exc))
                continue
            if not initial:
                for watcher in self._watchers:
                    with contextlib.suppress(asyncio.QueueFull):
                        watcher.put_nowait(status)
            await self.pipeline.accept(
                self.device, status.observations(initial=initial), source=self.source
            )

    @contextlib.contextmanager
    def watch(self) -> Iterator[asyncio.Queue[LockStatus]]:
        """While open, every state the lock notifies."""
        queue: asyncio.Queue[LockStatus] = asyncio.Queue(100)
        self._watchers.append(queue)
        try:
            yield queue
        finally:
            self._watchers.remove(queue)


class BleLockActor:
    """Commands to a BLE lock: the signed command's JSON written to its command
    characteristic; the lock's state notification with cause *remote* confirms it."""

    def __init__(self, link: BleLockLink) -> None:
        self.link = link

    async def act(
        self, device: RegisteredDevice, command: Command, answer_within_s: float
    ) -> ActResult:
        payload = command.model_dump_json().encode()
        if len(payload) > MAX_COMMAND:
            return ActResult("failed", "too_large", f"{len(payload)} bytes; at most {MAX_COMMAND}")
        wanted = LockState.UNLOCKED if command.action == "unlock" else LockState.LOCKED
        deadline = asyncio.get_running_loop().time() + answer_within_s
        try:  # a link being connected again has the answer window to come back
            async with asyncio.timeout_at(deadline):
                await self.link.connected.wait()
        except TimeoutError:
            return ActResult("failed", "unreachable", f"lock {device.id} is not connected")
        try:
            async with asyncio.timeout_at(deadline):
                with self.link.watch() as states:
                    try:
                        await self.link.command(payload, answer_within_s)
                    except LockLinkError as exc:
                        return ActResult("failed", "unreachable", str(exc))
                    while True:
                        status = await states.get()
                        if status.state is LockState.JAMMED:
                            return ActResult("failed", "jammed", "the lock reports jammed")
                        if status.state is wanted and status.cause is LockCause.REMOTE:
                            return ActResult(
                                "done", None, f"the lock reports {wanted.name.lower()}"
                            )
        except TimeoutError:
            return ActResult(
                "failed", "no_answer", f"no state from the lock within {answer_within_s} s"
            )


def _link(config: GatewayConfig, device: RegisteredDevice, intake: Intake) -> BleLockLink:
    backend: type[BaseBleakClient] | None = None
    if config.ble is not None and config.ble.sim_gatt_port is not None:
        from .ble_sim import sim_gatt_backend

        backend = sim_gatt_backend(config.ble.sim_host, config.ble.sim_gatt_port)
    return BleLockLink(device, intake, backend=backend)


# A lock keeps a GATT link of its own; commands to it go through that link.
PLUGINS = {
    "ble_lock": TransportPlugin(
        "ble_lock",
        device_link=_link,
        actor=lambda link: BleLockActor(cast("BleLockLink", link)),
    )
}
