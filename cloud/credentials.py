"""Broker credentials: a generated password per gateway, and the bundle a technician
copies to the gateway at installation.

Why passwords over TLS rather than client certificates by default: a gateway's access is
revoked by rewriting the broker's password file and reloading the broker (``trygg cloud
remove-gateway``, then ``trygg cloud broker-config`` and SIGHUP), with no certificate
revocation list to publish, keep fresh and have the broker check; and a lost or
replaced gateway gets a new password by registering it again. The password is 256 random
bits, so it cannot be guessed, and TLS keeps it from the network. Only its hash is kept,
in mosquitto's own password-file format. A deployment that prefers certificates still can:
the gateway's [uplink] takes ``cert_file`` / ``key_file``, and ``broker-config
--client-certificates`` makes mosquitto take the identity from the certificate
(``use_identity_as_username``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# mosquitto 2's "$7$": PBKDF2-HMAC-SHA512, a 12-byte salt, a 64-byte key. Its default 101
# rounds are kept: a generated password has 256 bits of entropy, so stretching adds
# nothing, and the broker pays the rounds on every connect.
_ROUNDS = 101
_SALT_BYTES = 12
_KEY_BYTES = 64

# Dispatch identities are "dispatch.<name>": a gateway id cannot hold a dot
# (devices.wire.GATEWAY_ID_PATTERN), so no gateway can be registered under one.
DISPATCH_PREFIX = "dispatch."
BUNDLE_UPLINK = "gateway-uplink.toml"
BUNDLE_CA = "ca.crt"
BUNDLE_TRUSTED_KEYS = "dispatch-keys.json"


def generate_password() -> str:
    return secrets.token_urlsafe(32)


def mosquitto_hash(password: str, *, salt: bytes | None = None, rounds: int = _ROUNDS) -> str:
    """The password as a mosquitto 2 password file holds it (after ``username:``)."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds, _KEY_BYTES)
    b64 = base64.b64encode
    return f"$7${rounds}${b64(salt).decode()}${b64(key).decode()}"


def mosquitto_verify(password: str, hashed: str) -> bool:
    try:
        _, kind, rounds, salt, key = hashed.split("$")
        if kind != "7":
            return False
        raw_salt, raw_key = base64.b64decode(salt), base64.b64decode(key)
        wanted = hashlib.pbkdf2_hmac("sha512", password.encode(), raw_salt, int(rounds), 64)
    except ValueError:
        return False
    return hmac.compare_digest(wanted, raw_key)


@dataclass(frozen=True)
class GatewayBundle:
    """What a gateway needs to reach the dispatch broker as itself."""

    gateway_id: str
    password: str
    broker_host: str
    broker_port: int
    ca_cert: bytes  # PEM: the CA that signed the broker's certificate
    ca_file_on_gateway: str  # where the technician puts ca.crt on the gateway
    # The command keys the gateway is to trust (cloud/commandkeys.py), None without any.
    trusted_keys: str | None = None

    @property
    def trusted_keys_on_gateway(self) -> str:
        """Beside ca.crt on the gateway."""
        return str(PurePosixPath(self.ca_file_on_gateway).with_name(BUNDLE_TRUSTED_KEYS))


def write_bundle(directory: Path, bundle: GatewayBundle) -> list[Path]:
    """Write the technician's bundle: the gateway's [uplink] section and the CA, and with
    command keys its [commands] section and the trusted keys file. The directory is
    readable by its owner only: the section holds the gateway's password."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    uplink = directory / BUNDLE_UPLINK
    q = json.dumps  # a TOML basic string is a JSON string for these characters
    text = (
        f"# The dispatch uplink of gateway {bundle.gateway_id}: put this section in the\n"
        f"# gateway's configuration and {BUNDLE_CA} at {bundle.ca_file_on_gateway}.\n"
        "# The password is this gateway's broker credential: keep it secret.\n"
        "[uplink]\n"
        f"host = {q(bundle.broker_host)}\n"
        f"port = {bundle.broker_port}\n"
        f"username = {q(bundle.gateway_id)}\n"
        f"password = {q(bundle.password)}\n"
        f"ca_file = {q(bundle.ca_file_on_gateway)}\n"
    )
    if bundle.trusted_keys is not None:
        text += (
            f"\n# Commands signed by the dispatch service: put {BUNDLE_TRUSTED_KEYS} beside\n"
            f"# {BUNDLE_CA}, at {bundle.trusted_keys_on_gateway}.\n"
            "[commands]\n"
            f"trusted_keys_file = {q(bundle.trusted_keys_on_gateway)}\n"
        )
    _write_private(uplink, text.encode())
    ca = directory / BUNDLE_CA
    ca.write_bytes(bundle.ca_cert)
    written = [uplink, ca]
    if bundle.trusted_keys is not None:
        keys = directory / BUNDLE_TRUSTED_KEYS
        keys.write_text(bundle.trusted_keys)
        written.append(keys)
    return written


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by its owner only, from the start (no window of 0644)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(0o600)
