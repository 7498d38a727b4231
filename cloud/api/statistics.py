from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select

from devices import Priority

from ..clock import database_now
from ..db import Alarm, User
from ..lifecycle import OPEN_STATES
from ..schemas import AlarmPublic
from ..statistics import organisation_view, response_statistics
from .deps import SessionDep, StatisticsReader
from .strict import StrictRoute

router = APIRouter(prefix="/statistics", tags=["statistics"], route_class=StrictRoute)

MAX_RANGE = timedelta(days=366)


@router.get("")
async def get_statistics(
    user: StatisticsReader,
    session: SessionDep,
    start: Annotated[
        datetime | None, Query(alias="from", description="default: 24 hours before 'to'")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="default: now")] = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
) -> dict[str, Any]:
    """Time to claim, to assign and to on site (median, 90th percentile), and the share of
    alarms claimed within 60 s and 180 s: in total, per day (in the organisation's time
    zone), per operator and per team."""
    now = await database_now(session)
    end = end or now
    start = start or end - timedelta(days=1)
    for name, value in (("from", start), ("to", end)):
        if value.tzinfo is None:
            raise HTTPException(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                detail=f"{name}: give a time zone, e.g. 2026-11-24T00:00:00Z",
            )
    if not start < end or end - start > MAX_RANGE:
        raise HTTPException(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            detail="from must be before to, and at most 366 days before it",
        )
    zone, teams = await organisation_view(session, user.org_id)
    return await response_statistics(
        session, user.org_id, start, end, now, priority, time_zone=zone, teams=teams
    )


# A console's live stream marks its user seen at least every 15 s (alarms.py).
ONLINE_S = 40


@router.get("/today")
async def get_today(user: StatisticsReader, session: SessionDep) -> dict[str, Any]:
    """The supervisor's view: today's service level (since midnight in the organisation's
    time zone), per operator and team; the escalated alarms still late; who is on."""
    now = await database_now(session)
    zone, teams = await organisation_view(session, user.org_id)
    midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    level = await response_statistics(
        session,
        user.org_id,
        midnight.astimezone(UTC),
        now + timedelta(microseconds=1),
        now,
        time_zone=zone,
        teams=teams,
    )
    escalated = await session.execute(
        select(Alarm)
        .where(
            Alarm.org_id == user.org_id,
            Alarm.escalation.is_not(None),
            Alarm.state.in_(OPEN_STATES),
        )
        .order_by(Alarm.priority_rank, Alarm.received_at)
    )
    online = await session.execute(
        select(User)
        .where(
            User.org_id == user.org_id,
            User.seen_at >= now - timedelta(seconds=ONLINE_S),
        )
        .order_by(User.username)
    )
    return {
        "day": midnight.date().isoformat(),
        "time_zone": zone.key,
        "service_level": level,
        "escalations": [
            a for a in map(AlarmPublic.model_validate, escalated.scalars()) if a.escalation_waiting
        ],
        "online": [
            {
                "username": u.username,
                "role": u.role,
                "team": teams.get(u.username),
                "seen_at": u.seen_at,
            }
            for u in online.scalars()
        ],
    }
