"""A device's readings for the technician's device page (cloud/readings.py)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from ..audit import audit
from ..clock import database_now
from ..db import Device
from ..readings import ReadingsUnavailable, device_readings
from .deps import DeviceManager, ServicesDep, SessionDep
from .strict import StrictRoute

log = logging.getLogger("trygg.cloud.readings")

router = APIRouter(tags=["devices"], route_class=StrictRoute)

MAX_HOURS = 31 * 24


class SeriesOut(BaseModel):
    metric: str = Field(description="as the gateway names it: battery_pct, linkquality, …")
    points: list[tuple[float, float]] = Field(description="[unix seconds, value], oldest first")


class DeviceReadingsOut(BaseModel):
    device_id: str
    gateway_id: str
    start: datetime
    end: datetime
    step_s: int = Field(description="each point is the last reading within its step")
    series: list[SeriesOut]


@router.get("/devices/{device_id}/readings")
async def read_device_readings(
    device_id: str,
    user: DeviceManager,
    session: SessionDep,
    services: ServicesDep,
    hours: Annotated[int, Query(ge=1, le=MAX_HOURS, description="how far back")] = 72,
) -> DeviceReadingsOut:
    """The device's readings (battery, signal, temperature, …) over the last ``hours``,
    from the time-series store its gateway writes to (TRYGG_READINGS_QUERY_URL): 503
    when none is configured, 502 when it does not answer. Audited: a home's readings
    (a door's, a bed's) tell of the resident's days."""
    device = await session.get(Device, (user.org_id, device_id))
    if device is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No device {device_id}")
    settings = services.settings
    if settings.readings_query_url is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="No time-series store is configured here (TRYGG_READINGS_QUERY_URL)",
        )
    end = await database_now(session)
    start = end - timedelta(hours=hours)
    audit(session, user, "device.readings", f"device:{device_id}", {"hours": hours})
    await session.commit()
    try:
        start, step, series = await device_readings(
            settings.readings_query_url,
            device.gateway_id,
            device.id,
            start,
            end,
            timeout_s=settings.readings_query_timeout_s,
        )
    except ReadingsUnavailable as e:
        log.warning("readings of %s: %s", device_id, e)
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, detail=f"The time-series store: {e}"
        ) from e
    return DeviceReadingsOut(
        device_id=device.id,
        gateway_id=device.gateway_id,
        start=start,
        end=end,
        step_s=step,
        series=[SeriesOut(metric=s.metric, points=s.points) for s in series],
    )
