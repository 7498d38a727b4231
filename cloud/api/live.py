"""The consoles' live streams (server-sent events), one loop for all of them: a keep-alive
while nothing happens, and the end of the stream within seconds of its session ending
(signed out, signed out everywhere, the user disabled)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from ..clock import database_now
from ..db import User
from ..services import Services
from ..signin import session_live

log = logging.getLogger("trygg.cloud.api")

KEEPALIVE_S = 15.0
SESSION_CHECK_S = 2.0  # a live stream ends this soon after its session does

C = TypeVar("C")


async def mark_seen(services: Services, user_id: int) -> float:
    """Note that the user's console is live (the supervisor's "operators on"); a database
    that cannot be written just leaves the mark older. Returns when, on the monotonic clock."""
    try:
        async with services.sessions() as session:
            now = await database_now(session)
            await session.execute(update(User).where(User.id == user_id).values(seen_at=now))
            await session.commit()
    except SQLAlchemyError as exc:
        log.warning("cannot note user %s as seen: %s", user_id, exc)
    return time.monotonic()


async def still_signed_in(services: Services, session_id: str) -> bool:
    try:
        async with services.sessions() as session:
            return await session_live(session, session_id, await database_now(session)) is not None
    except SQLAlchemyError as exc:  # the database is away: the stream is not the one to end
        log.warning("cannot check a live stream's session: %s", exc)
        return True


def live_stream(
    services: Services,
    request: Request,
    subscription: AbstractAsyncContextManager[asyncio.Queue[C | None]],
    session_id: str,
    render: Callable[[C], str],
    *,
    marks_seen: int | None = None,
) -> StreamingResponse:
    """Stream ``render(change)`` for each change the subscription's queue gives, until it
    gives None (the service stops), the client goes, or the session ends. ``marks_seen``:
    the user whose console this stream shows as on."""

    async def seen() -> float:
        if marks_seen is None:
            return time.monotonic()
        return await mark_seen(services, marks_seen)

    async def events() -> AsyncIterator[str]:
        async with subscription as queue:
            last_seen = await seen()  # before the first byte: then it is on
            checked = last_seen
            idle = 0.0
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                if time.monotonic() - checked >= SESSION_CHECK_S:
                    if not await still_signed_in(services, session_id):
                        return
                    checked = time.monotonic()
                if marks_seen is not None and time.monotonic() - last_seen >= KEEPALIVE_S:
                    last_seen = await seen()
                try:
                    change = await asyncio.wait_for(queue.get(), SESSION_CHECK_S)
                except TimeoutError:
                    idle += SESSION_CHECK_S
                    if idle >= KEEPALIVE_S:
                        idle = 0.0
                        yield ": keep-alive\n\n"
                    continue
                idle = 0.0
                if change is None:
                    return
                yield render(change)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
