"""Persistence: the tables of the dispatch service and the async engine."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON}


DEFAULT_ANSWER_TARGET_S = 60
DEFAULT_TIME_ZONE = "Europe/Stockholm"
DEFAULT_VISIT_MARGIN_S = 15 * 60
DEFAULT_DOOR_GRACE_S = 120
# As commercial GPS alarms offer (30-720 days); the organisation chooses.
DEFAULT_POSITION_RETENTION_DAYS = 90
POSITION_RETENTION_DAYS = (30, 720)


class Organisation(Base):
    __tablename__ = "organisations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # How soon its operators should take an alarm (the consoles colour waiting alarms
    # against it), and the zone its people read times in.
    answer_target_s: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_ANSWER_TARGET_S, server_default=str(DEFAULT_ANSWER_TARGET_S)
    )
    time_zone: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TIME_ZONE, server_default=DEFAULT_TIME_ZONE
    )
    # Everyone signs in with a second factor (some roles always do: cloud/signin.py).
    require_second_factor: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Staff on duty may take their team's unassigned alarms themselves (a night patrol).
    staff_may_take: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Test alarms (a technician's, a device's own test) shown, marked, in the operators'
    # queue; otherwise only the technicians see them.
    show_tests: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A visit's door opens this long before its start and after its end (cloud/doors.py).
    visit_margin_s: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_VISIT_MARGIN_S, server_default=str(DEFAULT_VISIT_MARGIN_S)
    )
    # A door found not locked this long after its visit or alarm ended raises door_left_open.
    door_grace_s: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_DOOR_GRACE_S, server_default=str(DEFAULT_DOOR_GRACE_S)
    )
    # Residents' positions (in events and alarms) are kept this many days (30-720), then
    # removed by cloud/retention.py, which has removed them up to positions_removed_to.
    position_retention_days: Mapped[int] = mapped_column(
        Integer,
        default=DEFAULT_POSITION_RETENTION_DAYS,
        server_default=str(DEFAULT_POSITION_RETENTION_DAYS),
    )
    positions_removed_to: Mapped[datetime | None]
    positions_removed_after: Mapped[list[str] | None] = mapped_column(JSON)  # [gateway, id]


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", name="users_team_id_fkey"))
    # When one of their consoles last held its live stream open (any replica): who is on.
    seen_at: Mapped[datetime | None]
    # Set: they cannot sign in, and their sessions end.
    disabled_at: Mapped[datetime | None]
    # TOTP (RFC 6238): the secret, encrypted with the service's key; when it was
    # confirmed; the last time step a code was accepted for (a code works once).
    totp_secret: Mapped[str | None] = mapped_column(String(300))
    totp_enabled_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Hashes of the unused one-time recovery codes.
    recovery_codes: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")


class Session(Base):
    """One sign-in: the token names it, and it ends when revoked or expired."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", name="sessions_user_id_fkey"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # Whether the second factor was given (a session without it may only enrol one).
    second_factor: Mapped[bool] = mapped_column(Boolean)
    address: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("sessions_of_user", "user_id"),)


class SignInThrottle(Base):
    """Failed sign-ins per name, address, or both, shared by every replica."""

    __tablename__ = "sign_in_throttle"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int]
    last_failed_at: Mapped[datetime]
    blocked_until: Mapped[datetime]


class Team(Base):
    """A group of home-care staff (a district, a night patrol)."""

    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))

    __table_args__ = (UniqueConstraint("org_id", "name", name="teams_name_per_org"),)


class Home(Base):
    """A resident's home. Gateways and events know only its id; the rest is cloud-only."""

    __tablename__ = "homes"
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    address: Mapped[str] = mapped_column(String(300))
    key_safe: Mapped[str | None] = mapped_column(String(100))  # where and which code
    notes: Mapped[str] = mapped_column(String(2000), default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    # The home-care team (a district) that serves it.
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", name="homes_team_id_fkey"))
    # The resident is away (cloud/away.py): who set it last, and when.
    away: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    away_by: Mapped[str | None] = mapped_column(String(100))
    away_at: Mapped[datetime | None]


class Resident(Base):
    """A person cared for. Names, contacts and notes live here only, never on a gateway."""

    __tablename__ = "residents"
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    home_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    notes: Mapped[str] = mapped_column(String(2000), default="")
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    born: Mapped[date | None] = mapped_column(Date)
    # The language to speak with them, as a BCP 47 tag ("sv", "fi", "ar", ...).
    language: Mapped[str | None] = mapped_column(String(35))
    # Their own home rules (cloud/homerules.py ResidentRules); None: none set here.
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Device(Base):
    """A device as the dispatch service knows it: which gateway, home and resident."""

    __tablename__ = "devices"
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id"))
    home_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    resident_id: Mapped[str | None] = mapped_column(String(128))
    # What the gateway's inventory says (devices/wire.py Inventory); reported_at is None
    # for a device registered here that the gateway has not reported (yet, or any more).
    transport: Mapped[str | None] = mapped_column(String(32))
    firmware: Mapped[str | None] = mapped_column(String(64))
    actions: Mapped[list[str] | None] = mapped_column(JSON)
    # Its address on its transport, and where its gateway has it from (devices/wire.py
    # InventoryDevice.origin: its file, a pairing on the gateway, the configuration here).
    address: Mapped[str | None] = mapped_column(String(256))
    origin: Mapped[str | None] = mapped_column(String(16))
    reported_at: Mapped[datetime | None]
    # In test until then (a technician installing or checking it): its alarms are tests.
    test_until: Mapped[datetime | None]
    # A lock's state as its own confirmations and events last said ("locked", "unlocked",
    # "jammed"), and when: what decides whether a door must be locked after a visit.
    lock_state: Mapped[str | None] = mapped_column(String(16))
    lock_state_at: Mapped[datetime | None]
    # What its gateway last reported of it (devices/wire.py DeviceState), and when:
    # state_at is the gateway's report, contact_at when a door contact last changed.
    last_seen_at: Mapped[datetime | None]
    battery_pct: Mapped[float | None] = mapped_column(Float)
    linkquality: Mapped[float | None] = mapped_column(Float)
    rssi_dbm: Mapped[float | None] = mapped_column(Float)
    online: Mapped[bool | None]
    faults: Mapped[list[str] | None] = mapped_column(JSON)
    checkin_due_at: Mapped[datetime | None]
    contact: Mapped[str | None] = mapped_column(String(8))
    contact_at: Mapped[datetime | None]
    state_at: Mapped[datetime | None]
    # A device that reports straight to this service (cloud/direct.py): the SHA-256 of its
    # credential. None for a device behind a gateway.
    credential_sha256: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_devices_credential", "credential_sha256", unique=True),)


class DiscoveredDevice(Base):
    """A device a gateway hears but has not paired, as the gateway last reported it
    (devices/wire.py DiscoveredDevice): for a technician to pair."""

    __tablename__ = "discovered_devices"
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id"), primary_key=True)
    transport: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str] = mapped_column(String(256), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    messages: Mapped[int] = mapped_column(Integer)
    said: Mapped[str] = mapped_column(String(200), default="")
    # What its transport describes it as: its model, the type its exposes suggest.
    model: Mapped[str | None] = mapped_column(String(64))
    suggested_type: Mapped[str | None] = mapped_column(String(32))
    reported_at: Mapped[datetime]


class AuditEntry(Base):
    """Who did or read what, when: every action, and every read of resident data."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]]
    # Its place in the organisation's audit chain (cloud/chain.py, docs/audit.md): its
    # number, the hash of the entry before it, and its own hash over both and the above.
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("audit_by_org_time", "org_id", "at"),
        UniqueConstraint("org_id", "seq", name="audit_chain_seq"),
    )


class LockLogEntry(Base):
    """Every command to a lock and every event of one: who, which lock, when, what was
    asked, and what came of it (granted, refused and why, the lock's confirmation). One
    hash chain per lock (cloud/locklog.py, docs/audit.md)."""

    __tablename__ = "lock_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    lock_id: Mapped[str] = mapped_column(String(128))
    home_id: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    # unlock, lock; or what the lock reported: opened, jammed, jam_cleared.
    action: Mapped[str] = mapped_column(String(32))
    # granted, refused; issued, accepted, done, failed, expired; reported (an event).
    outcome: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))
    command_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]]
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("org_id", "lock_id", "seq", name="lock_log_chain_seq"),)


class LogChain(Base):
    """The head of one hash chain: its newest entry's number and hash. Writers take this
    row FOR UPDATE to append, which serialises them per chain; it also records how long
    the chain is, so that its newest entries cannot be removed unnoticed (unless this
    row is changed with them: docs/audit.md)."""

    __tablename__ = "log_chains"
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    chain: Mapped[str] = mapped_column(String(160), primary_key=True)  # audit, lock:<id>
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class Gateway(Base):
    __tablename__ = "gateways"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    last_seen_at: Mapped[datetime | None]
    online: Mapped[bool | None]
    # What its heartbeats say of themselves, and since when it is away (cloud/supervision.py).
    heartbeat_interval_s: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    offline_since: Mapped[datetime | None]
    # Its broker password in mosquitto's own hash format (the plain one is only in the
    # bundle given to the technician); None for a gateway that authenticates otherwise.
    broker_password_hash: Mapped[str | None] = mapped_column(String(200))
    # The revision of the last inventory it reported, and when. 64 bits: a gateway's
    # revision never falls below its clock's seconds (gateway/inventory.py).
    inventory_revision: Mapped[int | None] = mapped_column(BigInteger)
    inventory_at: Mapped[datetime | None]
    # The health its last heartbeat carried (devices/wire.py GatewayHealth), when, and
    # how far its clock was ahead of the dispatch service's then (seconds, with transit).
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    health_at: Mapped[datetime | None]
    clock_offset_s: Mapped[float | None] = mapped_column(Float)


class GatewayConfigurationRecord(Base):
    """One version of a gateway's configuration (devices/wire.py GatewayConfiguration,
    without its version in ``body``), as a technician set it (cloud/configuration.py)."""

    __tablename__ = "gateway_configurations"
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class CommandRecord(Base):
    """A signed command to one device through its gateway, and where it has got to:
    pending -> accepted -> done | failed, or refused | expired (cloud/commands.py)."""

    __tablename__ = "commands"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    gateway_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    issued_by: Mapped[str] = mapped_column(String(100))
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime]
    signed: Mapped[dict[str, Any]]  # the Command exactly as published

    __table_args__ = (
        Index("commands_by_gateway", "org_id", "gateway_id", "issued_at"),
        Index("commands_open", "state", "expires_at"),
    )


class Alarm(Base):
    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    gateway_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(128))
    device_type: Mapped[str] = mapped_column(String(64))
    home_id: Mapped[str] = mapped_column(String(128))
    resident_id: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    priority_rank: Mapped[int]
    state: Mapped[str] = mapped_column(String(20))
    event_count: Mapped[int]
    first_event_id: Mapped[str] = mapped_column(String(80))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    restored_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    acknowledged_at: Mapped[datetime | None]
    # The lifecycle (cloud/lifecycle.py); ``version`` makes every transition a compare-and-set.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None]
    assigned_to: Mapped[str | None] = mapped_column(String(100))
    assigned_at: Mapped[datetime | None]
    # The assigned staff member said they are on their way (a decline clears the assignee).
    accepted_at: Mapped[datetime | None]
    on_site_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    resolved_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    resolution_note: Mapped[str | None] = mapped_column(String(2000))
    # The latest event folded into this alarm, and the latest position any of them carried.
    last_event_at: Mapped[datetime | None]
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    # Escalation (cloud/escalation.py): the latest reason, when, and how many so far.
    escalated_at: Mapped[datetime | None]
    escalation: Mapped[str | None] = mapped_column(String(20))
    escalation_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The team serving the home when the alarm was raised (its home's, then).
    team_id: Mapped[int | None] = mapped_column(Integer)
    # Raised by a device in test: shown as a test, never escalated or sounded.
    test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("alarms_queue", "org_id", "state", "priority_rank", "received_at"),
        Index("alarms_open_by_device", "org_id", "device_id", "kind", "state"),
        # GET /alarms without a state filter: priority then age, read off the index.
        Index("alarms_by_priority_then_age", "org_id", "priority_rank", "received_at", "id"),
    )


class Visit(Base):
    """A planned visit by home-care staff: what makes a door openable outside an alarm."""

    __tablename__ = "visits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    home_id: Mapped[str] = mapped_column(String(128))
    resident_id: Mapped[str | None] = mapped_column(String(128))
    # Who goes: one staff member, or (unnamed yet) anyone of a team.
    staff: Mapped[str | None] = mapped_column(String(100))
    team_id: Mapped[int | None] = mapped_column(Integer)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(String(500), default="", server_default="")
    # The planning system's own id for the visit (an import updates what it made before).
    external_id: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("org_id", "external_id", name="visits_external_id_per_org"),
        Index("visits_by_staff", "org_id", "staff", "starts_at"),
        Index("visits_by_time", "org_id", "starts_at"),
    )


class Consent(Base):
    """A resident's consent to one service (locks, camera checks, positions): who gave
    it, who recorded it, from when, and its withdrawal. Without one a service is off."""

    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    resident_id: Mapped[str] = mapped_column(String(128))
    service: Mapped[str] = mapped_column(String(16))
    given_by: Mapped[str] = mapped_column(String(20))  # resident, cohabitant, representative
    given_by_name: Mapped[str | None] = mapped_column(String(200))
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime]
    valid_from: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (Index("consents_of_resident", "org_id", "resident_id", "service"),)


class DoorOpening(Base):
    """A door opened by staff for an alarm or a visit, followed until it is locked again:
    after the visit (or the alarm) the dispatch service locks it, and a door that is still
    not locked after the grace raises door_left_open (cloud/doors.py)."""

    __tablename__ = "door_openings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    lock_id: Mapped[str] = mapped_column(String(128))
    home_id: Mapped[str] = mapped_column(String(128))
    opened_by: Mapped[str] = mapped_column(String(100))
    opened_at: Mapped[datetime]
    command_id: Mapped[str] = mapped_column(String(64))
    alarm_id: Mapped[int | None] = mapped_column(Integer)
    visit_id: Mapped[int | None] = mapped_column(Integer)
    # The automatic lock: its command, when it was sent; then how it ended.
    relock_command_id: Mapped[str | None] = mapped_column(String(64))
    relock_at: Mapped[datetime | None]
    left_open_alarm_id: Mapped[int | None] = mapped_column(Integer)
    closed_at: Mapped[datetime | None]
    closed_how: Mapped[str | None] = mapped_column(String(20))  # locked, left_open

    __table_args__ = (Index("door_openings_open", "org_id", "closed_at"),)


class PushSubscription(Base):
    """One staff member's phone or browser that gets a Web Push for each new assignment
    (cloud/push.py): the push service's endpoint and the browser's encryption keys."""

    __tablename__ = "push_subscriptions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", name="push_subscriptions_user_id_fkey")
    )
    # A browser has one endpoint per subscription: signing in as someone else on the same
    # phone moves it to them.
    endpoint: Mapped[str] = mapped_column(String(1000))
    p256dh: Mapped[str] = mapped_column(String(100))  # URL-safe base64, unpadded
    auth: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(100), default="", server_default="")
    created_at: Mapped[datetime]
    last_sent_at: Mapped[datetime | None]
    # Failed pushes since the last one that got through (a 404 or 410 removes the row).
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("endpoint", name="push_subscriptions_endpoint_key"),
        Index("push_subscriptions_of_user", "user_id"),
    )


class EventRecord(Base):
    """Every event ever received, once per gateway that sent it.

    An event id is a gateway's own (derived from its devices' sequences): another
    organisation's gateway, or another gateway of the same one, may send the same id for
    another occurrence. So the key is (organisation, gateway, event id), never the id alone.
    """

    __tablename__ = "events"
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    alarm_id: Mapped[int | None] = mapped_column(ForeignKey("alarms.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[str] = mapped_column(String(128))
    restore: Mapped[bool]
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    detail: Mapped[dict[str, Any]]

    __table_args__ = (
        Index("events_by_gateway_time", "org_id", "gateway_id", "received_at"),
        Index("events_by_org_time", "org_id", "received_at"),
    )


class AlarmTransition(Base):
    """One step of an alarm's lifecycle: who did what, when, from which state."""

    __tablename__ = "alarm_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    action: Mapped[str] = mapped_column(String(20))
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    by: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime]
    detail: Mapped[dict[str, Any]]


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        # One writer at a time in SQLite; wait for the lock rather than fail.
        return create_async_engine(url, connect_args={"timeout": 30})
    return create_async_engine(url, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
