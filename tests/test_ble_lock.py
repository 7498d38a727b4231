"""BLE locks over GATT: bleak's ``BleakClient`` through bleak-retry-connector, with the
lock's GATT server standing in at bleak's lowest seam, its client backend (there is no
radio here). Everything above it is the real code path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import pytest
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError

from devices import Event, Priority
from devices.codecs.blelock import (
    COMMAND_UUID,
    SERVICE_UUID,
    STATE_UUID,
    LockCause,
    LockState,
    LockStatus,
    encode_status,
)
from gateway import DropReason, GatewayConfig, InputCounters, Pipeline, Registry, Store
from gateway.transports.ble_lock import BleLockLink, LockLinkError

from .servers import wait_until

LOCK_MAC = "C4:7C:8D:6A:00:11"


class LockPeripheral:
    """The lock itself: its state, who is subscribed, the commands it was sent."""

    def __init__(self) -> None:
        self.status = LockStatus(LockState.LOCKED, 80, 0, LockCause.UNKNOWN)
        self.in_range = True
        self.commands: list[bytes] = []
        self.link: GattServer | None = None

    def notify(self, raw: bytes) -> None:
        assert self.link is not None and self.link.connected
        for callback in self.link.subscribers:
            callback(bytearray(raw))

    def change(self, state: LockState, cause: LockCause = LockCause.KEYPAD) -> None:
        s = self.status
        self.status = LockStatus(state, s.battery_pct, (s.seq + 1) % 256, cause)
        self.notify(encode_status(self.status))

    def walk_away(self) -> None:
        self.in_range = False
        if self.link is not None:
            self.link.lose()


class GattServer(BaseBleakClient):
    """bleak's client backend, answering as the lock's GATT server would."""

    peripheral: ClassVar[LockPeripheral]

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.get("disconnected_callback"),
            timeout=float(kwargs.get("timeout", 10.0)),
        )
        self.connected = False
        self.subscribers: list[NotifyCallback] = []

    @property
    def mtu_size(self) -> int:
        return 23

    @property
    def is_connected(self) -> bool:
        return self.connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if not self.peripheral.in_range:
            raise BleakError("le-connection-abort-by-local (out of range)")
        services = BleakGATTServiceCollection()
        service = BleakGATTService(None, 1, SERVICE_UUID)
        services.add_service(service)
        for handle, uuid, props in (
            (2, STATE_UUID, ["read", "notify"]),
            (4, COMMAND_UUID, ["write"]),
        ):
            char = BleakGATTCharacteristic(None, handle, uuid, props, lambda: 20, service)  # type: ignore[arg-type]
            services.add_characteristic(char)
        self.services = services
        self.connected = True
        self.subscribers = []
        self.peripheral.link = self

    def lose(self) -> None:
        self.connected = False
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        self.connected = False

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def unpair(self) -> None:
        return None

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        assert characteristic.uuid == STATE_UUID
        return bytearray(encode_status(self.peripheral.status))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        raise BleakError("no descriptors")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        if not self.connected:
            raise BleakError("Not connected")
        assert characteristic.uuid == COMMAND_UUID and response
        self.peripheral.commands.append(bytes(data))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        raise BleakError("no descriptors")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        assert characteristic.uuid == STATE_UUID
        self.subscribers.append(callback)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self.subscribers.clear()


Rig = tuple[BleLockLink, LockPeripheral, Callable[[], Any]]


@pytest.fixture
async def rig(store: Store) -> AsyncIterator[tuple[BleLockLink, LockPeripheral]]:
    config = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1"},
            "devices": [
                {
                    "id": "lock-9",
                    "transport": "ble_lock",
                    "type": "digital_lock",
                    "address": LOCK_MAC,
                    "home": "home-9",
                }
            ],
        }
    )
    registry = Registry(config.devices)
    pipeline = Pipeline("gw-1", registry, store, InputCounters())
    peripheral = LockPeripheral()
    peripheral.status = LockStatus(LockState.UNLOCKED, 80, 4, LockCause.MANUAL)
    backend = type("LockServer", (GattServer,), {"peripheral": peripheral})
    device = registry.get("lock-9")
    assert device is not None
    link = BleLockLink(device, pipeline, backend=backend)
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.connected.wait(), 10)
    yield link, peripheral
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def events(store: Store) -> list[Event]:
    return [p.event for p in await store.pending(100)]


async def test_connecting_reads_the_state_without_calling_it_an_opening(
    rig: tuple[BleLockLink, LockPeripheral], store: Store
) -> None:
    link, _ = rig
    await wait_until(lambda: link.device.status.battery_pct == 80)
    assert await events(store) == []  # it was already unlocked: not an opening now


async def test_openings_jams_and_low_battery_are_events(
    rig: tuple[BleLockLink, LockPeripheral], store: Store
) -> None:
    link, lock = rig
    lock.change(LockState.LOCKED, LockCause.AUTO_RELOCK)
    lock.change(LockState.UNLOCKED, LockCause.KEYPAD)
    lock.notify(encode_status(lock.status))  # the same notification twice (same seq)
    lock.change(LockState.JAMMED)
    lock.change(LockState.LOCKED)
    lock.status = LockStatus(LockState.LOCKED, 12, 20, LockCause.UNKNOWN)
    lock.notify(encode_status(lock.status))

    async def found() -> list[Event]:
        return await events(store)

    await wait_until(lambda: _count(found, 4))
    got = [(e.kind, e.priority, e.restore) for e in await events(store)]
    assert sorted(got, key=str) == sorted(
        [
            ("lock_opened", Priority.LOW, False),
            ("lock_jammed", Priority.NORMAL, False),
            ("lock_jammed", Priority.NORMAL, True),
            ("battery_low", Priority.NORMAL, False),
        ],
        key=str,
    )
    opened = next(e for e in await events(store) if e.kind == "lock_opened")
    assert opened.detail == {"cause": "keypad"}
    assert link.pipeline.counters.dropped[DropReason.DUPLICATE] == 1


async def _count(found: Callable[[], Any], n: int) -> bool:
    return len(await found()) >= n


async def test_a_command_reaches_the_lock_and_fails_clearly_without_a_link(
    rig: tuple[BleLockLink, LockPeripheral],
) -> None:
    link, lock = rig
    await link.command(b"signed-unlock-command")
    assert lock.commands == [b"signed-unlock-command"]
    with pytest.raises(LockLinkError, match="1-512 bytes"):
        await link.command(b"")
    lock.walk_away()
    await wait_until(lambda: not link.connected.is_set())
    with pytest.raises(LockLinkError, match="not connected"):
        await link.command(b"signed-unlock-command")


async def test_a_lost_link_is_connected_again(
    rig: tuple[BleLockLink, LockPeripheral], store: Store
) -> None:
    link, lock = rig
    lock.walk_away()
    await wait_until(lambda: not link.connected.is_set())
    await asyncio.sleep(0.5)  # out of range for a while: connect attempts fail
    assert link.connects == 1
    lock.in_range = True
    await asyncio.wait_for(link.connected.wait(), 20)
    assert link.connects == 2
    lock.change(LockState.LOCKED)
    lock.change(LockState.UNLOCKED, LockCause.REMOTE)
    await wait_until(lambda: _count(lambda: events(store), 1))
    assert [e.kind for e in await events(store)] == ["lock_opened"]


async def test_garbage_notifications_are_counted_not_fatal(
    rig: tuple[BleLockLink, LockPeripheral], store: Store
) -> None:
    link, lock = rig
    for raw in (b"", b"\x00", b"\x09\x50\x01\x00", b"\x00\xff\x01\x00", b"\x00" * 40):
        lock.notify(raw)
    lock.change(LockState.LOCKED)
    lock.change(LockState.UNLOCKED)
    await wait_until(lambda: _count(lambda: events(store), 1))
    dropped = link.pipeline.counters.dropped
    assert dropped[DropReason.MALFORMED] + dropped[DropReason.UNEXPECTED_VALUE] == 5
