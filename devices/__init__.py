"""The device domain: events, readings, the device catalog and codecs. Pure: no I/O."""

from .catalog import (
    CATALOG,
    EVENT_KINDS,
    GATEWAY_KINDS,
    LOCK_EVENT_ACTIONS,
    DeviceSpec,
    DeviceType,
    EventKind,
    Signal,
    lock_event_cause,
)
from .errors import CodecError, MalformedPayload, Repeated, Replayed, UnexpectedValue
from .model import (
    DeviceId,
    Event,
    EventId,
    GatewayId,
    HomeId,
    Priority,
    Reading,
    ResidentId,
    stable_event_id,
    utc_now,
)

__all__ = [
    "CATALOG",
    "EVENT_KINDS",
    "GATEWAY_KINDS",
    "LOCK_EVENT_ACTIONS",
    "CodecError",
    "DeviceId",
    "DeviceSpec",
    "DeviceType",
    "Event",
    "EventId",
    "EventKind",
    "GatewayId",
    "HomeId",
    "MalformedPayload",
    "Priority",
    "Reading",
    "Repeated",
    "Replayed",
    "ResidentId",
    "Signal",
    "UnexpectedValue",
    "lock_event_cause",
    "stable_event_id",
    "utc_now",
]
