"""Socket options for the gateway's MQTT clients."""

from __future__ import annotations

import socket

import aiomqtt


def no_delay(client: aiomqtt.Client) -> None:
    """Send each small packet (a PUBACK, an event) at once.

    paho leaves Nagle's algorithm on; a small packet written right after another then
    waits for the peer's delayed ACK, about 40 ms on Linux, on the alarm's path.
    """
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
