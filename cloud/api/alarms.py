from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import Priority

from ..alarms import alarm_positions, list_alarms
from ..audit import audit
from ..db import Home, Organisation, Resident, User
from ..lifecycle import (
    Action,
    Actor,
    AlarmState,
    Outcome,
    TransitionError,
    apply,
    get_alarm,
    history,
    recent_of_resident,
)
from ..schemas import (
    AlarmChange,
    AlarmDetail,
    AlarmPublic,
    HomeContext,
    Position,
    RecentAlarm,
    ResidentContext,
    SafeZone,
    TransitionPublic,
)
from ..security import Role
from ..services import Services
from .deps import (
    AlarmHandler,
    AlarmReader,
    AlarmViewer,
    OnSiteReporter,
    ServicesDep,
    SessionDep,
    SignedInDep,
)
from .live import live_stream
from .strict import TEXT_BODY_BYTES, StrictRoute

router = APIRouter(prefix="/alarms", tags=["alarms"], route_class=StrictRoute)

# Who may see where a resident is (a GPS pendant's fixes): the people who go or send help.
POSITION_READERS = frozenset({Role.OPERATOR.value, Role.SUPERVISOR.value, Role.STAFF.value})


def as_seen_by(alarm: AlarmPublic, role: str) -> AlarmPublic:
    """The alarm as this role may see it: without its position unless it may see that."""
    if role in POSITION_READERS or alarm.latitude is None:
        return alarm
    return alarm.model_copy(update={"latitude": None, "longitude": None})


# Ids are 32-bit in every database Trygg runs on; anything else cannot be an alarm.
AlarmId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the alarm's id")]


@router.get("")
async def get_alarms(
    user: AlarmReader,
    session: SessionDep,
    state: Annotated[list[AlarmState] | None, Query()] = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlarmPublic]:
    """The queue, most urgent first: priority, then the oldest. Test alarms are in it
    (marked) only where the organisation shows them (``show_tests``)."""
    org = await session.get(Organisation, user.org_id)
    shown = org is not None and org.show_tests
    alarms = await list_alarms(
        session, user.org_id, states=state, priorities=priority, limit=limit, include_tests=shown
    )
    return [as_seen_by(AlarmPublic.model_validate(a), user.role) for a in alarms]


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


class AssignBody(NoteBody):
    staff: str = Field(min_length=1, max_length=100, description="the staff member's username")


class ResolveBody(NoteBody):
    outcome: Outcome


async def _act(
    alarm_id: int,
    action: Action,
    user: User,
    session: AsyncSession,
    services: Services,
    *,
    assignee: str | None = None,
    outcome: Outcome | None = None,
    note: str | None = None,
) -> AlarmPublic:
    actor = Actor(user.username, Role(user.role))
    try:
        alarm = await apply(
            session,
            user.org_id,
            alarm_id,
            action,
            actor,
            assignee=assignee,
            outcome=outcome,
            note=note,
        )
    except TransitionError as exc:
        await session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if alarm is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No alarm {alarm_id}")
    detail = {k: v for k, v in (("assigned_to", assignee), ("outcome", outcome)) if v}
    audit(session, user, f"alarm.{action.value}", f"alarm:{alarm_id}", detail)
    public = AlarmPublic.model_validate(alarm)
    await session.commit()
    services.hub.publish(user.org_id, AlarmChange(type="updated", alarm=public))
    return public


@router.get("/stream", response_class=StreamingResponse)
async def stream(
    user: AlarmReader, signed_in: SignedInDep, services: ServicesDep, request: Request
) -> StreamingResponse:
    """Server-sent events: one ``alarm`` event per change of an alarm of your organisation.
    The stream ends within seconds of its session ending (signed out, user disabled)."""
    role = user.role
    async with services.sessions() as session:
        org = await session.get(Organisation, user.org_id)
        tests_shown = org is not None and org.show_tests

    def render(change: AlarmChange) -> str:
        if change.alarm.test and not tests_shown:
            return ""  # a test is the technicians' business here
        change = change.model_copy(update={"alarm": as_seen_by(change.alarm, role)})
        return f"event: alarm\ndata: {change.model_dump_json()}\n\n"

    subscription = services.hub.subscribe(user.org_id)
    session_id = signed_in.session.id
    return live_stream(services, request, subscription, session_id, render, marks_seen=user.id)


@router.get("/{alarm_id}")
async def get_alarm_detail(
    alarm_id: AlarmId, user: AlarmViewer, session: SessionDep
) -> AlarmDetail:
    """One alarm with its history: every transition, who and when."""
    alarm = await get_alarm(session, user.org_id, alarm_id)
    if alarm is None or (user.role == Role.STAFF and alarm.assigned_to != user.username):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No alarm {alarm_id}")
    steps = [TransitionPublic.model_validate(t) for t in await history(session, alarm_id)]
    home = await session.get(Home, (user.org_id, alarm.home_id))
    resident = (
        await session.get(Resident, (user.org_id, alarm.resident_id)) if alarm.resident_id else None
    )
    if resident is not None:
        audit(session, user, "resident.read", f"resident:{resident.id}", {"alarm": alarm_id})
        await session.commit()
    recent = await recent_of_resident(session, alarm) if resident is not None else []
    positions: list[Position] = []
    zone = None
    if user.role in POSITION_READERS:
        found, circle = await alarm_positions(session, user.org_id, alarm_id)
        positions = [
            Position(latitude=a, longitude=o, at=t, restore=r, accuracy_m=m, fix_age_s=s)
            for a, o, t, r, m, s in found
        ]
        if circle is not None:
            zone = SafeZone(latitude=circle[0], longitude=circle[1], radius_m=circle[2])
        if positions:
            audit(session, user, "position.read", f"alarm:{alarm_id}", {"device": alarm.device_id})
            await session.commit()
    home_context = HomeContext.model_validate(home) if home else None
    if home_context is not None and home_context.key_safe:
        # How to get in: for the operator handling the alarm and the staff member sent.
        handles = user.username in (alarm.claimed_by, alarm.assigned_to) and (
            alarm.state != AlarmState.RESOLVED
        )
        if handles:
            audit(session, user, "keysafe.read", f"home:{alarm.home_id}", {"alarm": alarm_id})
            await session.commit()
        else:
            home_context = home_context.model_copy(update={"key_safe": None})
    return AlarmDetail(
        alarm=as_seen_by(AlarmPublic.model_validate(alarm), user.role),
        history=steps,
        home=home_context,
        resident=ResidentContext.model_validate(resident) if resident else None,
        recent=[RecentAlarm.model_validate(a) for a in recent],
        positions=positions,
        zone=zone,
    )


@router.post("/{alarm_id}/claim")
async def post_claim(
    alarm_id: AlarmId, user: AlarmHandler, session: SessionDep, services: ServicesDep
) -> AlarmPublic:
    """Take a new alarm: nobody else can act on it until you release or resolve it."""
    return await _act(alarm_id, Action.CLAIM, user, session, services)


@router.post("/{alarm_id}/release")
async def post_release(
    alarm_id: AlarmId, user: AlarmHandler, session: SessionDep, services: ServicesDep
) -> AlarmPublic:
    """Give a claimed alarm back to the queue."""
    return await _act(alarm_id, Action.RELEASE, user, session, services)


@router.post("/{alarm_id}/acknowledge")
async def post_acknowledge(
    alarm_id: AlarmId, user: AlarmHandler, session: SessionDep, services: ServicesDep
) -> AlarmPublic:
    """You have spoken with the resident (or tried): claims a new alarm on the way."""
    return await _act(alarm_id, Action.ACKNOWLEDGE, user, session, services)


@router.post("/{alarm_id}/assign", max_body_size=TEXT_BODY_BYTES)
async def post_assign(
    alarm_id: AlarmId,
    body: AssignBody,
    user: AlarmHandler,
    session: SessionDep,
    services: ServicesDep,
) -> AlarmPublic:
    """Send a staff member of your organisation (again, to send another one instead)."""
    if await get_alarm(session, user.org_id, alarm_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No alarm {alarm_id}")
    staff = await session.scalar(
        select(User).where(
            User.username == body.staff, User.org_id == user.org_id, User.role == Role.STAFF
        )
    )
    if staff is None:
        raise HTTPException(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            detail=f"No staff member {body.staff!r} in your organisation",
        )
    public = await _act(
        alarm_id, Action.ASSIGN, user, session, services, assignee=staff.username, note=body.note
    )
    # Committed: the staff member's phones hear of it even with the staff page closed.
    services.push.assigned(user.org_id, staff.username, public)
    return public


@router.post("/{alarm_id}/on-site")
async def post_on_site(
    alarm_id: AlarmId, user: OnSiteReporter, session: SessionDep, services: ServicesDep
) -> AlarmPublic:
    """The assigned staff member is with the resident."""
    return await _act(alarm_id, Action.ON_SITE, user, session, services)


@router.post("/{alarm_id}/resolve", max_body_size=TEXT_BODY_BYTES)
async def post_resolve(
    alarm_id: AlarmId,
    body: ResolveBody,
    user: AlarmHandler,
    session: SessionDep,
    services: ServicesDep,
) -> AlarmPublic:
    """Close the alarm with how it ended."""
    return await _act(
        alarm_id, Action.RESOLVE, user, session, services, outcome=body.outcome, note=body.note
    )
