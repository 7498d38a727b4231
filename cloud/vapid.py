"""The dispatch service's VAPID key (RFC 8292): it signs every Web Push it sends, and
browsers bind a staff member's push subscription to its public half.

The key is an EC P-256 private key in a PEM file (``TRYGG_VAPID_KEY_FILE``, readable by
the service only; ``trygg cloud push-key --out FILE`` makes one). A subscription made
with one key is refused by the push service when another signs, so the key stays the
same across restarts and replicas: every replica reads the same file.

Without a key file, production sends no pushes (the push routes say why, 503);
development makes a key of this process's own.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devices.wire import b64url

from .commandkeys import CommandKeyError, write_private
from .settings import CloudSettings

log = logging.getLogger("trygg.cloud.vapid")

MAX_KEY_FILE_BYTES = 16 * 1024


class VapidKeyError(Exception):
    """A key file that cannot be used; the message names the file and why."""


def read_vapid_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise VapidKeyError(f"TRYGG_VAPID_KEY_FILE {path}: too large to be a key file")
        data = path.read_bytes()
        private_to_others = path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO) & ~stat.S_IRGRP
    except OSError as exc:
        raise VapidKeyError(f"TRYGG_VAPID_KEY_FILE {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        msg = f"TRYGG_VAPID_KEY_FILE {path}: not an unencrypted PEM private key ({exc})"
        raise VapidKeyError(msg) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise VapidKeyError(f"TRYGG_VAPID_KEY_FILE {path}: not an EC P-256 (prime256v1) key")
    if private_to_others:
        log.warning("VAPID key %s can be read or written by others than its owner", path)
    return key


def new_vapid_key_file(path: Path) -> str:
    """A new key in ``path`` (PKCS8 PEM, 0600, never over a file); its public key."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        write_private(path, pem)
    except CommandKeyError as exc:
        raise VapidKeyError(str(exc)) from None
    return application_server_key(key)


def application_server_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as a browser's ``pushManager.subscribe`` takes it: the uncompressed
    point (65 bytes), URL-safe base64 without padding."""
    raw = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(raw)


@dataclass(frozen=True)
class VapidKey:
    """The signing key (None: Web Push is off, ``disabled`` says why)."""

    private: ec.EllipticCurvePrivateKey | None
    disabled: str | None = None
    ephemeral: bool = False

    @property
    def public(self) -> str | None:
        return None if self.private is None else application_server_key(self.private)


def load_vapid_key(settings: CloudSettings) -> VapidKey:
    """The key the settings name. A file that is named but unusable is an error."""
    if settings.vapid_key_file is not None:
        return VapidKey(read_vapid_key(settings.vapid_key_file))
    if settings.environment == "development":
        log.warning(
            "TRYGG_VAPID_KEY_FILE is not set: Web Push is signed with a key made for this "
            "process only (development); phones subscribed now get nothing after a restart"
        )
        return VapidKey(ec.generate_private_key(ec.SECP256R1()), ephemeral=True)
    return VapidKey(None, disabled="Web Push is off: TRYGG_VAPID_KEY_FILE is not set")
