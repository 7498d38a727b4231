"""Away mode from the consoles: ``PUT /api/v1/homes/{home_id}/away`` (cloud/away.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..away import set_away
from ..clock import database_now
from ..configuration import ConfigurationConflict
from ..db import Alarm, Home, User, Visit
from ..lifecycle import OPEN_STATES
from ..security import Role
from .deps import ServicesDep, SessionDep, require_role
from .strict import StrictRoute

router = APIRouter(tags=["homes"], route_class=StrictRoute)

AwaySetter = Annotated[User, Depends(require_role(Role.OPERATOR, Role.SUPERVISOR, Role.STAFF))]
HomeIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


@contextlib.contextmanager
def delivery_refusals() -> Iterator[None]:
    """A home's change sent as configuration and not taken, as the answer says it."""
    try:
        yield
    except ConfigurationConflict as exc:  # a technician's change crossed ours: say so
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except ValidationError as exc:  # the gateway's configuration is full (homes, size)
        raise HTTPException(422, detail=f"the configuration cannot take it: {exc}") from None


class AwayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    away: bool


class AwayOut(BaseModel):
    home_id: str
    away: bool
    away_by: str | None
    away_at: datetime | None
    # The configuration versions it went out in, one per gateway of the home.
    gateways: dict[str, int]


@router.put("/homes/{home_id}/away")
async def put_away(
    home_id: HomeIdPath,
    body: AwayIn,
    user: AwaySetter,
    session: SessionDep,
    services: ServicesDep,
) -> AwayOut:
    """The resident is away (at a relative's, in hospital) or back: the home's inactivity
    rule stops or starts counting. Staff may set it for the homes of their own team."""
    home = await session.get(Home, (user.org_id, home_id))
    if home is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No home {home_id}")
    if user.role == Role.STAFF and not await _serves(session, user, home):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="not a home you serve (your team's, a visit of yours today, or your alarm)",
        )
    with delivery_refusals():
        sent = await set_away(session, user, services.configuration, home, body.away)
    return AwayOut(
        home_id=home.id,
        away=home.away,
        away_by=home.away_by,
        away_at=home.away_at,
        gateways={d.gateway_id: d.version for d in sent},
    )


async def _serves(session: AsyncSession, user: User, home: Home) -> bool:
    """Whether a staff member serves the home: their team's, a visit of theirs within
    a day either side of now, or an open alarm there assigned to them."""
    if user.team_id is not None and home.team_id == user.team_id:
        return True
    now = await database_now(session)
    visit = await session.scalar(
        select(Visit.id)
        .where(
            Visit.org_id == user.org_id,
            Visit.home_id == home.id,
            Visit.staff == user.username,
            Visit.cancelled_at.is_(None),
            Visit.starts_at <= now + timedelta(days=1),
            Visit.ends_at >= now - timedelta(days=1),
        )
        .limit(1)
    )
    if visit is not None:
        return True
    alarm = await session.scalar(
        select(Alarm.id)
        .where(
            Alarm.org_id == user.org_id,
            Alarm.home_id == home.id,
            Alarm.assigned_to == user.username,
            Alarm.state.in_(OPEN_STATES),
        )
        .limit(1)
    )
    return alarm is not None
