"""The gateway's local HTTP API: ``/healthz`` for supervisors and ``/metrics`` for
Prometheus. It listens on loopback by default and carries no names."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from devices import utc_now

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import Metric

    from .service import Gateway


class _Snapshot(Collector):
    """Exposes a snapshot taken by the request handler (the store is read asynchronously)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def snapshot(gateway: Gateway) -> dict[str, Any]:
    now = utc_now()
    outbox = {}
    for priority, (count, oldest) in (await gateway.store.outbox_stats()).items():
        age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
        outbox[priority.value] = {"events": count, "oldest_age_s": round(age, 3)}
    return {
        "outbox": outbox,
        "readings_buffered": await gateway.store.readings_count() + gateway.readings.waiting,
        "dispatch_uplink": "connected" if gateway.uplink.connected.is_set() else "disconnected",
        "timeseries_uplink": (
            None
            if gateway.timeseries is None
            else "connected"
            if gateway.timeseries.connected
            else "disconnected"
        ),
        "zigbee2mqtt": "connected" if gateway.zigbee2mqtt.connected.is_set() else "disconnected",
        "store_quarantined": str(gateway.store.quarantined) if gateway.store.quarantined else None,
    }


def create_api(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="Trygg gateway", docs_url=None, redoc_url=None)
    registry = gateway.metrics_registry
    dynamic = _Snapshot()
    registry.register(dynamic)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        state = await snapshot(gateway)
        healthy = state["dispatch_uplink"] == "connected" and state["zigbee2mqtt"] == "connected"
        state["status"] = "ok" if healthy else "degraded"
        return JSONResponse(state, status_code=200 if healthy else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        state = await snapshot(gateway)
        depth = GaugeMetricFamily(
            "trygg_gateway_outbox_events",
            "Events waiting for the dispatch ack",
            labels=["priority"],
        )
        age = GaugeMetricFamily(
            "trygg_gateway_outbox_oldest_age_seconds",
            "Age of the oldest unacked event",
            labels=["priority"],
        )
        for priority, item in state["outbox"].items():
            depth.add_metric([priority], item["events"])
            age.add_metric([priority], item["oldest_age_s"])
        buffered = GaugeMetricFamily(
            "trygg_gateway_readings_buffered",
            "Readings not yet accepted by the time-series server",
            value=state["readings_buffered"],
        )
        up = GaugeMetricFamily(
            "trygg_gateway_uplink_connected", "1 when the uplink is connected", labels=["uplink"]
        )
        up.add_metric(["dispatch"], state["dispatch_uplink"] == "connected")
        if state["timeseries_uplink"] is not None:
            up.add_metric(["timeseries"], state["timeseries_uplink"] == "connected")
        up.add_metric(["zigbee2mqtt"], state["zigbee2mqtt"] == "connected")
        dropped = CounterMetricFamily(
            "trygg_gateway_input_dropped", "Inputs dropped, by reason", labels=["reason"]
        )
        for reason, n in gateway.counters.dropped.items():
            dropped.add_metric([reason.value], n)
        readings_dropped = CounterMetricFamily(
            "trygg_gateway_readings_dropped", "Readings dropped, by reason", labels=["reason"]
        )
        for why, n in (gateway.store.readings_dropped + gateway.readings.dropped).items():
            readings_dropped.add_metric([why], n)
        accepted = CounterMetricFamily(
            "trygg_gateway_accepted", "Inputs accepted, by kind", labels=["kind"]
        )
        for kind, n in gateway.counters.accepted.items():
            accepted.add_metric([kind], n)
        dynamic.families = [depth, age, buffered, up, dropped, readings_dropped, accepted]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
