"""What the API shows: public shapes, separate from the tables."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from devices import EVENT_KINDS

from .lifecycle import ESCALATION_WAITS_IN


class AlarmPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    priority: str
    state: str
    gateway_id: str
    device_id: str
    device_type: str
    home_id: str
    resident_id: str | None
    event_count: int
    occurred_at: datetime
    received_at: datetime
    updated_at: datetime
    restored_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    claimed_by: str | None
    claimed_at: datetime | None
    assigned_to: str | None
    assigned_at: datetime | None
    accepted_at: datetime | None = None  # the assignee said they are on their way
    on_site_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    outcome: str | None
    resolution_note: str | None
    last_event_at: datetime | None
    latitude: float | None
    longitude: float | None
    escalated_at: datetime | None
    escalation: str | None
    escalation_level: int
    team_id: int | None = None  # the home's team when the alarm was raised
    test: bool = False  # raised by a device in test

    @computed_field  # type: ignore[prop-decorator]
    @property
    def escalation_waiting(self) -> bool:
        """Escalated and still late: nobody has yet done what was overdue."""
        late_in = ESCALATION_WAITS_IN.get(self.escalation or "")
        return late_in is not None and late_in == self.state

    @computed_field  # type: ignore[prop-decorator]
    @property
    def title(self) -> str:
        kind = EVENT_KINDS.get(self.kind)
        return kind.description if kind else self.kind


class TransitionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    action: str
    from_state: str
    to_state: str
    by: str
    at: datetime
    detail: dict[str, Any]


class HomeContext(BaseModel):
    """What whoever goes there needs: the address and how to get in."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    address: str
    key_safe: str | None
    notes: str
    latitude: float | None = None
    longitude: float | None = None
    away: bool = False  # the resident is away (cloud/away.py)


class ResidentContext(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    born: date | None = None
    language: str | None = None
    notes: str
    contacts: list[dict[str, Any]]


class RecentAlarm(BaseModel):
    """One of the resident's earlier alarms and how it ended: an operator who sees ten
    presses today calls differently."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    priority: str
    state: str
    received_at: datetime
    outcome: str | None


class Position(BaseModel):
    latitude: float
    longitude: float
    at: datetime
    restore: bool  # a report from back inside the zone
    # Where the device said: the fix's accuracy (metres) and its age when the event went.
    accuracy_m: float | None = None
    fix_age_s: float | None = None


class SafeZone(BaseModel):
    latitude: float
    longitude: float
    radius_m: float


class AlarmDetail(BaseModel):
    alarm: AlarmPublic
    history: list[TransitionPublic]
    home: HomeContext | None = None
    resident: ResidentContext | None = None  # reading it is logged in the audit log
    # The resident's other alarms of the last 30 days, newest first (at most 20).
    recent: list[RecentAlarm] = []
    # Where the device said it was (oldest first) and the safe zone it left: only for the
    # roles that may see positions, and each time audited.
    positions: list[Position] = []
    zone: SafeZone | None = None


class AlarmChange(BaseModel):
    """One message of the live stream."""

    type: str  # "created" | "updated" | "escalated"
    alarm: AlarmPublic


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (a scheme name)
    expires_in: int


class CommandPublic(BaseModel):
    """A signed command and where it has got to (cloud/commands.py)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    gateway_id: str
    device_id: str
    action: str
    issued_by: str
    issued_at: datetime
    expires_at: datetime
    key_id: str
    state: str
    reason: str | None
    detail: str | None
    updated_at: datetime


class CommandChange(BaseModel):
    """One message of the commands' live stream: the command as it is now."""

    type: str  # "created" | "updated"
    command: CommandPublic


class RelayedChange(BaseModel):
    """A change passed between dispatch replicas, for their consoles: an alarm's, or a
    command's."""

    replica: str
    org_id: str
    change: AlarmChange | None = None
    command: CommandChange | None = None
