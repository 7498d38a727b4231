"""The TLS policy of every MQTT link (gateway -> dispatch broker, gateway -> the home's
Zigbee2MQTT broker, dispatch service -> broker), defined once for both sides.

TLS 1.2 at least, the server's certificate verified against the configured CA (or the
system's when none is given) with its host name checked, and a client certificate when
one is configured. Plain TCP is allowed only to a loopback address, for development.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger("trygg.mqtt")
_warned: set[tuple[str, int]] = set()


def readable_file(path: Path) -> Path:
    """``path`` if it is a file this process can read; ValueError naming it otherwise."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{path}: not readable by this user")
    return path


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_link(
    host: str, tls: bool | None, ca_file: Path | None, cert: Path | None, key: Path | None
) -> bool:
    """Whether the link uses TLS; ValueError (naming what to set) when the combination is
    refused. ``tls`` None means: TLS when a CA is given."""
    if (cert is None) != (key is None):
        raise ValueError("cert_file and key_file go together: set both or neither")
    if tls is False and (ca_file or cert):
        raise ValueError("tls is false but ca_file or cert_file is set")
    use_tls = tls if tls is not None else ca_file is not None
    if not use_tls and not is_loopback(host):
        raise ValueError(
            f"plain MQTT to {host} is refused: set ca_file (TLS) for a broker beyond loopback"
        )
    return use_tls


def client_context(ca_file: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)  # verifies the server and its name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def warn_plain(host: str, port: int) -> None:
    """Said once per broker: the link is not encrypted, which only development accepts."""
    if (host, port) not in _warned:
        _warned.add((host, port))
        log.warning("MQTT to %s:%d without TLS: for development on this machine only", host, port)
