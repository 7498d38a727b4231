"""The gateway <-> dispatch wire schema, defined once and imported by both sides.

Topics (MQTT 3.1.1, QoS 1):
  trygg/v1/gw/<gateway_id>/events  gateway -> cloud   EventEnvelope
  trygg/v1/gw/<gateway_id>/acks    cloud -> gateway   Ack, sent only after the cloud's commit
  trygg/v1/gw/<gateway_id>/status  gateway -> cloud   Heartbeat (the last will says offline)
  trygg/v1/dispatch/status          cloud -> gateways DispatchStatus, retained: "online" once
                                                      the service is subscribed (its will: offline)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .model import Event, EventId, GatewayId, UtcDatetime

SCHEMA_VERSION: Literal[1] = 1
TOPIC_ROOT = "trygg/v1/gw"
MAX_MESSAGE_BYTES = 64 * 1024
GATEWAY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DISPATCH_STATUS_TOPIC = "trygg/v1/dispatch/status"


def events_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/events"


def acks_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/acks"


def status_topic(gateway_id: GatewayId) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/status"


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


class Ack(_Wire):
    event_ids: list[EventId] = Field(min_length=1, max_length=1000)


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
