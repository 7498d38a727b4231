"""Home-care staff on their phones: my alarms, my day, my doors (docs/staff.md).

Everything here is the signed-in staff member's own: the alarms assigned to them (and,
where the organisation allows it, their team's unassigned ones, to take), their visits,
and the doors of those homes. A resident's card (name, contacts, notes, the key safe) is
readable only while the alarm is theirs or inside their visit's window, and each read is
audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import audit
from ..clock import database_now
from ..db import Alarm, CommandRecord, Device, Home, Organisation, Resident, User, Visit
from ..doors import DoorAction, DoorRefused, home_locks, visit_is_mine, visit_window
from ..lifecycle import OPEN_STATES, Action, Actor, AlarmState, Outcome, TransitionError, apply
from ..schemas import AlarmChange, AlarmPublic, CommandChange, CommandPublic, ResidentContext
from ..security import Role
from ..services import Services
from .deps import ServicesDep, SessionDep, SignedInDep, require_role
from .live import live_stream
from .strict import TEXT_BODY_BYTES, StrictRoute

log = logging.getLogger("trygg.cloud.api")

router = APIRouter(prefix="/my", tags=["staff"], route_class=StrictRoute)

Staff = Annotated[User, Depends(require_role(Role.STAFF))]
AlarmId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the alarm's id")]
VisitId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the visit's id")]
LockId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$", description="lock")
]
CommandId = Annotated[str, Path(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
_TAKEABLE_STATES = (AlarmState.NEW.value, AlarmState.ACKNOWLEDGED.value)
_MINE_STATES = (AlarmState.ASSIGNED.value, AlarmState.ON_SITE.value)


class LockPublic(BaseModel):
    id: str
    state: str | None  # as its confirmations last said: locked, unlocked, jammed


class StaffAlarm(AlarmPublic):
    """An alarm as its staff member sees it: where to go, and which doors they can open."""

    address: str | None = None
    home_latitude: float | None = None
    home_longitude: float | None = None
    locks: list[LockPublic] = []
    takeable: bool = False  # my team's, unassigned, and I may take it


class StaffHome(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    address: str
    key_safe: str | None
    notes: str
    latitude: float | None = None
    longitude: float | None = None
    away: bool = False  # the resident is away (cloud/away.py)


class StaffAlarmCard(BaseModel):
    alarm: StaffAlarm
    resident: ResidentContext | None
    home: StaffHome | None


class StaffVisit(BaseModel):
    id: int
    home_id: str
    resident_id: str | None
    address: str | None
    starts_at: datetime
    ends_at: datetime
    opens_from: datetime  # the door opens from then (the organisation's margin)
    opens_until: datetime
    note: str
    staff: str | None
    team_id: int | None
    locks: list[LockPublic]
    open_now: bool


class StaffVisitCard(BaseModel):
    visit: StaffVisit
    resident: ResidentContext | None
    home: StaffHome | None


class DoorResult(BaseModel):
    """A door command and where it got to: done (the lock confirmed), failed (jammed,
    no_answer, unreachable), refused by the gateway, expired, or still on its way."""

    command_id: str
    lock_id: str
    action: str
    state: str
    reason: str | None
    detail: str | None

    @classmethod
    def of(cls, command: CommandPublic) -> DoorResult:
        return cls(
            command_id=command.id,
            lock_id=command.device_id,
            action=command.action,
            state=command.state,
            reason=command.reason,
            detail=command.detail,
        )


class DeclineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500, description="why you cannot go")


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Outcome
    note: str | None = Field(default=None, max_length=2000)


class DoorBody(BaseModel):
    """For which alarm, or which visit, the door is to open: exactly one."""

    model_config = ConfigDict(extra="forbid")
    alarm_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    visit_id: int | None = Field(default=None, ge=1, le=2**31 - 1)

    @model_validator(mode="after")
    def _one(self) -> DoorBody:
        if (self.alarm_id is None) == (self.visit_id is None):
            raise ValueError("give exactly one of alarm_id and visit_id")
        return self


# --- building the answers ---------------------------------------------------------------


async def _org(session: AsyncSession, user: User) -> Organisation:
    org = await session.get(Organisation, user.org_id)
    assert org is not None
    return org


def _locks(devices: list[Device]) -> list[LockPublic]:
    return [LockPublic(id=d.id, state=d.lock_state) for d in devices]


def _takeable(alarm: Alarm, user: User, org: Organisation) -> bool:
    return (
        org.staff_may_take
        and user.team_id is not None
        and alarm.team_id == user.team_id
        and alarm.assigned_to is None
        and alarm.state in _TAKEABLE_STATES
        and not alarm.test
    )


async def staff_alarm(
    session: AsyncSession, alarm: Alarm, user: User, org: Organisation
) -> StaffAlarm:
    home = await session.get(Home, (alarm.org_id, alarm.home_id))
    locks = await home_locks(session, alarm.org_id, alarm.home_id)
    base = AlarmPublic.model_validate(alarm).model_dump()
    return StaffAlarm(
        **base,
        address=home.address if home else None,
        home_latitude=home.latitude if home else None,
        home_longitude=home.longitude if home else None,
        locks=_locks(locks) if alarm.assigned_to == user.username else [],
        takeable=_takeable(alarm, user, org),
    )


def _visible(alarm: Alarm, user: User, org: Organisation) -> bool:
    mine = alarm.assigned_to == user.username and alarm.state in OPEN_STATES
    return mine or _takeable(alarm, user, org)


async def _my_alarm(session: AsyncSession, user: User, alarm_id: int) -> Alarm:
    alarm = await session.get(Alarm, alarm_id, populate_existing=True)
    if alarm is None or alarm.org_id != user.org_id or alarm.assigned_to != user.username:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No alarm {alarm_id} of yours")
    return alarm


async def _resident(session: AsyncSession, org_id: str, resident_id: str | None) -> Any:
    if resident_id is None:
        return None
    return await session.get(Resident, (org_id, resident_id))


def _read_card(
    session: AsyncSession,
    user: User,
    resident: Resident | None,
    home: Home | None,
    why: dict[str, Any],
) -> None:
    """Reading a card is audited: the resident's data, and the key safe on its own."""
    if resident is not None:
        audit(session, user, "resident.read", f"resident:{resident.id}", why)
    if home is not None and home.key_safe:
        audit(session, user, "keysafe.read", f"home:{home.id}", why)


# --- my alarms --------------------------------------------------------------------------


@router.get("/alarms")
async def my_alarms(user: Staff, session: SessionDep) -> list[StaffAlarm]:
    """The open alarms assigned to me, most urgent first; then my team's unassigned ones
    I may take (where the organisation lets staff take alarms)."""
    org = await _org(session, user)
    order = (Alarm.priority_rank, Alarm.received_at, Alarm.id)
    mine = await session.execute(
        select(Alarm)
        .where(
            Alarm.org_id == user.org_id,
            Alarm.assigned_to == user.username,
            Alarm.state.in_(_MINE_STATES),
        )
        .order_by(*order)
    )
    found = list(mine.scalars())
    if org.staff_may_take and user.team_id is not None:
        open_to_take = await session.execute(
            select(Alarm)
            .where(
                Alarm.org_id == user.org_id,
                Alarm.team_id == user.team_id,
                Alarm.assigned_to.is_(None),
                Alarm.state.in_(_TAKEABLE_STATES),
                Alarm.test.is_(False),
            )
            .order_by(*order)
            .limit(100)
        )
        found += list(open_to_take.scalars())
    return [await staff_alarm(session, a, user, org) for a in found]


@router.get("/alarms/{alarm_id}")
async def my_alarm_card(alarm_id: AlarmId, user: Staff, session: SessionDep) -> StaffAlarmCard:
    """The alarm with the resident's card and how to get in: only while it is mine."""
    alarm = await _my_alarm(session, user, alarm_id)
    if alarm.state not in _MINE_STATES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Alarm {alarm_id} is {alarm.state}")
    org = await _org(session, user)
    home = await session.get(Home, (user.org_id, alarm.home_id))
    resident = await _resident(session, user.org_id, alarm.resident_id)
    _read_card(session, user, resident, home, {"alarm": alarm_id})
    await session.commit()
    return StaffAlarmCard(
        alarm=await staff_alarm(session, alarm, user, org),
        resident=ResidentContext.model_validate(resident) if resident else None,
        home=StaffHome.model_validate(home) if home else None,
    )


async def _act(
    alarm_id: int,
    action: Action,
    user: User,
    session: AsyncSession,
    services: Services,
    *,
    outcome: Outcome | None = None,
    note: str | None = None,
) -> StaffAlarm:
    actor = Actor(user.username, Role(user.role))
    try:
        alarm = await apply(
            session, user.org_id, alarm_id, action, actor, outcome=outcome, note=note
        )
    except TransitionError as exc:
        await session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if alarm is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No alarm {alarm_id}")
    detail: dict[str, Any] = {"outcome": outcome.value} if outcome else {}
    if action is Action.DECLINE:
        detail["reason"] = note
    audit(session, user, f"alarm.{action.value}", f"alarm:{alarm_id}", detail)
    await session.commit()
    services.hub.publish(
        user.org_id, AlarmChange(type="updated", alarm=AlarmPublic.model_validate(alarm))
    )
    return await staff_alarm(session, alarm, user, await _org(session, user))


@router.post("/alarms/{alarm_id}/accept")
async def accept(
    alarm_id: AlarmId, user: Staff, session: SessionDep, services: ServicesDep
) -> StaffAlarm:
    """I am on my way."""
    await _my_alarm(session, user, alarm_id)
    return await _act(alarm_id, Action.ACCEPT, user, session, services)


@router.post("/alarms/{alarm_id}/decline", max_body_size=TEXT_BODY_BYTES)
async def decline(
    alarm_id: AlarmId, body: DeclineBody, user: Staff, session: SessionDep, services: ServicesDep
) -> StaffAlarm:
    """I cannot go: back to the operators' queue with the reason, escalated so they
    send someone else first."""
    await _my_alarm(session, user, alarm_id)
    return await _act(alarm_id, Action.DECLINE, user, session, services, note=body.reason)


@router.post("/alarms/{alarm_id}/on-site")
async def on_site(
    alarm_id: AlarmId, user: Staff, session: SessionDep, services: ServicesDep
) -> StaffAlarm:
    """I am with the resident."""
    await _my_alarm(session, user, alarm_id)
    return await _act(alarm_id, Action.ON_SITE, user, session, services)


@router.post("/alarms/{alarm_id}/resolve", max_body_size=TEXT_BODY_BYTES)
async def resolve(
    alarm_id: AlarmId, body: ResolveBody, user: Staff, session: SessionDep, services: ServicesDep
) -> StaffAlarm:
    """Done: how it ended, and a note for the record."""
    await _my_alarm(session, user, alarm_id)
    return await _act(
        alarm_id, Action.RESOLVE, user, session, services, outcome=body.outcome, note=body.note
    )


@router.post("/alarms/{alarm_id}/take")
async def take(
    alarm_id: AlarmId, user: Staff, session: SessionDep, services: ServicesDep
) -> StaffAlarm:
    """Take my team's unassigned alarm (a night patrol on duty), where the organisation
    allows it: it is then assigned to me."""
    org = await _org(session, user)
    alarm = await session.get(Alarm, alarm_id)
    if alarm is None or alarm.org_id != user.org_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No alarm {alarm_id}")
    if not org.staff_may_take:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="Your organisation does not let staff take alarms"
        )
    if user.team_id is None or alarm.team_id != user.team_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Not an alarm of your team")
    if alarm.test:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="A test alarm is not to be taken")
    taken = await _act(alarm_id, Action.TAKE, user, session, services)
    services.push.assigned(user.org_id, user.username, taken)  # their other phones too
    return taken


# --- my day -----------------------------------------------------------------------------


async def staff_visit(
    session: AsyncSession, visit: Visit, org: Organisation, now: datetime
) -> StaffVisit:
    home = await session.get(Home, (visit.org_id, visit.home_id))
    opens, closes = visit_window(visit, org.visit_margin_s)
    return StaffVisit(
        id=visit.id,
        home_id=visit.home_id,
        resident_id=visit.resident_id,
        address=home.address if home else None,
        starts_at=visit.starts_at,
        ends_at=visit.ends_at,
        opens_from=opens,
        opens_until=closes,
        note=visit.note,
        staff=visit.staff,
        team_id=visit.team_id,
        locks=_locks(await home_locks(session, visit.org_id, visit.home_id)),
        open_now=opens <= now <= closes,
    )


def _mine(user: User) -> Any:
    team = (
        (Visit.staff.is_(None)) & (Visit.team_id == user.team_id)
        if user.team_id is not None
        else None
    )
    return (
        (Visit.staff == user.username) | team if team is not None else Visit.staff == user.username
    )


@router.get("/visits")
async def my_visits(
    user: Staff,
    session: SessionDep,
    day: Annotated[date | None, Query(description="YYYY-MM-DD; today where you are")] = None,
) -> list[StaffVisit]:
    """My day: my visits (and my team's not yet given to anyone) that touch the day, in
    the organisation's time zone, in order."""
    org = await _org(session, user)
    zone = ZoneInfo(org.time_zone)
    now = await database_now(session)
    day = day or now.astimezone(zone).date()
    begins = datetime.combine(day, time(), zone)
    ends = begins + timedelta(days=1)
    rows = await session.execute(
        select(Visit)
        .where(
            Visit.org_id == user.org_id,
            Visit.cancelled_at.is_(None),
            _mine(user),
            Visit.starts_at < ends,
            Visit.ends_at > begins,
        )
        .order_by(Visit.starts_at, Visit.id)
        .limit(200)
    )
    return [await staff_visit(session, v, org, now) for v in rows.scalars()]


@router.get("/visits/{visit_id}")
async def my_visit_card(visit_id: VisitId, user: Staff, session: SessionDep) -> StaffVisitCard:
    """The visit with the resident's card and how to get in: only inside its window."""
    visit = await session.get(Visit, visit_id)
    if (
        visit is None
        or visit.org_id != user.org_id
        or visit.cancelled_at is not None
        or not visit_is_mine(visit, user)
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No visit {visit_id} of yours")
    org = await _org(session, user)
    now = await database_now(session)
    shown = await staff_visit(session, visit, org, now)
    if not shown.open_now:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="The resident's card is shown only around the visit "
            f"({shown.opens_from:%H:%M}-{shown.opens_until:%H:%M} UTC)",
        )
    home = await session.get(Home, (user.org_id, visit.home_id))
    resident = await _resident(session, user.org_id, visit.resident_id)
    _read_card(session, user, resident, home, {"visit": visit_id})
    await session.commit()
    return StaffVisitCard(
        visit=shown,
        resident=ResidentContext.model_validate(resident) if resident else None,
        home=StaffHome.model_validate(home) if home else None,
    )


# --- my doors ---------------------------------------------------------------------------


async def _door(
    lock_id: str,
    action: DoorAction,
    body: DoorBody,
    user: User,
    session: AsyncSession,
    services: Services,
) -> DoorResult:
    try:
        command = await services.doors.act(
            session, user, lock_id, action, alarm_id=body.alarm_id, visit_id=body.visit_id
        )
    except DoorRefused as refused:
        raise HTTPException(
            refused.status, detail={"reason": refused.reason, "message": refused.message}
        ) from None
    return DoorResult.of(command)


_DOOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "refused: detail.reason says why (not_assigned, visit_ended, ...)"},
    404: {"description": "no such lock in your organisation"},
    409: {"description": "the lock's gateway does not report it (any more)"},
    503: {"description": "commands are off, or could not be sent"},
}


@router.post("/locks/{lock_id}/unlock", responses=_DOOR_RESPONSES)
async def unlock(
    lock_id: LockId, body: DoorBody, user: Staff, session: SessionDep, services: ServicesDep
) -> DoorResult:
    """Open the door, for an alarm of mine or a visit of mine inside its window; waits a
    few seconds for the lock's answer (then follow the command on the stream)."""
    return await _door(lock_id, "unlock", body, user, session, services)


@router.post("/locks/{lock_id}/lock", responses=_DOOR_RESPONSES)
async def lock(
    lock_id: LockId, body: DoorBody, user: Staff, session: SessionDep, services: ServicesDep
) -> DoorResult:
    """Lock the door as I leave."""
    return await _door(lock_id, "lock", body, user, session, services)


@router.get("/commands/{command_id}")
async def my_command(command_id: CommandId, user: Staff, session: SessionDep) -> DoorResult:
    record = await session.get(CommandRecord, command_id)
    if record is None or record.org_id != user.org_id or record.issued_by != user.username:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No command {command_id} of yours")
    return DoorResult.of(CommandPublic.model_validate(record))


# --- live -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _my_changes(services: Services, user: User) -> AsyncIterator[asyncio.Queue[str | None]]:
    """One queue of rendered events for this staff member: their alarms (and the ones
    they may take) and their door commands, from the organisation's two hubs."""
    out: asyncio.Queue[str | None] = asyncio.Queue(1000)
    shown: set[int] = set()
    async with services.sessions() as session:
        org = await _org(session, user)
        current = await session.execute(
            select(Alarm.id).where(
                Alarm.org_id == user.org_id,
                Alarm.assigned_to == user.username,
                Alarm.state.in_(_MINE_STATES),
            )
        )
        shown.update(current.scalars())

    async def alarms(queue: asyncio.Queue[AlarmChange | None]) -> None:
        while (change := await queue.get()) is not None:
            try:
                data = await _as_seen(change)
            except SQLAlchemyError as exc:  # the database is away: the page reloads later
                log.warning("staff stream: cannot read alarm %d: %s", change.alarm.id, exc)
                continue
            if data is not None:
                await out.put(f"event: alarm\ndata: {_json(data)}\n\n")
        await out.put(None)

    async def _as_seen(change: AlarmChange) -> dict[str, Any] | None:
        async with services.sessions() as session:
            alarm = await session.get(Alarm, change.alarm.id)
            if alarm is None:
                return None
            if _visible(alarm, user, org):
                shown.add(alarm.id)
                seen = await staff_alarm(session, alarm, user, org)
                return {"type": change.type, "alarm": seen.model_dump(mode="json")}
            if alarm.id in shown:  # no longer mine: the page drops it
                shown.discard(alarm.id)
                return {"type": "gone", "alarm": {"id": alarm.id}}
            return None

    async def commands(queue: asyncio.Queue[CommandChange | None]) -> None:
        while (change := await queue.get()) is not None:
            if change.command.issued_by == user.username:
                result = DoorResult.of(change.command)
                await out.put(f"event: command\ndata: {result.model_dump_json()}\n\n")
        await out.put(None)

    async with (
        services.hub.subscribe(user.org_id) as alarm_queue,
        services.command_hub.subscribe(user.org_id) as command_queue,
    ):
        tasks = [
            asyncio.create_task(alarms(alarm_queue)),
            asyncio.create_task(commands(command_queue)),
        ]
        try:
            yield out
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


@router.get("/stream", response_class=StreamingResponse)
async def stream(
    user: Staff, signed_in: SignedInDep, services: ServicesDep, request: Request
) -> StreamingResponse:
    """Server-sent events for me: ``alarm`` (data {type, alarm}) when an alarm of mine,
    or one I may take, changes — type ``gone`` with only the id when it is no longer
    mine —, and ``command`` (a DoorResult) for each step of my door commands."""

    def render(event: str) -> str:
        return event

    return live_stream(
        services,
        request,
        _my_changes(services, user),
        signed_in.session.id,
        render,
        marks_seen=user.id,
    )
