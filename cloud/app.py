"""The dispatch service's app factory: nothing is created at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from dashboards import OPERATOR_CONSOLE, STAFF_CONSOLE, TECHNICIAN_CONSOLE

from . import metrics
from .api import SMALL_BODY_BYTES, StrictRoute, api_router
from .clockwatch import ClockWatch
from .commandkeys import load_command_keys
from .commands import CommandService
from .configuration import ConfigurationService
from .db import make_engine, make_sessionmaker
from .doors import DoorService, DoorWatch
from .escalation import Escalator, Limits
from .headers import SecurityHeaders
from .hub import AlarmHub, CommandHub
from .ingest import IngestWorker
from .migrate import upgrade
from .push import PushService
from .retention import PositionRetention
from .services import Services
from .settings import CloudSettings
from .supervision import GatewaySupervisor
from .vapid import load_vapid_key

log = logging.getLogger("trygg.cloud")

STOP_WORKERS_S = 0.5  # for a sweep under way to finish; then it is cancelled


# The errors echo the input they refused, which may be bytes that are not UTF-8 (a body
# sent with another content type) or a float that JSON cannot spell: say so, never fail.
_ECHO: dict[Any, Callable[[Any], Any]] = {
    bytes: lambda raw: raw.decode("utf-8", "backslashreplace"),
    float: lambda number: number if math.isfinite(number) else str(number),
}


async def readable_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with ``detail`` a sentence a person can act on, and ``errors`` for programs."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":  # FastAPI's message is generic; ctx says why
            parts.append(f"body: bad JSON ({error.get('ctx', {}).get('error', 'invalid')})")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse(
        status_code=422,
        content={
            "detail": "; ".join(parts),
            "errors": jsonable_encoder(errors, custom_encoder=_ECHO),
        },
    )


def create_app(settings: CloudSettings | None = None, *, run_ingest: bool = True) -> FastAPI:
    settings = settings or CloudSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys = load_command_keys(settings)  # a key file named but unusable stops the start
        if keys.disabled:
            log.warning("%s (docs/commands.md)", keys.disabled)
        vapid = load_vapid_key(settings)  # the same: named but unusable stops the start
        if vapid.disabled:
            log.warning("%s (docs/staff.md)", vapid.disabled)
        engine = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        hub = AlarmHub()
        command_hub = CommandHub()
        await upgrade(engine)
        supervisor = GatewaySupervisor(sessions, hub)
        limits = Limits.from_settings(settings)
        escalator = Escalator(sessions, hub, limits, settings.escalation_webhook_url)
        ingest = IngestWorker(settings, sessions, hub, supervisor, command_hub)
        grace = timedelta(seconds=settings.command_expiry_grace_s)
        commands = CommandService(sessions, keys, ingest, command_hub, grace)
        ingest.commands = commands
        configuration = ConfigurationService(commands)
        ingest.configuration = configuration
        clock_watch = ClockWatch(sessions, hub, settings.clock_step_limit_s)
        door_watch = DoorWatch(sessions, commands, hub)
        push = PushService(settings, sessions, vapid)
        retention = PositionRetention(
            sessions, timeseries_url=settings.readings_query_url, configuration=configuration
        )
        app.state.services = Services(
            settings,
            engine,
            sessions,
            hub,
            ingest,
            supervisor,
            escalator,
            clock_watch,
            commands,
            command_hub,
            DoorService(sessions, commands),
            door_watch,
            push,
            configuration,
            retention,
        )
        await push.start()
        tasks = []
        # The periodic workers stop between two rounds, not inside a transaction.
        stop = asyncio.Event()
        periodic = []
        if run_ingest:
            tasks.append(asyncio.create_task(ingest.run(), name="ingest"))
            sweep = supervisor.run(settings.supervision_every_s, stop)
            periodic.append(asyncio.create_task(sweep, name="supervision"))
            escalate = escalator.run(settings.escalation_every_s, stop)
            periodic.append(asyncio.create_task(escalate, name="escalation"))
            periodic.append(asyncio.create_task(clock_watch.run(stop), name="clock watch"))
            expire = commands.run(settings.command_sweep_every_s, stop)
            periodic.append(asyncio.create_task(expire, name="command expiry"))
            doors = door_watch.run(settings.door_watch_every_s, stop)
            periodic.append(asyncio.create_task(doors, name="door watch"))
            retain = retention.run(settings.retention_every_s, stop)
            periodic.append(asyncio.create_task(retain, name="position retention"))
        log.info("dispatch service ready (%s)", engine.url.render_as_string(hide_password=True))
        try:
            yield
        finally:
            hub.close_all()
            command_hub.close_all()
            stop.set()
            if periodic:
                await asyncio.wait(periodic, timeout=STOP_WORKERS_S)
            for task in tasks + periodic:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await push.stop()
            await engine.dispose()

    # Every body is bounded before it is read, small unless a route says otherwise, and
    # parsed as strict JSON (cloud/api/strict.py).
    # No /docs or /redoc: their pages load scripts from a CDN. The schema is /openapi.json.
    app = FastAPI(
        title="Trygg dispatch",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=SMALL_BODY_BYTES,
        docs_url=None,
        redoc_url=None,
    )
    tiles = urlsplit(settings.map_tile_url) if settings.map_tile_url else None
    tile_origin = (f"{tiles.scheme}://{tiles.netloc.replace('{s}', '*')}",) if tiles else ()
    app.add_middleware(SecurityHeaders, image_origins=tile_origin)
    app.router.route_class = StrictRoute
    app.include_router(api_router)
    app.add_exception_handler(RequestValidationError, readable_validation_error)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prometheus_metrics(request: Request) -> Response:
        """Counts for Prometheus (cloud/metrics.py): this host, or TRYGG_METRICS_TOKEN."""
        metrics.allowed(request, settings.metrics_token)
        return await metrics.metrics(request.app.state.services)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    app.mount("/console", StaticFiles(directory=OPERATOR_CONSOLE, html=True), name="console")
    app.mount("/staff", StaticFiles(directory=STAFF_CONSOLE, html=True), name="staff")
    technician = StaticFiles(directory=TECHNICIAN_CONSOLE, html=True)
    app.mount("/technician", technician, name="technician")
    return app


def end_live_streams(app: FastAPI) -> None:
    """End every console's live stream, and any opened from now on. For the server to
    call as it begins to stop: it waits for open responses before the app's own shutdown,
    and a live stream never ends by itself."""
    services: Services | None = getattr(app.state, "services", None)
    if services is not None:
        services.hub.close_all()
        services.command_hub.close_all()
