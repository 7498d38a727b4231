"""Organisations' people and places: teams, users, homes, residents, gateways, devices,
and the audit log. Everything is scoped to the caller's organisation; writes and reads of
resident data are audited."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from devices import DeviceType, utc_now
from devices.wire import GATEWAY_ID_PATTERN

from ..audit import audit, read_audit
from ..clock import database_now
from ..db import (
    Alarm,
    Device,
    DiscoveredDevice,
    EventRecord,
    Gateway,
    Home,
    Resident,
    Team,
    User,
)
from ..security import Role, hash_password
from ..signin import revoke_sessions
from .deps import (
    Admin,
    AuditReader,
    DeviceManager,
    DeviceReader,
    GatewayReader,
    HomeReader,
    PeopleReader,
    ResidentReader,
    SessionDep,
)
from .strict import TEXT_BODY_BYTES, StrictRoute

router = APIRouter(tags=["organisation"], route_class=StrictRoute)

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
Text = Annotated[str, Field(max_length=2000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


Out = TypeVar("Out", bound=_Out)


async def _listed(
    session: AsyncSession, user: User, model: Any, out: type[Out], order: Any, *where: Any
) -> list[Out]:
    """The caller's organisation's rows of ``model``, and only those."""
    query = select(model).where(model.org_id == user.org_id, *where).order_by(order)
    return [out.model_validate(row) for row in (await session.execute(query)).scalars()]


def _not_found(kind: str, key: object) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No {kind} {key}")


async def _commit(session: AsyncSession, conflict: str) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=conflict) from None


# -- teams and users ---------------------------------------------------------------------


class TeamIn(_In):
    name: str = Field(min_length=1, max_length=100)


class TeamOut(_Out):
    id: int
    name: str


@router.get("/teams")
async def list_teams(user: PeopleReader, session: SessionDep) -> list[TeamOut]:
    return await _listed(session, user, Team, TeamOut, Team.name)


@router.post("/teams", status_code=status.HTTP_201_CREATED)
async def create_team(body: TeamIn, user: Admin, session: SessionDep) -> TeamOut:
    team = Team(org_id=user.org_id, name=body.name)
    session.add(team)
    await session.flush()
    audit(session, user, "team.create", f"team:{team.id}", {"name": body.name})
    await _commit(session, f"There is already a team called {body.name!r}")
    return TeamOut.model_validate(team)


class UserIn(_In):
    username: str = Field(min_length=2, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")
    password: str = Field(min_length=10, max_length=200)
    role: Role
    team_id: int | None = None


class UserOut(_Out):
    username: str
    role: str
    team_id: int | None
    created_at: datetime
    disabled_at: datetime | None = None
    second_factor: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_user(cls, value: Any) -> Any:
        if isinstance(value, User):
            return {
                "username": value.username,
                "role": value.role,
                "team_id": value.team_id,
                "created_at": value.created_at,
                "disabled_at": value.disabled_at,
                "second_factor": value.totp_enabled_at is not None,
            }
        return value


@router.get("/users")
async def list_users(user: PeopleReader, session: SessionDep) -> list[UserOut]:
    return await _listed(session, user, User, UserOut, User.username)


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserIn, user: Admin, session: SessionDep) -> UserOut:
    if body.team_id is not None:
        team = await session.get(Team, body.team_id)
        if team is None or team.org_id != user.org_id:
            raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail=f"No team {body.team_id}")
    created = User(
        org_id=user.org_id,
        username=body.username,
        password_hash=hash_password(body.password),
        role=body.role.value,
        team_id=body.team_id,
        created_at=utc_now(),
    )
    session.add(created)
    audit(session, user, "user.create", f"user:{body.username}", {"role": body.role.value})
    await _commit(session, f"The username {body.username!r} is taken")
    return UserOut.model_validate(created)


@router.post("/users/{username}/disable")
async def disable_user(username: str, user: Admin, session: SessionDep) -> UserOut:
    """They can no longer sign in, and every session of theirs ends (a live console's
    stream within seconds)."""
    return await _set_disabled(username, user, session, disabled=True)


@router.post("/users/{username}/enable")
async def enable_user(username: str, user: Admin, session: SessionDep) -> UserOut:
    return await _set_disabled(username, user, session, disabled=False)


async def _set_disabled(
    username: str, user: User, session: AsyncSession, *, disabled: bool
) -> UserOut:
    target = (
        await session.execute(
            select(User).where(User.username == username, User.org_id == user.org_id)
        )
    ).scalar_one_or_none()
    if target is None:
        raise _not_found("user", username)
    if disabled and target.id == user.id:
        raise HTTPException(HTTPStatus.CONFLICT, detail="You cannot disable yourself")
    now = await database_now(session)
    target.disabled_at = now if disabled else None
    ended = await revoke_sessions(session, target.id, now) if disabled else 0
    action = "user.disable" if disabled else "user.enable"
    audit(session, user, action, f"user:{username}", {"sessions": ended} if disabled else {})
    await session.commit()
    return UserOut.model_validate(target)


# -- homes and residents -------------------------------------------------------------------


class HomeIn(_In):
    address: str = Field(min_length=1, max_length=300)
    key_safe: str | None = Field(default=None, max_length=100)
    notes: Text = ""
    # Where it is (WGS 84), for the operator's map; both or neither.
    latitude: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    longitude: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    team_id: int | None = Field(default=None, ge=1, le=2**31 - 1)  # the team serving it

    @model_validator(mode="after")
    def _both_or_neither(self) -> HomeIn:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude: give both or neither")
        return self


class HomeNew(HomeIn):
    id: str = Field(pattern=_ID)


class HomeOut(_Out):
    """A home as listed: whether it has a key-safe note, never the note itself (the code
    is shown only to whoever goes there, or handles its alarm, and that is audited)."""

    id: str
    address: str
    key_safe_set: bool
    notes: str
    latitude: float | None
    longitude: float | None
    team_id: int | None

    @model_validator(mode="before")
    @classmethod
    def _from_home(cls, value: Any) -> Any:
        if isinstance(value, Home):
            return {
                "id": value.id,
                "address": value.address,
                "key_safe_set": bool(value.key_safe),
                "notes": value.notes,
                "latitude": value.latitude,
                "longitude": value.longitude,
                "team_id": value.team_id,
            }
        return value


@router.get("/homes")
async def list_homes(user: HomeReader, session: SessionDep) -> list[HomeOut]:
    return await _listed(session, user, Home, HomeOut, Home.id)


async def _team_exists(session: AsyncSession, org_id: str, team_id: int | None) -> None:
    team = await session.get(Team, team_id) if team_id is not None else None
    if team_id is not None and (team is None or team.org_id != org_id):
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail=f"team_id: no team {team_id}")


@router.post("/homes", status_code=status.HTTP_201_CREATED, max_body_size=TEXT_BODY_BYTES)
async def create_home(body: HomeNew, user: Admin, session: SessionDep) -> HomeOut:
    await _team_exists(session, user.org_id, body.team_id)
    home = Home(org_id=user.org_id, **body.model_dump())
    session.add(home)
    audit(session, user, "home.create", f"home:{body.id}")
    await _commit(session, f"There is already a home {body.id}")
    return HomeOut.model_validate(home)


@router.put("/homes/{home_id}", max_body_size=TEXT_BODY_BYTES)
async def update_home(home_id: str, body: HomeIn, user: Admin, session: SessionDep) -> HomeOut:
    home = await session.get(Home, (user.org_id, home_id))
    if home is None:
        raise _not_found("home", home_id)
    await _team_exists(session, user.org_id, body.team_id)
    for key, value in body.model_dump().items():
        setattr(home, key, value)
    audit(session, user, "home.update", f"home:{home_id}")
    await session.commit()
    return HomeOut.model_validate(home)


class Contact(_In):
    name: str = Field(min_length=1, max_length=200)
    relation: str = Field(default="", max_length=100)
    phone: str = Field(pattern=r"^\+?[0-9 ()-]{5,30}$")


class ResidentIn(_In):
    home_id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=200)
    born: date | None = None
    language: str | None = Field(default=None, pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
    notes: Text = ""
    contacts: list[Contact] = Field(default=[], max_length=20)

    @field_validator("born")
    @classmethod
    def _born_in_the_past(cls, value: date | None) -> date | None:
        if value is not None and not date(1890, 1, 1) <= value <= date.today():
            raise ValueError("a birth date between 1890 and today")
        return value


class ResidentNew(ResidentIn):
    id: str = Field(pattern=_ID)


class ResidentSummary(_Out):
    id: str
    home_id: str
    name: str


class ResidentOut(ResidentSummary):
    born: date | None
    language: str | None
    notes: str
    contacts: list[dict[str, Any]]


async def _home_exists(session: AsyncSession, org_id: str, home_id: str) -> None:
    if await session.get(Home, (org_id, home_id)) is None:
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail=f"home_id: no home {home_id}")


@router.get("/residents")
async def list_residents(user: ResidentReader, session: SessionDep) -> list[ResidentSummary]:
    """Names and homes only; reading one resident's details is logged."""
    return await _listed(session, user, Resident, ResidentSummary, Resident.name)


@router.get("/residents/{resident_id}")
async def get_resident(resident_id: str, user: ResidentReader, session: SessionDep) -> ResidentOut:
    resident = await session.get(Resident, (user.org_id, resident_id))
    if resident is None:
        raise _not_found("resident", resident_id)
    audit(session, user, "resident.read", f"resident:{resident_id}")
    await session.commit()
    return ResidentOut.model_validate(resident)


@router.post("/residents", status_code=status.HTTP_201_CREATED, max_body_size=TEXT_BODY_BYTES)
async def create_resident(body: ResidentNew, user: Admin, session: SessionDep) -> ResidentOut:
    await _home_exists(session, user.org_id, body.home_id)
    resident = Resident(org_id=user.org_id, **body.model_dump())
    session.add(resident)
    audit(session, user, "resident.create", f"resident:{body.id}")
    await _commit(session, f"There is already a resident {body.id}")
    return ResidentOut.model_validate(resident)


@router.put("/residents/{resident_id}", max_body_size=TEXT_BODY_BYTES)
async def update_resident(
    resident_id: str, body: ResidentIn, user: Admin, session: SessionDep
) -> ResidentOut:
    resident = await session.get(Resident, (user.org_id, resident_id))
    if resident is None:
        raise _not_found("resident", resident_id)
    await _home_exists(session, user.org_id, body.home_id)
    for key, value in body.model_dump().items():
        setattr(resident, key, value)
    audit(session, user, "resident.update", f"resident:{resident_id}")
    await session.commit()
    return ResidentOut.model_validate(resident)


# -- gateways and devices ------------------------------------------------------------------


class GatewayIn(_In):
    id: str = Field(pattern=GATEWAY_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith("direct-"):  # the service's own intake (cloud/direct.py)
            raise ValueError("gateway ids starting with direct- are reserved")
        return value


class GatewayOut(_Out):
    id: str
    name: str
    online: bool | None
    last_seen_at: datetime | None
    offline_since: datetime | None
    heartbeat_interval_s: int
    # What its last heartbeat said of its health (devices/wire.py GatewayHealth), when,
    # and how far its clock was ahead of the dispatch service's (seconds, with transit).
    health: dict[str, Any] | None = None
    health_at: datetime | None = None
    clock_offset_s: float | None = None
    inventory_revision: int | None = None


@router.get("/gateways")
async def list_gateways(user: GatewayReader, session: SessionDep) -> list[GatewayOut]:
    return await _listed(session, user, Gateway, GatewayOut, Gateway.id)


@router.post("/gateways", status_code=status.HTTP_201_CREATED)
async def create_gateway(body: GatewayIn, user: Admin, session: SessionDep) -> GatewayOut:
    gateway = Gateway(
        id=body.id, org_id=user.org_id, name=body.name, last_seen_at=None, online=None
    )
    session.add(gateway)
    audit(session, user, "gateway.create", f"gateway:{body.id}")
    await _commit(session, f"The gateway id {body.id} is taken")
    await session.refresh(gateway)
    return GatewayOut.model_validate(gateway)


class DeviceIn(_In):
    id: str = Field(pattern=_ID)
    gateway_id: str = Field(pattern=GATEWAY_ID_PATTERN)
    home_id: str = Field(pattern=_ID)
    type: DeviceType
    resident_id: str | None = Field(default=None, pattern=_ID)


class DeviceOut(_Out):
    id: str
    gateway_id: str
    home_id: str
    type: str
    resident_id: str | None
    test_until: datetime | None = None
    # What its gateway reported of it (cloud/devicestate.py); None until it did.
    transport: str | None = None
    firmware: str | None = None
    actions: list[str] | None = None  # what its gateway can make it do (the inventory)
    address: str | None = None
    # When its gateway's inventory last named it; None: not (any more), or never.
    reported_at: datetime | None = None
    # "config" (the gateway's file), "paired" (on the gateway: for the centre to take
    # over into its configuration), "remote" (the configuration here).
    origin: str | None = None
    last_seen_at: datetime | None = None
    battery_pct: float | None = None
    linkquality: float | None = None
    rssi_dbm: float | None = None
    online: bool | None = None
    faults: list[str] | None = None
    checkin_due_at: datetime | None = None
    contact: str | None = None
    lock_state: str | None = None
    state_at: datetime | None = None
    # Its last test alarm (the installation checklist): when it arrived, and how long it
    # took from the gateway taking it to the dispatch service's commit.
    last_test_at: datetime | None = None
    last_test_delay_ms: float | None = None


class DiscoveredOut(_Out):
    transport: str
    address: str
    first_seen: datetime
    last_seen: datetime
    messages: int
    said: str
    model: str | None = None
    suggested_type: str | None = None
    reported_at: datetime


@router.get("/gateways/{gateway_id}/discovered")
async def list_discovered(
    gateway_id: str, user: DeviceManager, session: SessionDep
) -> list[DiscoveredOut]:
    """What the gateway hears but has not paired, newest first, as it last reported:
    for a technician to pair (what a device said is its fields' names, never values)."""
    gateway = await session.get(Gateway, gateway_id)
    if gateway is None or gateway.org_id != user.org_id:
        raise _not_found("gateway", gateway_id)
    rows = await session.scalars(
        select(DiscoveredDevice)
        .where(DiscoveredDevice.gateway_id == gateway_id)
        .order_by(DiscoveredDevice.last_seen.desc())
    )
    return [DiscoveredOut.model_validate(d) for d in rows]


class GatewayEventOut(_Out):
    """One event of a gateway's devices as a technician reads it: what, which device,
    when; never its detail (a position, a resident's words on a lock's keypad)."""

    device_id: str
    kind: str
    priority: str
    restore: bool
    test: bool
    occurred_at: datetime
    received_at: datetime


@router.get("/gateways/{gateway_id}/events")
async def list_gateway_events(
    gateway_id: str,
    user: DeviceManager,
    session: SessionDep,
    device_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[GatewayEventOut]:
    """The gateway's devices' events (alarms, faults and their restores, tests), newest
    first: the device and gateway history a technician looks back through."""
    gateway = await session.get(Gateway, gateway_id)
    if gateway is None or gateway.org_id != user.org_id:
        raise _not_found("gateway", gateway_id)
    query = select(EventRecord).where(
        EventRecord.org_id == user.org_id, EventRecord.gateway_id == gateway_id
    )
    if device_id is not None:
        query = query.where(EventRecord.device_id == device_id)
    rows = await session.scalars(query.order_by(EventRecord.received_at.desc()).limit(limit))
    return [
        GatewayEventOut(
            device_id=e.device_id,
            kind=e.kind,
            priority=e.priority,
            restore=e.restore,
            test=e.detail.get("test") is True,
            occurred_at=e.occurred_at,
            received_at=e.received_at,
        )
        for e in rows
    ]


class TestWindow(_In):
    minutes: int = Field(ge=1, le=240, description="how long its alarms are tests")


@router.post("/devices/{device_id}/test")
async def start_test(
    device_id: str, body: TestWindow, user: DeviceManager, session: SessionDep
) -> DeviceOut:
    """Put a device in test (a technician installing or checking it): the alarms it
    raises until then are tests, shown as such, never escalated or sounded."""
    device = await session.get(Device, (user.org_id, device_id))
    if device is None:
        raise _not_found("device", device_id)
    device.test_until = await database_now(session) + timedelta(minutes=body.minutes)
    audit(session, user, "device.test", f"device:{device_id}", {"minutes": body.minutes})
    await session.commit()
    return DeviceOut.model_validate(device)


@router.delete("/devices/{device_id}/test")
async def end_test(device_id: str, user: DeviceManager, session: SessionDep) -> DeviceOut:
    device = await session.get(Device, (user.org_id, device_id))
    if device is None:
        raise _not_found("device", device_id)
    device.test_until = None
    audit(session, user, "device.test_end", f"device:{device_id}")
    await session.commit()
    return DeviceOut.model_validate(device)


@router.get("/devices")
async def list_devices(
    user: DeviceReader, session: SessionDep, home_id: str | None = None
) -> list[DeviceOut]:
    where = [] if home_id is None else [Device.home_id == home_id]
    devices = await _listed(session, user, Device, DeviceOut, Device.id, *where)
    latest = (
        select(Alarm.device_id, func.max(Alarm.received_at).label("at"))
        .where(Alarm.org_id == user.org_id, Alarm.test.is_(True))
        .group_by(Alarm.device_id)
        .subquery()
    )
    rows = await session.execute(
        select(Alarm.device_id, Alarm.received_at, Alarm.occurred_at)
        .join(latest, (latest.c.device_id == Alarm.device_id) & (latest.c.at == Alarm.received_at))
        .where(Alarm.org_id == user.org_id, Alarm.test.is_(True))
    )
    tests = {d: (at, (at - occurred).total_seconds() * 1000) for d, at, occurred in rows}
    for device in devices:
        if device.id in tests:
            at, delay = tests[device.id]
            device.last_test_at, device.last_test_delay_ms = at, round(max(0.0, delay), 1)
    return devices


@router.post("/devices", status_code=status.HTTP_201_CREATED)
async def create_device(body: DeviceIn, user: DeviceManager, session: SessionDep) -> DeviceOut:
    gateway = await session.get(Gateway, body.gateway_id)
    if gateway is None or gateway.org_id != user.org_id:
        raise HTTPException(
            HTTPStatus.UNPROCESSABLE_ENTITY, detail=f"gateway_id: no gateway {body.gateway_id}"
        )
    await _home_exists(session, user.org_id, body.home_id)
    device = Device(org_id=user.org_id, **body.model_dump(mode="json"))
    session.add(device)
    audit(session, user, "device.create", f"device:{body.id}", {"type": body.type.value})
    await _commit(session, f"There is already a device {body.id}")
    return DeviceOut.model_validate(device)


# -- the audit log -------------------------------------------------------------------------


class AuditOut(_Out):
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    detail: dict[str, Any]


@router.get("/audit")
async def get_audit(
    user: AuditReader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Annotated[int | None, Query(ge=1, description="page back from this entry")] = None,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[a-z_.]+$", description="an action or its family"),
    ] = None,
) -> list[AuditOut]:
    """Newest first."""
    rows = await read_audit(
        session,
        user.org_id,
        limit=limit,
        before=before,
        actor=actor,
        target=target,
        action=action,
    )
    return [AuditOut.model_validate(r) for r in rows]
