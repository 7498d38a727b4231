from __future__ import annotations

from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from devices import Priority

from ..clock import database_now
from ..statistics import response_statistics
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
    alarms claimed within 60 s and 180 s: in total, per day (UTC) and per operator."""
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
    return await response_statistics(session, user.org_id, start, end, now, priority)
