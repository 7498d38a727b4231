"""The Grafana dashboards in dashboards/grafana: every panel's query runs against a real
VictoriaMetrics holding a simulator run's data (the gateway's readings through the
InfluxDB v2 write API, the dispatch service's /metrics scraped) and returns series; the
provisioning files are what Grafana reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from trygg_sim.broker import BrokerLogin
from trygg_sim.play import ScenarioRun, Wiring, gateway_config
from trygg_sim.scenario import parse_scenario

from devices.wire import events_topic
from gateway import Gateway, GatewayConfig

from .browser import ROOT
from .conftest import GATEWAY_ID, RunningCloud, publish
from .servers import ZIGBEE2MQTT, Mosquitto, VictoriaMetrics, login, pki, wait_until

pytestmark = pytest.mark.e2e

GRAFANA = ROOT / "dashboards" / "grafana"
BOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# The demo flat's pendant and water-leak sensor (which also says the bathroom's
# temperature); the resident presses the pendant a few seconds in.
SCENARIO = """
name = "a home for the dashboards"
start = "10:00"
end = "11:00"
speed = 1

[[device]]
id = "pendant-12"
type = "alarm_button"
transport = "zigbee2mqtt"
address = "pendant"
home = "home-12"
resident = "res-12"

[[device]]
id = "leak-12"
type = "water_leak"
transport = "zigbee2mqtt"
address = "bathroom_leak"
home = "home-12"
state = { temperature = 21.5 }

[[step]]
at = "10:00:04"
device = "pendant-12"
do = "press"
"""
VARIABLES = {"$home": "home-12"}


def _panels() -> Iterator[tuple[str, str, str]]:
    """(board, panel, query) for every target of every panel, variables filled in."""
    for path in BOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for name, value in VARIABLES.items():
                    expr = expr.replace(name, value)
                yield board["title"], panel["title"], expr


@pytest.fixture
def scraping(tmp_path: Path, sqlite_cloud: RunningCloud) -> Iterator[VictoriaMetrics]:
    """VictoriaMetrics scraping the dispatch service's /metrics every second."""
    port = int(sqlite_cloud.url.rsplit(":", 1)[1])
    scrape = tmp_path / "scrape.yaml"
    scrape.write_text(
        yaml.safe_dump(
            {
                "scrape_configs": [
                    {
                        "job_name": "trygg-dispatch",
                        "scrape_interval": "1s",
                        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                    }
                ]
            }
        )
    )
    server = VictoriaMetrics(tmp_path, (f"-promscrape.config={scrape}",))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _query(http: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    res = await http.get("/api/v1/query", params={"query": expr})
    assert res.status_code == 200, (expr, res.text)
    body = res.json()
    assert body["status"] == "success", (expr, body)
    found: list[dict[str, Any]] = body["data"]["result"]
    return found


async def test_every_panel_query_returns_series_from_a_simulator_run(
    sqlite_cloud: RunningCloud, scraping: VictoriaMetrics, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    assert len(BOARDS) == 3
    scenario = parse_scenario(SCENARIO, "dashboards.toml")
    wiring = Wiring(
        broker_port=mosquitto.port,
        serial_dir=tmp_path / "serial",
        login=BrokerLogin(ZIGBEE2MQTT, pki().passwords[ZIGBEE2MQTT], pki().tls.ca_cert),
    )
    body = gateway_config(
        scenario,
        wiring,
        gateway_id=GATEWAY_ID,
        store=tmp_path / "gw.db",
        gateway_login=login(GATEWAY_ID),
    )
    body["timeseries"] = {"url": scraping.url, "batch_size": 500, "poll_s": 0.2}
    async with httpx.AsyncClient(base_url=scraping.url, timeout=10) as http:
        # Scraped before anything happens, so that what follows is an increase.
        await wait_until(lambda: _query(http, "trygg_dispatch_broker_connected"), 30)
        async with contextlib.AsyncExitStack() as stack:
            gateway = Gateway(GatewayConfig.model_validate(body))
            await stack.enter_async_context(gateway)
            await asyncio.wait_for(gateway.uplink.connected.wait(), 15)
            run = await stack.enter_async_context(ScenarioRun(scenario, wiring))
            playing = asyncio.create_task(run.play())
            stack.callback(playing.cancel)
            # And one message the dispatch service cannot read: a drop, counted by reason.
            await publish(mosquitto.port, events_topic(GATEWAY_ID), b"{not an event")
            empty: list[tuple[str, str, str]] = []

            async def every_panel_has_series() -> bool:
                empty[:] = [p for p in _panels() if not await _query(http, p[2])]
                return not empty

            try:
                await wait_until(every_panel_has_series, 60)
            except TimeoutError:
                pytest.fail(f"panels without series: {empty}")
        # What the home board shows is this home's devices, by name.
        (battery,) = await _query(http, 'trygg_battery_pct{home="home-12", device="leak-12"}')
        assert battery["metric"]["gateway"] == GATEWAY_ID
        (temperature,) = await _query(http, 'trygg_temperature_c{home="home-12"}')
        assert float(temperature["value"][1]) == 21.5
        kinds = await _query(http, "sum by (kind) (trygg_dispatch_alarms_raised_total)")
        assert {k["metric"]["kind"] for k in kinds} == {"alarm_button"}


def test_the_dashboards_and_their_provisioning_are_what_grafana_reads() -> None:
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/victoriametrics.yaml").read_text())
    (datasource,) = source["datasources"]
    assert (datasource["type"], datasource["uid"]) == ("prometheus", "victoriametrics")
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/trygg.yaml").read_text())
    (files,) = provider["providers"]
    assert files["type"] == "file"
    uids = set()
    for path in BOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == datasource["uid"], (path, panel["title"])
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        for variable in board["templating"]["list"]:
            assert f"${variable['name']}" in VARIABLES, (path, variable["name"])
        used = set(re.findall(r"\$\w+", json.dumps(board["panels"])))
        assert used <= set(VARIABLES), (path, used)
    assert len(uids) == len(BOARDS)
