"""Every shipped scenario, end to end: simulated devices on their real transports (BLE
advertisements over the sim backend, serial ptys, Zigbee2MQTT on a real mosquitto, MJPEG
cameras) -> gateway -> dispatch service. The dispatch service must hold exactly the
alarms each scenario expects."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from trygg_sim.broker import BrokerLogin
from trygg_sim.check import scenario_alarms
from trygg_sim.play import ScenarioRun, Wiring, gateway_config
from trygg_sim.scenario import Scenario, compare, load_scenario, shipped

from gateway import Gateway
from gateway.config import GatewayConfig

from .conftest import GATEWAY_ID, RunningCloud
from .servers import ZIGBEE2MQTT, Mosquitto, free_port, free_udp_port, login, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REAL_S = 5.0  # each scenario is played in about this many real seconds


def wiring_for(mosquitto: Mosquitto, tmp_path: Path) -> Wiring:
    sim = login(ZIGBEE2MQTT)
    return Wiring(
        broker_port=mosquitto.port,
        login=BrokerLogin(sim["username"], sim["password"], Path(sim["ca_file"])),
        ble_port=free_udp_port(),
        serial_dir=tmp_path / "dev",
        camera_port=free_port(),
        native_port=free_port(),
    )


def speed_for(scenario: Scenario) -> float:
    return max(scenario.speed, scenario.duration / timedelta(seconds=REAL_S))


async def play_against_gateway(
    scenario: Scenario, wiring: Wiring, store: Path
) -> tuple[Gateway, Any]:
    config = GatewayConfig.model_validate(
        gateway_config(
            scenario,
            wiring,
            gateway_id=GATEWAY_ID,
            store=store,
            speed=speed_for(scenario),
            gateway_login=login(GATEWAY_ID),
        )
    )
    async with ScenarioRun(scenario, wiring, speed=speed_for(scenario)) as run:
        gateway = Gateway(config)
        async with gateway:
            await asyncio.wait_for(gateway.uplink.connected.wait(), 10)
            for link in gateway.links:  # the broker, the serial ports, the BLE scanner
                await asyncio.wait_for(link.ready.wait(), 10)
            report = await run.play()
            # Everything accepted has left the outbox, acknowledged by the service.
            await wait_until(lambda: _outbox_empty(gateway), limit_s=15)
    return gateway, report


async def _outbox_empty(gateway: Gateway) -> bool:
    return sum((await gateway.store.depth()).values()) == 0


@pytest.mark.parametrize("name", sorted(shipped()))
async def test_each_shipped_scenario_raises_exactly_its_expected_alarms(
    name: str, sqlite_cloud: RunningCloud, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    scenario = load_scenario(name)
    gateway, report = await play_against_gateway(
        scenario, wiring_for(mosquitto, tmp_path), tmp_path / "gateway.db"
    )
    print(f"\n{report.summary()}")
    assert report.steps == len(scenario.step)
    assert sum(report.sent.values()) > 0
    # Every device was heard through its real transport and codec.
    for device in scenario.device:
        entry = gateway.registry.get(device.id)
        assert entry is not None and entry.status.last_seen is not None, f"{device.id} unheard"
    # Nothing the simulated firmware sent was refused; only its repeats were folded.
    assert set(gateway.counters.dropped) <= {"duplicate"}, gateway.counters.dropped
    async with await sqlite_cloud.authed("anna") as http:
        problems = compare(scenario.expected(), await scenario_alarms(http, scenario))
        assert problems == []


async def test_a_gps_watchs_sos_reaches_the_operator_with_where_it_was_pressed(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The watch on the native API: its SOS carries its last fix, and the operator's
    alarm has that position (500 m out, past the safe zone), its accuracy and its age."""
    from devices.geo import distance_m

    scenario = load_scenario("watch-sos")
    await play_against_gateway(scenario, wiring_for(mosquitto, tmp_path), tmp_path / "gw.db")
    async with await sqlite_cloud.authed("anna") as http:
        alarms = await scenario_alarms(http, scenario)
        (sos,) = [a for a in alarms if a["kind"] == "alarm_button"]
        detail = (await http.get(f"/api/v1/alarms/{sos['id']}")).json()
    home = scenario.device[0]
    assert home.latitude is not None and home.longitude is not None
    assert sos["latitude"] is not None and sos["longitude"] is not None
    away = distance_m(home.latitude, home.longitude, sos["latitude"], sos["longitude"])
    assert 300 < away < 900, away
    # The map's last position says how far to trust it (the operator is a position reader).
    last = detail["positions"][-1]
    assert (last["latitude"], last["longitude"]) == (sos["latitude"], sos["longitude"])
    assert last["accuracy_m"] == 6.0 and 0 <= last["fix_age_s"] < 600
