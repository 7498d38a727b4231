"""BLE devices that advertise BTHome v2, heard by a gateway's ``sim`` BLE backend, and
BLE locks whose GATT is served over loopback TCP to its ``sim_gatt_port`` backend.

The datagram format is the gateway's (docs/ble.md): one JSON object per advertisement,
sent over UDP to the gateway's ``[ble] sim_port``. The locks' protocol is in
docs/simulator.md ("BLE locks").
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.codecs.blelock import (
    COMMAND_UUID,
    STATE_UUID,
    LockCause,
    LockState,
    LockStatus,
    encode_status,
)

from .bthome import BTHOME_UUID, advertisement, objects

log = logging.getLogger("trygg.sim.ble")
MAX_GATT_LINE = 4096


@dataclass
class BleAdvertiser:
    """One BTHome device: its address, key, packet id and encryption counter."""

    address: str
    bindkey: bytes | None = None
    battery_pct: int = 100
    rssi_dbm: int = -65
    trigger_based: bool = False  # buttons sleep and wake to advertise
    packet_id: int = 0
    counter: int = 0
    state: dict[str, bool] = field(default_factory=dict)

    def _payload(self, *, button: str | None = None, new_packet: bool = True) -> bytes:
        if new_packet:
            self.packet_id = (self.packet_id + 1) % 256
        body = objects(
            packet_id=self.packet_id, battery=self.battery_pct, button=button, **self.state
        )
        self.counter = (self.counter + 1) % 2**32  # every advertisement, even a repeat
        return advertisement(
            body,
            trigger_based=self.trigger_based,
            bindkey=self.bindkey,
            mac=self.address,
            counter=self.counter,
        )

    def datagram(self, payload: bytes) -> bytes:
        return json.dumps(
            {
                "address": self.address,
                "rssi": self.rssi_dbm,
                "service_data": {BTHOME_UUID: payload.hex()},
            },
            separators=(",", ":"),
        ).encode()

    def press(self, action: str = "press", repeats: int = 3) -> list[bytes]:
        """A press, advertised ``repeats`` times under one packet id."""
        first = self._payload(button=action)
        again = [self._payload(button=action, new_packet=False) for _ in range(repeats - 1)]
        return [self.datagram(p) for p in [first, *again]]

    def report(self, **state: bool) -> bytes:
        """The current state (and any change in it) as a new packet."""
        self.state.update(state)
        return self.datagram(self._payload())


class BleAir:
    """The air between the simulated devices and one gateway's sim BLE backend."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent = 0

    def send(self, datagrams: list[bytes] | bytes) -> None:
        for datagram in [datagrams] if isinstance(datagrams, bytes) else datagrams:
            self._sock.sendto(datagram, self.address)
            self.sent += 1

    def close(self) -> None:
        self._sock.close()


class GattLock:
    """A BLE lock's firmware: its state, and how it takes a command written to it.

    ``mode``: ``obeys`` turns the bolt and notifies the new state (cause remote),
    ``jams`` notifies *jammed*, ``silent`` takes the write and does nothing."""

    def __init__(self, address: str, battery_pct: int = 100, mode: str = "obeys") -> None:
        self.address = address.upper()
        self.mode = mode
        self.status = LockStatus(LockState.LOCKED, battery_pct, 0, LockCause.UNKNOWN)
        self.commands: list[bytes] = []
        self.linked = True
        self._subscribers: set[Callable[[bytes], None]] = set()
        self._connections: set[asyncio.StreamWriter] = set()

    def change(self, state: LockState, cause: LockCause, battery_pct: int | None = None) -> None:
        s = self.status
        battery = s.battery_pct if battery_pct is None else battery_pct
        self.status = LockStatus(state, battery, (s.seq + 1) % 256, cause)
        for notify in list(self._subscribers):
            notify(encode_status(self.status))

    def command(self, data: bytes) -> None:
        self.commands.append(data)
        try:
            action = json.loads(data)["action"]
        except (ValueError, KeyError, TypeError):
            log.warning("lock %s: ignoring command %r", self.address, data[:80])
            return
        if self.mode == "silent" or action not in ("lock", "unlock"):
            return
        if self.mode == "jams":
            self.change(LockState.JAMMED, LockCause.REMOTE)
            return
        self.change(
            LockState.UNLOCKED if action == "unlock" else LockState.LOCKED, LockCause.REMOTE
        )

    def drop_links(self) -> None:
        """Out of range: every connection to it is lost."""
        for writer in list(self._connections):
            writer.close()


class GattServer:
    """The simulated locks' GATT over loopback TCP, for the gateway's ``[ble]
    sim_gatt_port`` backend (docs/simulator.md, "BLE locks"): one TCP connection is one
    BLE connection, lines of JSON."""

    def __init__(self, locks: list[GattLock]) -> None:
        self.locks = {lock.address: lock for lock in locks}
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_GATT_LINE)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for lock in self.locks.values():
                lock.drop_links()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lock: GattLock | None = None

        def send(message: dict[str, object]) -> None:
            if not writer.is_closing():
                writer.write(json.dumps(message).encode() + b"\n")

        def notify(value: bytes) -> None:
            send({"notify": STATE_UUID, "data": value.hex()})

        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    rid, op = int(request["id"]), str(request["op"])
                except (ValueError, KeyError, TypeError):
                    log.warning("GATT server: ignoring %r", line[:80])
                    continue
                if op == "connect":
                    lock = self.locks.get(str(request.get("address", "")).upper())
                    if lock is None or not lock.linked:
                        send({"id": rid, "error": "le-connection-abort-by-local (no such lock)"})
                        break
                    lock._connections.add(writer)
                    send({"id": rid, "ok": True})
                elif lock is None:
                    send({"id": rid, "error": "Not connected"})
                elif op == "read" and request.get("uuid") == STATE_UUID:
                    send({"id": rid, "ok": True, "data": encode_status(lock.status).hex()})
                elif op == "notify" and request.get("uuid") == STATE_UUID:
                    lock._subscribers.add(notify)
                    send({"id": rid, "ok": True})
                elif op == "write" and request.get("uuid") == COMMAND_UUID:
                    try:
                        data = bytes.fromhex(str(request.get("data", "")))
                    except ValueError:
                        send({"id": rid, "error": "bad data"})
                        continue
                    send({"id": rid, "ok": True})  # the write response, then the bolt turns
                    lock.command(data)
                else:
                    send({"id": rid, "error": f"unsupported {op}"})
                await writer.drain()
        except (OSError, ValueError) as exc:  # ValueError: a line past the limit
            log.debug("GATT connection: %s", exc)
        finally:
            if lock is not None:
                lock._subscribers.discard(notify)
                lock._connections.discard(writer)
            writer.close()
