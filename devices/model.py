"""Value objects shared by every Trygg program: priorities, events and readings."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

DeviceId = str
HomeId = str
ResidentId = str
GatewayId = str
EventId = str


class Priority(StrEnum):
    """The four priorities of the architecture brief, highest first."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for critical .. 3 for low: sort ascending to get the most urgent first."""
        return _PRIORITY_RANK[self]

    @property
    def scaip(self) -> int:
        """SCAIP priority 0-9, where a lower number is more urgent."""
        return _SCAIP_PRIORITY[self]


_PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}
# SCAIP leaves 0 for the receiving centre's own use; 1 is the most urgent a device may send.
_SCAIP_PRIORITY = {Priority.CRITICAL: 1, Priority.HIGH: 3, Priority.NORMAL: 5, Priority.LOW: 8}


def _must_be_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must carry a time zone (UTC on the wire)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_must_be_utc)]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Something that happened at a device and that somebody may have to act on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: EventId = Field(min_length=8, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: str = Field(min_length=1, max_length=64)
    priority: Priority
    device_id: DeviceId = Field(min_length=1, max_length=128)
    device_type: str = Field(min_length=1, max_length=64)
    home_id: HomeId = Field(min_length=1, max_length=128)
    resident_id: ResidentId | None = Field(default=None, max_length=128)
    occurred_at: UtcDatetime
    restore: bool = False
    detail: dict[str, Any] = Field(default_factory=dict)


class Reading(BaseModel):
    """One measurement from a device: a point of a time series, never an alarm by itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: DeviceId
    metric: str
    value: float
    at: UtcDatetime


def stable_event_id(*parts: str) -> EventId:
    """An id that is the same every time the same occurrence is seen again.

    Callers pass the device's own identity and sequence (or, lacking one, the
    gateway's first-sight sequence), so retransmissions collapse to one id.
    """
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()
    return f"ev-{digest}"
