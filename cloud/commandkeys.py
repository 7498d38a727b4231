"""The dispatch service's command keys: the Ed25519 key it signs commands with, and the
public keys gateways are told to trust (docs/commands.md).

The signing key is a PKCS8 PEM file (``TRYGG_COMMAND_KEY_FILE``, readable by the service
only). ``TRYGG_COMMAND_TRUSTED_KEY_FILES`` names public-key PEM files exported to gateways
beside the signing key's own: during a rotation, the next key before it signs, or the old
one until every gateway has the new. The trusted keys file (``dispatch-keys.json``) is
what gateways load: ``{"v": 1, "keys": [{"key_id", "public_key", "algorithm"}]}``.

Without a key file, production runs with commands off (the command route says why, 503);
development makes a key of this process's own, which no gateway outside it can trust.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from devices.wire import Command, b64url, key_id_of

from .settings import CommandKeySettings

log = logging.getLogger("trygg.cloud.commandkeys")

ALGORITHM = "Ed25519"
TRUSTED_KEYS_FILE = "dispatch-keys.json"
MAX_KEY_FILE_BYTES = 16 * 1024


class CommandKeyError(Exception):
    """A key file that cannot be used; the message names the file and why."""


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _read(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise CommandKeyError(f"{what} {path}: too large to be a key file")
        return path.read_bytes()
    except OSError as exc:
        raise CommandKeyError(f"{what} {path}: {exc.strerror or exc}") from None


def read_private_key(path: Path) -> Ed25519PrivateKey:
    data = _read(path, "TRYGG_COMMAND_KEY_FILE")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        msg = f"TRYGG_COMMAND_KEY_FILE {path}: not an unencrypted PKCS8 PEM key ({exc})"
        raise CommandKeyError(msg) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CommandKeyError(f"TRYGG_COMMAND_KEY_FILE {path}: not an Ed25519 key")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO) & ~stat.S_IRGRP:
        log.warning("command key %s can be read or written by others than its owner", path)
    return key


def read_public_key(path: Path) -> bytes:
    """A trusted key file's raw 32-byte Ed25519 public key."""
    data = _read(path, "TRYGG_COMMAND_TRUSTED_KEY_FILES")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        msg = f"TRYGG_COMMAND_TRUSTED_KEY_FILES {path}: not a PEM public key ({exc})"
        raise CommandKeyError(msg) from None
    if not isinstance(key, Ed25519PublicKey):
        raise CommandKeyError(f"TRYGG_COMMAND_TRUSTED_KEY_FILES {path}: not an Ed25519 key")
    return raw_public(key)


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` (never over an existing file) readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandKeyError(f"{path} exists already: not overwritten") from None
    except OSError as exc:
        raise CommandKeyError(f"{path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(0o600)


def new_key_file(path: Path) -> str:
    """A new signing key in ``path`` (PKCS8 PEM, 0600); returns its key id."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
    return key_id_of(raw_public(key.public_key()))


def public_pem(path: Path) -> bytes:
    """The public half of the signing key in ``path``, as PEM (a trusted key file)."""
    return (
        read_private_key(path)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@dataclass(frozen=True)
class CommandKeys:
    """The signing key (None: commands are off, ``disabled`` says why) and every public
    key gateways are to trust, the signing key's first."""

    signing: Ed25519PrivateKey | None
    trusted: tuple[bytes, ...]
    disabled: str | None = None
    ephemeral: bool = False

    @property
    def key_id(self) -> str | None:
        return None if self.signing is None else key_id_of(raw_public(self.signing.public_key()))

    def sign(self, command: Command) -> Command:
        """``command`` (its key_id this key's) signed."""
        if self.signing is None:
            raise CommandKeyError(self.disabled or "commands are off")
        assert command.key_id == self.key_id
        return command.signed(self.signing.sign(command.signing_bytes()))

    def trusted_keys_json(self) -> str:
        keys = [
            {"key_id": key_id_of(raw), "public_key": b64url(raw), "algorithm": ALGORITHM}
            for raw in self.trusted
        ]
        return json.dumps({"v": 1, "keys": keys}, indent=2) + "\n"


def load_command_keys(settings: CommandKeySettings, *, allow_ephemeral: bool = True) -> CommandKeys:
    """The keys the settings name. A file that is named but unusable is an error."""
    extra = [read_public_key(p) for p in settings.command_trusted_key_paths]
    if settings.command_key_file is not None:
        signing = read_private_key(settings.command_key_file)
        own = raw_public(signing.public_key())
        return CommandKeys(signing, tuple(dict.fromkeys([own, *extra])))
    if settings.environment == "development" and allow_ephemeral:
        log.warning(
            "TRYGG_COMMAND_KEY_FILE is not set: commands are signed with a key made for "
            "this process only (development); gateways cannot trust it after a restart"
        )
        signing = Ed25519PrivateKey.generate()
        own = raw_public(signing.public_key())
        return CommandKeys(signing, tuple(dict.fromkeys([own, *extra])), ephemeral=True)
    reason = "commands are off: TRYGG_COMMAND_KEY_FILE is not set"
    return CommandKeys(None, tuple(dict.fromkeys(extra)), disabled=reason)


def export_trusted_keys(settings: CommandKeySettings, out: Path) -> CommandKeys:
    """``trygg cloud command-key export``: the trusted keys file gateways load."""
    keys = load_command_keys(settings, allow_ephemeral=False)
    if not keys.trusted:
        raise CommandKeyError(
            "no key to export: set TRYGG_COMMAND_KEY_FILE (and TRYGG_COMMAND_TRUSTED_KEY_FILES)"
        )
    out.write_text(keys.trusted_keys_json())
    return keys
