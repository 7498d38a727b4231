"""The dispatch service's public keys this gateway trusts to sign commands.

The file (``[commands] trusted_keys_file``, written by ``trygg cloud command-key export``)::

    {"v": 1, "keys": [{"key_id": "...", "public_key": "<base64url raw 32 bytes>",
                       "algorithm": "Ed25519"}]}

Several keys mean a rotation with overlap. Each key's id must be ``key_id_of`` its
public key. Any problem is a ``TrustedKeysError`` naming the file and the key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from devices.wire import key_id_of

MAX_FILE_BYTES = 256 * 1024
MAX_KEYS = 64


class TrustedKeysError(Exception):
    """The trusted keys file is missing, unreadable or invalid."""


def _raw_key(text: object) -> bytes | None:
    if not isinstance(text, str) or not text or "=" in text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == 32 else None


class TrustedKeys:
    """Key id -> Ed25519 public key."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey], source: str = "") -> None:
        self.keys = dict(keys)
        self.source = source

    def __contains__(self, key_id: str) -> bool:
        return key_id in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    def verify(self, key_id: str, signature: bytes, message: bytes) -> bool:
        key = self.keys.get(key_id)
        if key is None:
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_trusted_keys(text: str | bytes, source: str = "<trusted keys>") -> TrustedKeys:
    def fail(why: str) -> TrustedKeysError:
        return TrustedKeysError(f"{source}: {why}")

    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise fail('expected an object {"v": 1, "keys": [...]}')
    unknown = set(body) - {"v", "keys"}
    if unknown:
        raise fail(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    if body.get("v") != 1:
        raise fail(f"v must be 1, not {body.get('v')!r}")
    entries = body.get("keys")
    if not isinstance(entries, list) or not entries:
        raise fail("keys must be a list of at least one key")
    if len(entries) > MAX_KEYS:
        raise fail(f"keys holds {len(entries)} keys; at most {MAX_KEYS}")
    keys: dict[str, Ed25519PublicKey] = {}
    for index, entry in enumerate(entries):
        where = f"keys[{index}]"
        if not isinstance(entry, dict):
            raise fail(f"{where}: expected an object with key_id, public_key, algorithm")
        key_id = entry.get("key_id")
        if isinstance(key_id, str) and key_id:
            where = f"{where} (key {key_id!r})"
        extra = set(entry) - {"key_id", "public_key", "algorithm"}
        if extra:
            raise fail(f"{where}: unknown field(s) {', '.join(sorted(map(str, extra)))}")
        if entry.get("algorithm") != "Ed25519":
            raise fail(f"{where}: algorithm must be Ed25519, not {entry.get('algorithm')!r}")
        if not isinstance(key_id, str) or not key_id:
            raise fail(f"{where}: key_id must be a non-empty string")
        raw = _raw_key(entry.get("public_key"))
        if raw is None:
            raise fail(f"{where}: public_key must be 32 bytes in base64url without padding")
        if key_id_of(raw) != key_id:
            raise fail(f"{where}: key_id does not match its public key ({key_id_of(raw)})")
        if key_id in keys:
            raise fail(f"{where}: listed twice")
        try:
            keys[key_id] = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise fail(f"{where}: public_key is not an Ed25519 public key") from None
    return TrustedKeys(keys, source)


def load_trusted_keys(path: Path) -> TrustedKeys:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TrustedKeysError(f"{path}: cannot read the trusted keys file: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise TrustedKeysError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return parse_trusted_keys(data, str(path))
