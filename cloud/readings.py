"""A device's readings over time, from the time-series store the gateways write to.

Gateways write each reading as ``trygg,gateway=G,device=D[,home=H] metric=value`` (the
InfluxDB line protocol, gateway/timeseries.py); VictoriaMetrics keeps it as the series
``trygg_metric{gateway="G",device="D",home="H"}`` and answers PromQL on
``/api/v1/query_range``. The technician console's device page charts what this gives.
The dispatch service asks only for the one device a technician opened, over at most
``MAX_POINTS`` steps: a chart, never an export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from devices.wire import POSITION_MEASUREMENT

PREFIX = "trygg_"
MAX_POINTS = 500  # steps per series: a chart's width, not the store's resolution
MIN_STEP_S = 60
MAX_SERIES = 40  # a device has a handful of metrics; more is not a device's
_ERROR_TEXT = 200  # what of the store's own error is passed on


class ReadingsUnavailable(Exception):
    """The store did not answer, or not with a query's result: the reason, in words."""


@dataclass
class Series:
    metric: str  # as the gateway names it: battery_pct, linkquality, temperature_c, …
    points: list[tuple[float, float]] = field(default_factory=list)  # (unix s, value)


def _quoted(value: str) -> str:
    """A PromQL string literal: whatever a device's id holds stays inside its quotes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def step_for(span: timedelta) -> int:
    return max(MIN_STEP_S, math.ceil(span.total_seconds() / MAX_POINTS))


def query_for(gateway_id: str, device_id: str, step_s: int) -> str:
    """Each step's last reading of each of the device's metrics: a step with none has no
    point (the chart shows the gap), never a value carried over from an older one. A
    tracked resident's positions are not a technician's to chart, and are left out."""
    selector = (
        f'{{__name__=~"{PREFIX}.+",__name__!~"{POSITION_MEASUREMENT}_.+",'
        f"gateway={_quoted(gateway_id)},device={_quoted(device_id)}}}"
    )
    return f"last_over_time({selector}[{step_s}s])"


def parse(body: object) -> list[Series]:
    """The store's answer as series, by metric; anything not a matrix result is refused."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise ReadingsUnavailable(f"the store answered no result: {str(error)[:_ERROR_TEXT]}")
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise ReadingsUnavailable("the store answered something other than series")
    result = data.get("result")
    if not isinstance(result, list):
        raise ReadingsUnavailable("the store answered something other than series")
    series: dict[str, Series] = {}
    for item in result[:MAX_SERIES]:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            continue
        name = item["metric"].get("__name__")
        values = item.get("values")
        if not isinstance(name, str) or not name.startswith(PREFIX) or not isinstance(values, list):
            continue
        points = series.setdefault(name[len(PREFIX) :], Series(name[len(PREFIX) :])).points
        for pair in values:
            try:
                at, value = float(pair[0]), float(pair[1])
            except (TypeError, ValueError, IndexError):
                continue
            if math.isfinite(at) and math.isfinite(value):
                points.append((at, value))
    for s in series.values():
        s.points.sort()
    return sorted(series.values(), key=lambda s: s.metric)


async def device_readings(
    url: str,
    gateway_id: str,
    device_id: str,
    start: datetime,
    end: datetime,
    *,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[datetime, int, list[Series]]:
    """From when, the step (s), and the device's series from about ``start`` to ``end``.

    The steps are counted back from ``end``, so the last one holds the newest readings
    (``start`` moves back by less than a step for that)."""
    step = step_for(end - start)
    start = end - timedelta(seconds=step * math.ceil((end - start).total_seconds() / step))
    params = {
        "query": query_for(gateway_id, device_id, step),
        "start": f"{start.timestamp():.3f}",
        "end": f"{end.timestamp():.3f}",
        "step": f"{step}s",
        # The steps as asked, so the last ends now: VictoriaMetrics otherwise moves a long
        # query's steps to its cache's grid, and the newest readings show only when the
        # next step begins.
        "nocache": "1",
    }
    try:
        async with httpx.AsyncClient(timeout=timeout_s, transport=transport) as client:
            res = await client.get(f"{url.rstrip('/')}/api/v1/query_range", params=params)
    except httpx.HTTPError as e:
        raise ReadingsUnavailable(f"the store did not answer ({type(e).__name__})") from e
    try:
        body = res.json()
    except ValueError:
        body = None
    if res.status_code != 200 and not isinstance(body, dict):
        raise ReadingsUnavailable(f"the store answered HTTP {res.status_code}")
    return start, step, parse(body)
