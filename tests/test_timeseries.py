"""Readings: MQTT -> gateway -> local buffer -> InfluxDB v2 write API (victoria-metrics),
deleted locally only after the server accepted them; an outage delays no alarm."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway import Gateway
from gateway.store import StoredReading
from gateway.timeseries import line_protocol

from .conftest import RunningCloud, gateway_config, publish
from .servers import Mosquitto, VictoriaMetrics, mqtt_client, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def ts_gateway(
    mosquitto: Mosquitto, victoria: VictoriaMetrics, tmp_path: Path
) -> AsyncIterator[Gateway]:
    extra = {
        "timeseries": {"url": victoria.url, "batch_size": 500, "poll_s": 0.1, "timeout_s": 2},
        "api": {"port": 0},
    }
    gw = Gateway(gateway_config(mosquitto, tmp_path / "gw.db", extra=extra, ack_timeout_s=2.0))
    async with gw:
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        yield gw


async def send_states(port: int, n: int) -> None:
    async with mqtt_client(port) as client:
        for i in range(n):
            state = {"contact": True, "battery": 50 + i % 50, "linkquality": i % 255}
            await client.publish("zigbee2mqtt/front_door", json.dumps(state), qos=1)


async def test_readings_reach_the_server_and_leave_the_store(
    ts_gateway: Gateway, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    await send_states(mosquitto.port, 300)
    await wait_until(
        lambda: ts_gateway.timeseries is not None and ts_gateway.timeseries.sent == 600, 20
    )
    assert await ts_gateway.store.readings_count() == 0
    series = await exported(
        victoria, {("trygg_battery_pct", "door-1"): 300, ("trygg_linkquality", "door-1"): 300}
    )
    assert sorted(series[("trygg_battery_pct", "door-1")]) == sorted(
        float(50 + i % 50) for i in range(300)
    )


async def test_an_outage_keeps_readings_and_delays_no_alarm(
    ts_gateway: Gateway, mosquitto: Mosquitto, victoria: VictoriaMetrics, sqlite_cloud: RunningCloud
) -> None:
    victoria.stop()
    await send_states(mosquitto.port, 1000)
    assert ts_gateway.timeseries is not None
    await wait_until(lambda: ts_gateway.timeseries.failures > 0, 10)
    await wait_until(lambda: _buffered(ts_gateway, 2000), 10)
    # An alarm during the outage goes straight through.
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "single"}))
    async with await sqlite_cloud.authed("anna") as http:
        await wait_until(lambda: _has_alarm(http), 10)
    victoria.start()
    await wait_until(lambda: ts_gateway.timeseries.sent == 2000, 30)
    assert await ts_gateway.store.readings_count() == 0
    series = await exported(victoria, {("trygg_battery_pct", "door-1"): 1000})
    assert sorted(series[("trygg_battery_pct", "door-1")]) == sorted(
        float(50 + i % 50) for i in range(1000)
    )


async def exported(
    victoria: VictoriaMetrics, expected: dict[tuple[str, str], int]
) -> dict[tuple[str, str], list[float]]:
    """The server's series once they hold the expected number of points (it indexes lazily)."""
    series: dict[tuple[str, str], list[float]] = {}

    async def complete() -> bool:
        series.update(await asyncio.to_thread(victoria.export))
        return all(len(series.get(key, [])) == n for key, n in expected.items())

    await wait_until(complete, 20, interval_s=0.3)
    return series


async def _buffered(gw: Gateway, n: int) -> bool:
    return await gw.store.readings_count() == n


async def _has_alarm(http: httpx.AsyncClient) -> bool:
    return len((await http.get("/api/v1/alarms")).json()) == 1


async def test_healthz_and_metrics(ts_gateway: Gateway, mosquitto: Mosquitto) -> None:
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", b"{broken")
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "single"}))
    await wait_until(lambda: ts_gateway.counters.accepted["event"] == 1)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ts_gateway.api_port}") as http:
        health = await http.get("/healthz")
        metrics = (await http.get("/metrics")).text
    # No dispatch service runs here, yet the uplink's broker is up: it is connected.
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "ok" and body["timeseries_uplink"] in ("connected", "disconnected")
    assert body["outbox"]["critical"]["events"] == 1  # nobody acks it: it stays
    assert 'trygg_gateway_outbox_events{priority="critical"} 1.0' in metrics
    assert 'trygg_gateway_input_dropped_total{reason="malformed"} 1.0' in metrics
    assert "trygg_gateway_ack_latency_seconds_bucket" in metrics
    assert 'trygg_gateway_uplink_connected{uplink="dispatch"} 1.0' in metrics


async def test_healthz_says_degraded_when_the_broker_is_gone(
    ts_gateway: Gateway, mosquitto: Mosquitto
) -> None:
    mosquitto.stop()
    await wait_until(lambda: not ts_gateway.uplink.connected.is_set(), 10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ts_gateway.api_port}") as http:
        health = await http.get("/healthz")
    assert health.status_code == 503 and health.json()["dispatch_uplink"] == "disconnected"


def test_line_protocol_escapes_tags() -> None:
    line = line_protocol("gw 1", [StoredReading(1, "dev,1=x", "battery_pct", 97.0, 1764000000000)])
    assert line == r"trygg,gateway=gw\ 1,device=dev\,1\=x battery_pct=97.0 1764000000000"
    homes = {"dev,1=x": "home 12"}
    line = line_protocol(
        "gw", [StoredReading(1, "dev,1=x", "battery_pct", 97.0, 1764000000000)], homes.get
    )
    assert line == r"trygg,gateway=gw,device=dev\,1\=x,home=home\ 12 battery_pct=97.0 1764000000000"


def test_a_position_is_a_measurement_of_its_own_tagged_with_its_utc_day() -> None:
    """So the dispatch service can delete a day past the retention (cloud/retention.py)."""
    at_ms = 1764979199999  # 2025-12-05 23:59:59.999 UTC; a millisecond later is the 6th
    lines = line_protocol(
        "gw",
        [
            StoredReading(1, "gps-1", "latitude", 55.6, at_ms),
            StoredReading(2, "gps-1", "longitude", 13.0, at_ms + 1),
            StoredReading(3, "gps-1", "battery_pct", 80.0, at_ms + 1),
        ],
    ).splitlines()
    assert lines == [
        f"trygg_position,gateway=gw,device=gps-1,day=2025-12-05 latitude=55.6 {at_ms}",
        f"trygg_position,gateway=gw,device=gps-1,day=2025-12-06 longitude=13.0 {at_ms + 1}",
        f"trygg,gateway=gw,device=gps-1 battery_pct=80.0 {at_ms + 1}",
    ]
