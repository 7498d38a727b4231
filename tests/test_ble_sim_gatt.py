"""The simulator's BLE lock GATT over loopback TCP, and the gateway's bleak backend for it:
both sides take garbage from the other without falling over."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from trygg_sim.ble import GattLock, GattServer

from devices.codecs.blelock import COMMAND_UUID, STATE_UUID, LockCause, LockState, decode_status
from gateway.transports.ble_sim import sim_gatt_backend

from .servers import free_port, wait_until

MAC = "A4:C1:38:00:00:01"


@pytest.fixture
async def server() -> AsyncIterator[tuple[GattServer, GattLock, int]]:
    lock = GattLock(MAC, battery_pct=77)
    gatt = GattServer([lock])
    port = free_port()
    await gatt.start("127.0.0.1", port)
    yield gatt, lock, port
    await gatt.close()


def client(port: int, on_lost: list[int] | None = None) -> BleakClient:
    told = on_lost if on_lost is not None else []
    return BleakClient(
        BLEDevice(MAC, "lock", None),
        disconnected_callback=lambda _c: told.append(1),
        backend=sim_gatt_backend("127.0.0.1", port),
        timeout=5.0,
    )


async def _talk(port: int, lines: list[bytes]) -> list[dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers: list[dict[str, object]] = []
    try:
        for line in lines:
            writer.write(line + b"\n")
        await writer.drain()
        while raw := await asyncio.wait_for(reader.readline(), 5):
            answers.append(json.loads(raw))
            if len(answers) == sum(1 for line in lines if b'"id"' in line):
                break
    finally:
        writer.close()
    return answers


async def test_the_gatt_server_answers_garbage_with_errors_and_keeps_serving(
    server: tuple[GattServer, GattLock, int],
) -> None:
    _, lock, port = server
    answers = await _talk(
        port,
        [
            b"not json",
            b"[1, 2]",
            b'{"op": "read"}',
            b'{"id": 1, "op": "read", "uuid": "' + STATE_UUID.encode() + b'"}',
            b'{"id": 2, "op": "connect", "address": "' + MAC.encode() + b'"}',
            b'{"id": 3, "op": "write", "uuid": "' + COMMAND_UUID.encode() + b'", "data": "zz"}',
            b'{"id": 4, "op": "teleport"}',
            b'{"id": 5, "op": "write", "uuid": "' + COMMAND_UUID.encode() + b'", "data": "00ff"}',
        ],
    )
    assert answers[0] == {"id": 1, "error": "Not connected"}
    assert answers[1] == {"id": 2, "ok": True}
    assert answers[2]["id"] == 3 and "error" in answers[2]
    assert answers[3]["id"] == 4 and "error" in answers[3]
    assert answers[4] == {"id": 5, "ok": True}
    assert lock.commands == [b"\x00\xff"]  # taken, and ignored: it is no command
    assert lock.status.state is LockState.LOCKED
    # An unknown lock is refused; a line past the limit ends that connection only.
    refused = await _talk(port, [b'{"id": 1, "op": "connect", "address": "00:00:00:00:00:00"}'])
    assert "error" in refused[0]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x" * 100_000 + b"\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    # And a real client still connects, reads, is notified and commands the lock.
    async with client(port) as ble:
        status = decode_status(await ble.read_gatt_char(STATE_UUID))
        assert (status.state, status.battery_pct) == (LockState.LOCKED, 77)
        seen: list[bytes] = []
        await ble.start_notify(STATE_UUID, lambda _c, data: seen.append(bytes(data)))
        await ble.write_gatt_char(COMMAND_UUID, b'{"action": "unlock"}', response=True)
        await wait_until(lambda: seen)
        status = decode_status(seen[0])
        assert (status.state, status.cause) == (LockState.UNLOCKED, LockCause.REMOTE)


async def test_the_backend_takes_garbage_from_the_server_and_a_lost_link_is_told() -> None:
    """A server that sends garbage before each answer, then hangs up on a write."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            for junk in (b"garbage", b"[]", b'{"notify": "x", "data": "zz"}', b'{"id": "q"}'):
                writer.write(junk + b"\n")
            writer.write(b'{"notify": "' + STATE_UUID.encode() + b'", "data": "not hex"}\n')
            if request["op"] == "write":
                writer.close()
                return
            data = {"data": "00500102"} if request["op"] == "read" else {}
            writer.write(json.dumps({"id": request["id"], "ok": True, **data}).encode() + b"\n")
            await writer.drain()

    port = free_port()
    srv = await asyncio.start_server(serve, "127.0.0.1", port)
    lost: list[int] = []
    try:
        ble = client(port, lost)
        await ble.connect()
        await ble.start_notify(STATE_UUID, lambda _c, _d: None)
        assert decode_status(await ble.read_gatt_char(STATE_UUID)).battery_pct == 0x50
        with pytest.raises(BleakError):
            await ble.write_gatt_char(COMMAND_UUID, b"{}", response=True)
        await wait_until(lambda: lost)
        assert not ble.is_connected
        await ble.disconnect()
    finally:
        srv.close()
        await srv.wait_closed()


async def test_no_server_is_a_bleak_error() -> None:
    with pytest.raises(BleakError, match="simulated GATT server"):
        await client(free_port()).connect()
