"""How the dispatch service's MQTT clients reach the broker: address, identity, TLS."""

from __future__ import annotations

import ssl
from typing import TypedDict

from devices.brokertls import client_context, warn_plain

from .settings import CloudSettings


class BrokerOptions(TypedDict):
    """The keyword arguments of ``aiomqtt.Client`` that the TRYGG_MQTT_* settings set."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    tls_context: ssl.SSLContext | None


def broker_options(settings: CloudSettings) -> BrokerOptions:
    s = settings
    context = None
    if s.mqtt_uses_tls:
        context = client_context(s.mqtt_ca_file, s.mqtt_cert_file, s.mqtt_key_file)
    else:
        warn_plain(s.mqtt_host, s.mqtt_port)
    return BrokerOptions(
        hostname=s.mqtt_host,
        port=s.mqtt_port,
        username=s.mqtt_username,
        password=s.mqtt_password,
        tls_context=context,
    )
