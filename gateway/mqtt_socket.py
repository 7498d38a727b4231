"""How the gateway's MQTT clients reach a broker: address, credentials, TLS, socket options."""

from __future__ import annotations

import socket
import ssl
from typing import TypedDict

import aiomqtt

from devices.brokertls import client_context, warn_plain

from .config import BrokerSection


class BrokerOptions(TypedDict):
    """The keyword arguments of ``aiomqtt.Client`` that a [uplink] / [zigbee2mqtt] sets."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    tls_context: ssl.SSLContext | None


def broker_options(section: BrokerSection) -> BrokerOptions:
    context = None
    if section.uses_tls:
        context = client_context(section.ca_file, section.cert_file, section.key_file)
    else:
        warn_plain(section.host, section.port)
    return BrokerOptions(
        hostname=section.host,
        port=section.port,
        username=section.username,
        password=section.password,
        tls_context=context,
    )


def no_delay(client: aiomqtt.Client) -> None:
    """Send each small packet (a PUBACK, an event) at once.

    paho leaves Nagle's algorithm on; a small packet written right after another then
    waits for the peer's delayed ACK, about 40 ms on Linux, on the alarm's path.
    """
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
