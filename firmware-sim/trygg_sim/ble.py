"""BLE devices that advertise BTHome v2, heard by a gateway's ``sim`` BLE backend.

The datagram format is the gateway's (docs/ble.md): one JSON object per advertisement,
sent over UDP to the gateway's ``[ble] sim_port``.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field

from .bthome import BTHOME_UUID, advertisement, objects


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
