"""The gateway <-> dispatch wire schema, defined once and imported by both sides.

Topics (MQTT 3.1.1, QoS 1):
  trygg/v1/gw/<gateway_id>/events  gateway -> cloud   EventEnvelope
  trygg/v1/gw/<gateway_id>/acks    cloud -> gateway   Ack, sent only after the cloud's commit
  trygg/v1/gw/<gateway_id>/status  gateway -> cloud   Heartbeat (the last will says offline)
  trygg/v1/gw/<gateway_id>/inventory gateway -> cloud Inventory, retained: its devices, sent on
                                                      connect and on every change
  trygg/v1/gw/<gateway_id>/commands cloud -> gateway  Command, Ed25519-signed by dispatch
  trygg/v1/gw/<gateway_id>/results  gateway -> cloud  CommandResult
  trygg/v1/dispatch/status          cloud -> gateways DispatchStatus, retained: "online" once
                                                      the service is subscribed (its will: offline)
  trygg/v1/dispatch/changes         cloud -> cloud    the replicas' change relay

Who may publish and read which topic is enforced by the broker (docs/security.md): a
gateway only its own events, status, inventory and results, and only its own acks and
commands and the dispatch status to read; only dispatch identities everything else.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .model import DeviceId, Event, EventId, GatewayId, HomeId, UtcDatetime

SCHEMA_VERSION: Literal[1] = 1
TOPIC_ROOT = "trygg/v1/gw"
MAX_MESSAGE_BYTES = 64 * 1024
# An inventory is sent whole and rarely: one gateway may serve a block of flats (the
# simulator's load mode runs 6,000 devices on one), about 150 bytes a device.
MAX_INVENTORY_DEVICES = 20_000
MAX_INVENTORY_BYTES = 4 * 1024 * 1024
GATEWAY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DISPATCH_STATUS_TOPIC = "trygg/v1/dispatch/status"
DISPATCH_CHANGES_TOPIC = "trygg/v1/dispatch/changes"


def events_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/events"


def acks_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/acks"


def status_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/status"


def inventory_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/inventory"


def commands_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/commands"


def results_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/results"


def split_topic(topic: str) -> tuple[GatewayId, str] | None:
    """``trygg/v1/gw/<id>/<kind>`` -> (id, kind); None for anything else."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != TOPIC_ROOT or not parts[3]:
        return None
    return parts[3], parts[4]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = SCHEMA_VERSION


class EventEnvelope(_Wire):
    gateway_id: GatewayId = Field(pattern=GATEWAY_ID_PATTERN)
    sent_at: UtcDatetime
    event: Event
    # The revision of the gateway's inventory when it sent this: an event from a device
    # the dispatch service does not know yet, with a newer revision than the last
    # inventory it has, waits for that inventory instead of being refused.
    inventory_revision: int | None = Field(default=None, ge=0)


class Ack(_Wire):
    event_ids: list[EventId] = Field(min_length=1, max_length=1000)
    # Of those, the ones the dispatch service refused (kind not in the catalog, device
    # it does not know for this gateway), with the reason: the gateway deletes them too,
    # and logs the refusal, instead of resending them for ever.
    refused: dict[EventId, str] = Field(default_factory=dict, max_length=1000)


class DispatchStatus(_Wire):
    """Said by the dispatch service: on "online", gateways resend what is still unacked
    at once (after a broker restart it may have been published before anyone listened)."""

    state: Literal["online", "offline"]


class Heartbeat(_Wire):
    gateway_id: GatewayId = Field(pattern=GATEWAY_ID_PATTERN)
    state: Literal["online", "offline"]
    sent_at: UtcDatetime | None = None  # absent in the last will, which is written at connect
    interval_s: int = Field(default=60, ge=60, le=86400)
    outbox_depth: int = Field(default=0, ge=0)


class InventoryDevice(_Wire):
    id: DeviceId = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=64)
    home_id: HomeId = Field(min_length=1, max_length=128)
    transport: str = Field(min_length=1, max_length=32)
    firmware: str | None = Field(default=None, max_length=64)
    # What the gateway can make it do on a signed command (e.g. "unlock", "lock").
    actions: list[str] = Field(default_factory=list, max_length=32)


class Inventory(_Wire):
    """Every device the gateway knows; sent whole (retained) on connect and on each change."""

    gateway_id: GatewayId = Field(pattern=GATEWAY_ID_PATTERN)
    # Grows with every change on this gateway (persisted in its store).
    revision: int = Field(ge=0)
    sent_at: UtcDatetime
    devices: list[InventoryDevice] = Field(max_length=MAX_INVENTORY_DEVICES)


CommandAction = Literal["unlock", "lock"]
# How long a signed command may live at most, and the clock difference a gateway accepts
# between its clock and the dispatch service's (docs/security.md).
COMMAND_MAX_TTL_S = 120
COMMAND_CLOCK_SKEW_S = 30


class Command(_Wire):
    """An action the dispatch service asks one gateway to take on one device.

    ``signature`` is Ed25519 by the dispatch service's key ``key_id`` over
    ``signing_bytes()``: every other field, canonical JSON.
    """

    id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    gateway_id: GatewayId = Field(pattern=GATEWAY_ID_PATTERN)
    device_id: DeviceId = Field(min_length=1, max_length=128)
    action: CommandAction
    issued_by: str = Field(min_length=1, max_length=100)
    issued_at: UtcDatetime
    expires_at: UtcDatetime
    nonce: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    key_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    signature: str = Field(default="", max_length=200)  # base64url, no padding

    def signing_bytes(self) -> bytes:
        fields = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def signed(self, signature: bytes) -> Command:
        return self.model_copy(update={"signature": b64url(signature)})

    def signature_bytes(self) -> bytes | None:
        """The signature decoded, or None when it is not valid base64url."""
        try:
            return base64.urlsafe_b64decode(self.signature + "=" * (-len(self.signature) % 4))
        except ValueError:
            return None


CommandOutcome = Literal["accepted", "refused", "done", "failed", "expired"]


class CommandResult(_Wire):
    command_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    gateway_id: GatewayId = Field(pattern=GATEWAY_ID_PATTERN)
    outcome: CommandOutcome
    # Why it was refused or failed, as a short code ("bad_signature", "unknown_key",
    # "expired", "replayed", "wrong_gateway", "unknown_device", "unsupported_action",
    # "jammed", "no_answer", ...), with a human detail beside it.
    reason: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=500)
    at: UtcDatetime


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_id_of(public_key_raw: bytes) -> str:
    """A key's id: the first 12 bytes of the SHA-256 of its raw 32-byte public key."""
    return b64url(hashlib.sha256(public_key_raw).digest()[:12])
