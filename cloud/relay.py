"""The seal on the replicas' change relay (``DISPATCH_CHANGES_TOPIC``).

The broker's ACL lets only dispatch identities publish there; this is the second wall.
Replicas share ``TRYGG_SECRET_KEY``, so each relayed change carries an HMAC-SHA256 over
its exact bytes, with a key derived from that secret for this use only (HKDF, its own
label: a relay key is never a token-signing key), and the time it was sealed. A replica
applies a relayed change only with a valid MAC, sealed within ``WINDOW_S`` of its own
clock, and not seen before (a captured message replayed within the window is dropped).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .schemas import RelayedChange

# Replicas' clocks differ by far less (NTP); a change older than this is news no console needs.
WINDOW_S = 30.0
REMEMBERED = 10_000
_LABEL = b"trygg dispatch change relay v1"


class SealedChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(max_length=60_000)  # the RelayedChange's JSON, exactly as sealed
    sealed_at: float = Field(allow_inf_nan=False)
    mac: str = Field(min_length=64, max_length=64)  # hex


def relay_key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL)
    return hkdf.derive(secret_key.encode())


class RelaySeal:
    def __init__(self, secret_key: str, *, clock: Callable[[], float] = time.time) -> None:
        self._key = relay_key(secret_key)
        self._clock = clock
        self._seen: dict[str, float] = {}

    def _mac(self, body: str, sealed_at: float) -> str:
        message = f"{sealed_at!r}\n{body}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def seal(self, change: RelayedChange) -> str:
        body = change.model_dump_json()
        at = self._clock()
        return SealedChange(body=body, sealed_at=at, mac=self._mac(body, at)).model_dump_json()

    def open(self, payload: bytes) -> RelayedChange | str:
        """The change, or the reason it is dropped: ``malformed``, ``relay_forged`` (no
        valid MAC), ``relay_stale`` (outside the window), ``relay_replayed``."""
        try:
            sealed = SealedChange.model_validate_json(payload)
        except ValidationError:
            return "relay_forged"  # an unsealed change (the old format, or a forgery)
        if not hmac.compare_digest(self._mac(sealed.body, sealed.sealed_at), sealed.mac):
            return "relay_forged"
        now = self._clock()
        if abs(now - sealed.sealed_at) > WINDOW_S:
            return "relay_stale"
        if sealed.mac in self._seen:
            return "relay_replayed"
        self._remember(sealed.mac, now)
        try:
            return RelayedChange.model_validate_json(sealed.body)
        except ValidationError:
            return "malformed"

    def _remember(self, mac: str, now: float) -> None:
        if len(self._seen) >= REMEMBERED:
            # Only what is still inside the window can be replayed; forget the rest.
            self._seen = {m: t for m, t in self._seen.items() if now - t <= WINDOW_S}
            if len(self._seen) >= REMEMBERED:
                self._seen.pop(next(iter(self._seen)))
        self._seen[mac] = now
