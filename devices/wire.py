"""The gateway <-> dispatch wire schema, defined once and imported by both sides.

Topics (MQTT 3.1.1, QoS 1):
  trygg/v1/gw/<gateway_id>/events  gateway -> cloud   EventEnvelope
  trygg/v1/gw/<gateway_id>/acks    cloud -> gateway   Ack, sent only after the cloud's commit
  trygg/v1/gw/<gateway_id>/status  gateway -> cloud   Heartbeat (the last will says offline),
                                                      with the gateway's health
  trygg/v1/gw/<gateway_id>/devices gateway -> cloud   DeviceStates: its devices' state, the
                                                      changed ones every few seconds, all of
                                                      them on connect and every 15 minutes
  trygg/v1/gw/<gateway_id>/inventory gateway -> cloud Inventory, retained: its devices, sent on
                                                      connect and on every change
  trygg/v1/gw/<gateway_id>/commands cloud -> gateway  Command, Ed25519-signed by dispatch
  trygg/v1/gw/<gateway_id>/results  gateway -> cloud  CommandResult
  trygg/v1/dispatch/status          cloud -> gateways DispatchStatus, retained: "online" once
                                                      the service is subscribed (its will: offline)
  trygg/v1/dispatch/changes         cloud -> cloud    the replicas' change relay

Who may publish and read which topic is enforced by the broker (docs/security.md): a
gateway only its own events, status, inventory, device states and results, and only its own acks and
commands and the dispatch status to read; only dispatch identities everything else.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
# A tracked resident's positions go to the time-series store apart from other readings:
# measurement ``trygg_position`` with the UTC day they were taken as the tag ``day``
# (``2026-12-06``). A day is then a series of its own, so the dispatch service can delete
# whole days past an organisation's retention (VictoriaMetrics deletes series, never a
# range of time; cloud/retention.py), and the technician's device charts leave them out.
POSITION_METRICS = frozenset({"latitude", "longitude"})
POSITION_MEASUREMENT = "trygg_position"


def events_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/events"


def acks_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/acks"


def status_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/status"


def inventory_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/inventory"


def devices_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/devices"


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


class OutboxLevel(_Wire):
    """One priority's events waiting in the gateway's outbox for the dispatch ack."""

    events: int = Field(ge=0)
    oldest_age_s: float = Field(ge=0, allow_inf_nan=False)


PriorityName = Literal["critical", "high", "normal", "low"]
MAX_HEALTH_LINKS = 32


class LinkState(_Wire):
    state: str = Field(min_length=1, max_length=32)
    up: bool


class GatewayHealth(_Wire):
    """What a technician at the centre needs to know of a gateway without going there."""

    version: str = Field(min_length=1, max_length=32)
    uptime_s: int = Field(ge=0)
    outbox: dict[PriorityName, OutboxLevel] = Field(default_factory=dict)
    # Each transport's link ("zigbee2mqtt", "serial/gps1", "ble") and its state, and
    # whether it is up ("connected", "open", "scanning" are; "disconnected", ... are not).
    links: dict[str, LinkState] = Field(default_factory=dict, max_length=MAX_HEALTH_LINKS)
    timeseries_uplink: Literal["connected", "disconnected"] | None = None
    readings_buffered: int = Field(default=0, ge=0)
    # The store's use of its disk budget (None: no budget set), and a store fault.
    disk_budget_used_pct: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    store_fault: str | None = Field(default=None, max_length=200)
    devices: int = Field(default=0, ge=0)
    devices_silent: int = Field(default=0, ge=0)
    # The version of the dispatch service's configuration in force (None: none applied).
    config_version: int | None = Field(default=None, ge=1)


class Heartbeat(_Wire):
    gateway_id: GatewayId = Field(pattern=GATEWAY_ID_PATTERN)
    state: Literal["online", "offline"]
    sent_at: UtcDatetime | None = None  # absent in the last will, which is written at connect
    interval_s: int = Field(default=60, ge=60, le=86400)
    outbox_depth: int = Field(default=0, ge=0)
    # Absent in the last will (and from a gateway older than it); the dispatch service
    # takes the clock offset from sent_at against its own clock.
    health: GatewayHealth | None = None


# A device state report: one device ~200 bytes of JSON, so a message of 200 stays far
# under MAX_MESSAGE_BYTES; a gateway with more sends its summary in parts.
MAX_DEVICE_STATES = 200
FaultName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]


class DeviceState(_Wire):
    """What the gateway knows of one device now (gateway/devicestate.py)."""

    id: DeviceId = Field(min_length=1, max_length=128)
    last_seen: UtcDatetime | None = None
    battery_pct: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    linkquality: float | None = Field(default=None, ge=0, le=255, allow_inf_nan=False)
    rssi_dbm: float | None = Field(default=None, ge=-150, le=20, allow_inf_nan=False)
    firmware: str | None = Field(default=None, max_length=64)
    online: bool | None = None  # Zigbee2MQTT availability, where the bridge reports it
    # Its open technical conditions (device_silent, battery_low, tamper, lock_jammed, ...).
    faults: list[FaultName] = Field(default_factory=list, max_length=16)
    # When it must next be heard from, or supervision raises device_silent.
    checkin_due: UtcDatetime | None = None
    # A door or window contact: open or closed as it last said.
    contact: Literal["open", "closed"] | None = None


MAX_DISCOVERED = 100


class DiscoveredDevice(_Wire):
    """A device the gateway hears but has not paired (newest first, at most 100)."""

    transport: str = Field(min_length=1, max_length=32)
    address: str = Field(min_length=1, max_length=256)
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    messages: int = Field(ge=0)
    # What its messages held: their fields' names (Zigbee2MQTT), or their kind.
    said: str = Field(default="", max_length=200)
    # What its transport describes it as (Zigbee2MQTT's bridge/devices): its model, and
    # the device type its exposes suggest (devices/codecs/exposes.py), for the installer
    # to confirm. A type name, not the enum: a newer gateway may know more types.
    model: str | None = Field(default=None, max_length=64)
    suggested_type: str | None = Field(default=None, max_length=32, pattern=r"^[a-z_]+$")


class DeviceStates(_Wire):
    """Some or all of a gateway's devices' states. ``summary``: every device, in
    ``parts`` messages of which this is ``part``; otherwise only those that changed."""

    gateway_id: GatewayId = Field(pattern=GATEWAY_ID_PATTERN)
    sent_at: UtcDatetime
    summary: bool
    part: int = Field(default=1, ge=1, le=MAX_INVENTORY_DEVICES)
    parts: int = Field(default=1, ge=1, le=MAX_INVENTORY_DEVICES)
    devices: list[DeviceState] = Field(max_length=MAX_DEVICE_STATES)
    # The devices heard but not paired, the whole list, when it changed (and in the
    # summary's first part); absent otherwise.
    discovered: list[DiscoveredDevice] | None = Field(default=None, max_length=MAX_DISCOVERED)


class InventoryDevice(_Wire):
    id: DeviceId = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=64)
    home_id: HomeId = Field(min_length=1, max_length=128)
    transport: str = Field(min_length=1, max_length=32)
    firmware: str | None = Field(default=None, max_length=64)
    # What the gateway can make it do on a signed command (e.g. "unlock", "lock").
    actions: list[str] = Field(default_factory=list, max_length=32)
    # Its address on its transport, and where the gateway has it from: its file
    # ("config"), a pairing on the gateway ("paired": for the centre to take over), or
    # the dispatch service's configuration ("remote").
    address: str | None = Field(default=None, max_length=256)
    origin: Literal["config", "paired", "remote"] | None = None


class Inventory(_Wire):
    """Every device the gateway knows; sent whole (retained) on connect and on each change."""

    gateway_id: GatewayId = Field(pattern=GATEWAY_ID_PATTERN)
    # Grows with every change on this gateway (persisted in its store).
    revision: int = Field(ge=0)
    sent_at: UtcDatetime
    devices: list[InventoryDevice] = Field(max_length=MAX_INVENTORY_DEVICES)


# "test": the device's alarm raised by the gateway as a test, through its whole path.
# "configure": the gateway's devices and homes as the dispatch service keeps them.
CommandAction = Literal["unlock", "lock", "test", "configure"]
# A configure command names no device: its target is the gateway itself.
GATEWAY_TARGET = "gateway"
MAX_CONFIG_DEVICES = 500
MAX_CONFIG_HOMES = 100
# A configure command carries the whole configuration (one device ~300 bytes of JSON).
MAX_CONFIGURE_BYTES = 256 * 1024
# How long a signed command may live at most, and the clock difference a gateway accepts
# between its clock and the dispatch service's (docs/security.md).
COMMAND_MAX_TTL_S = 120
COMMAND_CLOCK_SKEW_S = 30


class GatewayConfiguration(_Wire):
    """What the dispatch service keeps of one gateway's configuration (docs/configuration.md):
    its devices and homes in the shapes of the gateway's own file (``[[devices]]``,
    ``[[homes]]``; the gateway validates them by the same rules), and its heartbeat.
    Each change has a higher ``version``; the gateway applies a version once, whole or
    not at all, and never an older one."""

    version: int = Field(ge=1, le=2**53)
    devices: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_CONFIG_DEVICES)
    homes: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_CONFIG_HOMES)
    heartbeat_interval_s: int | None = Field(default=None, ge=60, le=86400)


class Command(_Wire):
    """An action the dispatch service asks one gateway to take on one device.

    ``signature`` is Ed25519 by the dispatch service's key ``key_id`` over
    ``signing_bytes()``: every other field, canonical JSON. A ``configure`` command
    names the device ``GATEWAY_TARGET`` and carries its ``configuration`` (signed with
    the rest); no other command carries one.
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
    configuration: GatewayConfiguration | None = None
    signature: str = Field(default="", max_length=200)  # base64url, no padding

    @model_validator(mode="after")
    def _configuration(self) -> Command:
        if (self.action == "configure") != (self.configuration is not None):
            raise ValueError("a configure command, and only one, carries a configuration")
        if self.action == "configure" and self.device_id != GATEWAY_TARGET:
            raise ValueError(f"a configure command's device is {GATEWAY_TARGET!r}")
        return self

    def signing_bytes(self) -> bytes:
        # A command without a configuration signs as it did before there were any.
        skip = {"signature"} if self.configuration is not None else {"signature", "configuration"}
        fields = self.model_dump(mode="json", exclude=skip)
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
