"""How the simulator logs in to a broker: as Zigbee2MQTT would, with a username and
password, over TLS when a CA is given (a secured broker refuses anonymous clients)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from devices.brokertls import client_context


class LoginOptions(TypedDict):
    username: str | None
    password: str | None
    tls_context: ssl.SSLContext | None


@dataclass(frozen=True)
class BrokerLogin:
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None

    def options(self) -> LoginOptions:
        """The keyword arguments of ``aiomqtt.Client`` for this login."""
        context = None if self.ca_file is None else client_context(self.ca_file, None, None)
        return LoginOptions(username=self.username, password=self.password, tls_context=context)


ANONYMOUS = BrokerLogin()
