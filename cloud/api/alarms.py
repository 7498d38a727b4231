from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from devices import Priority

from ..alarms import AlarmState, TransitionError, acknowledge, list_alarms
from ..schemas import AlarmChange, AlarmPublic
from .deps import AlarmHandler, AlarmReader, ServicesDep, SessionDep

router = APIRouter(prefix="/alarms", tags=["alarms"])

KEEPALIVE_S = 15.0


@router.get("")
async def get_alarms(
    user: AlarmReader,
    session: SessionDep,
    state: Annotated[list[AlarmState] | None, Query()] = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlarmPublic]:
    """The queue, most urgent first: priority, then the oldest."""
    alarms = await list_alarms(session, user.org_id, states=state, priorities=priority, limit=limit)
    return [AlarmPublic.model_validate(a) for a in alarms]


@router.post("/{alarm_id}/acknowledge")
async def post_acknowledge(
    alarm_id: int, user: AlarmHandler, session: SessionDep, services: ServicesDep
) -> AlarmPublic:
    try:
        alarm = await acknowledge(session, user.org_id, alarm_id, user.username)
    except TransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if alarm is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No alarm {alarm_id}")
    public = AlarmPublic.model_validate(alarm)
    await session.commit()
    services.hub.publish(user.org_id, AlarmChange(type="updated", alarm=public))
    return public


@router.get("/stream", response_class=StreamingResponse)
async def stream(user: AlarmReader, services: ServicesDep, request: Request) -> StreamingResponse:
    """Server-sent events: one ``alarm`` event per change of an alarm of your organisation."""
    org_id = user.org_id

    async def events() -> AsyncIterator[str]:
        async with services.hub.subscribe(org_id) as queue:
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                try:
                    change = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if change is None:
                    return
                yield f"event: alarm\ndata: {change.model_dump_json()}\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
