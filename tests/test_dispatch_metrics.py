"""``GET /metrics``: the dispatch service's counts for Prometheus and Grafana, read by
this host or with the metrics token, never by anyone else (cloud/metrics.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cloud import CloudSettings
from devices.wire import events_topic

from .conftest import GATEWAY_ID, RunningCloud, envelope, publish, publish_inventory, run_cloud
from .servers import Mosquitto, cloud_broker, wait_until

TOKEN = "a-metrics-token-of-some-length"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scrape(cloud: RunningCloud) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with cloud.client() as http:
        res = await http.get("/metrics")
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/plain; version=0.0.4")
    return _samples(res.text)


async def test_the_counts_follow_what_happens(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    before = await _scrape(sqlite_cloud)
    assert before[("trygg_dispatch_alarms_open", (("priority", "critical"),))] == 0
    assert before[("trygg_dispatch_broker_connected", ())] == 1
    assert before[("trygg_dispatch_gateways", (("state", "never_seen"),))] == 1

    await publish_inventory(sqlite_cloud, ["pendant-1"])
    alarm = envelope("metrics", 1, device="pendant-1")
    await publish(mosquitto.port, events_topic(GATEWAY_ID), alarm.model_dump_json())
    await publish(mosquitto.port, events_topic(GATEWAY_ID), b"{not json")

    async def counted() -> bool:
        now = await _scrape(sqlite_cloud)
        return (
            now[("trygg_dispatch_alarms_open", (("priority", "critical"),))] == 1
            and now.get(("trygg_dispatch_input_dropped_total", (("reason", "malformed"),))) == 1
        )

    await wait_until(counted, 15)
    after = await _scrape(sqlite_cloud)
    assert after[("trygg_dispatch_events_committed_total", ())] == 1
    assert after[("trygg_dispatch_inventories_total", ())] == 1
    # A live stream open is a client.
    async with (
        await sqlite_cloud.authed("anna") as http,
        http.stream("GET", "/api/v1/alarms/stream") as stream,
    ):
        assert stream.status_code == 200
        during = await _scrape(sqlite_cloud)
    assert during[("trygg_dispatch_stream_clients", (("stream", "alarms"),))] == 1


async def test_another_host_needs_the_token(sqlite_cloud: RunningCloud) -> None:
    elsewhere = httpx.ASGITransport(app=sqlite_cloud.app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://dispatch") as http:
        res = await http.get("/metrics")
    assert res.status_code == 403
    assert "TRYGG_METRICS_TOKEN" in res.json()["detail"]


async def test_with_a_token_only_the_token_reads_it(mosquitto: Mosquitto, tmp_path: Path) -> None:
    settings = CloudSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}",
        metrics_token=TOKEN,
        **cloud_broker(mosquitto.port),
    )
    async with run_cloud(settings) as cloud, cloud.client() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            res = await http.get("/metrics", headers=headers)
            assert res.status_code == 403, headers
        res = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert res.status_code == 200
        assert ("trygg_dispatch_escalations_total", ()) in _samples(res.text)
