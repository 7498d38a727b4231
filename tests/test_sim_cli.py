"""``trygg sim`` as people run it: config, run with a check against the dispatch service,
and load mode at 1,000 homes, each as a subprocess against a real gateway and mosquitto."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from gateway import Gateway, load_config

from .conftest import GATEWAY_ID, USERS, RunningCloud
from .servers import ZIGBEE2MQTT, Mosquitto, free_port, free_udp_port, login, run_trygg, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _options(prefix: str, username: str) -> list[str]:
    return [f"--{prefix}-{key.replace('_', '-')}={value}" for key, value in login(username).items()]


# The simulator logs in as Zigbee2MQTT; the configuration it writes, as the gateway.
SIM = _options("mqtt", ZIGBEE2MQTT)
GW = _options("gateway", GATEWAY_ID)


async def started(gateway: Gateway) -> None:
    await asyncio.wait_for(gateway.link("zigbee2mqtt").ready.wait(), 10)
    await asyncio.wait_for(gateway.uplink.connected.wait(), 10)


async def test_sim_run_plays_a_scenario_and_confirms_the_dispatch_service_got_its_alarms(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    wiring = [
        f"--port={mosquitto.port}",
        f"--ble-port={free_udp_port()}",
        f"--serial-dir={tmp_path / 'dev'}",
        f"--camera-port={free_port()}",
    ]
    config = tmp_path / "gateway.toml"
    code, _out, err = await run_trygg(
        "sim",
        "config",
        "smoke",
        *wiring,
        f"--gateway-id={GATEWAY_ID}",
        f"--store={tmp_path / 'gw.db'}",
        f"--out={config}",
        *GW,
    )
    assert code == 0, err
    assert "# Gateway for the scenario 'Smoke'" in config.read_text()
    password = USERS["anna"][1]
    sim = asyncio.create_task(
        run_trygg(
            "sim",
            "run",
            "smoke",
            *wiring,
            "--speed=600",
            "--wait=2",
            *SIM,
            f"--cloud={sqlite_cloud.url}",
            "--user=anna",
            env={"TRYGG_PASSWORD": password},
        )
    )
    # The simulator plugs its serial ports in first: the gateway opens them when they are.
    ports = [Path(port.path) for port in load_config(config).serial]
    assert ports, "the smoke scenario has a radio receiver on a serial port"
    await wait_until(lambda: all(p.exists() for p in ports) or sim.done(), 30)
    assert not sim.done(), sim.result()
    async with Gateway(load_config(config)) as gateway:
        await started(gateway)
        code, out, err = await sim
    assert code == 0, out + err
    assert "23:40 kitchen-smoke: set smoke=True (the pan)" in out
    assert "OK: the dispatch service holds exactly the 2 expected alarms" in out


async def test_sim_run_exits_1_and_names_the_difference_when_alarms_are_missing(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """No gateway at all: the scenario plays, nothing arrives, and the check says so."""
    code, out, _err = await run_trygg(
        "sim",
        "run",
        "lock-jam",
        f"--port={mosquitto.port}",
        "--speed=3000",
        "--wait=0",
        "--settle=1",
        *SIM,
        f"--cloud={sqlite_cloud.url}",
        "--user=anna",
        env={"TRYGG_PASSWORD": USERS["anna"][1]},
    )
    assert code == 1
    assert "MISMATCH lock_jammed from front-door-lock: expected 1, got 0" in out


async def test_sim_commands_refuse_bad_input_with_a_clear_message(tmp_path: Path) -> None:
    code, _out, err = await run_trygg("sim", "run", "no-such-night")
    assert code == 2 and "no such file or shipped scenario" in err
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\nend = "01:00"\n[[device]]\nid = "a"\n')
    code, _out, err = await run_trygg("sim", "config", str(broken))
    assert code == 2 and "broken.toml" in err and "device.0.type" in err
    code, _out, err = await run_trygg("sim", "load", "--mix=alarm_button,toaster", "--duration=1")
    assert code == 2 and "toaster" in err
    code, _out, err = await run_trygg("sim", "run", "smoke", "--port=9", "--wait=0")
    assert code == 1 and "error:" in err


async def test_load_mode_at_1000_homes_is_bounded_reports_its_rates_and_loses_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.toml"
    code, _out, err = await run_trygg(
        "sim",
        "config",
        "--load-homes=1000",
        f"--port={mosquitto.port}",
        f"--gateway-id={GATEWAY_ID}",
        f"--store={tmp_path / 'gw.db'}",
        f"--out={config}",
        *GW,
    )
    assert code == 0, err
    report_file = tmp_path / "load.json"
    async with Gateway(load_config(config)) as gateway:
        await started(gateway)
        began = time.monotonic()
        code, out, err = await run_trygg(
            "sim",
            "load",
            "--homes=1000",
            "--duration=3",
            "--report-every=10",
            "--alarms-per-hour=20",
            "--seed=7",
            f"--port={mosquitto.port}",
            f"--json={report_file}",
            *SIM,
        )
        took = time.monotonic() - began
        assert code == 0, err
        report = json.loads(report_file.read_text())
        sent = report["messages"]
        # Every message reached the gateway and was accepted: none unknown, none malformed.
        await wait_until(lambda: gateway.counters.accepted["message"] >= sent, limit_s=30)
        assert gateway.counters.accepted["message"] == sent
        assert not gateway.counters.dropped
    print(f"\n{out.strip().splitlines()[-1]}")
    assert took < 3 + 20  # bounded: three seconds of load plus start-up
    assert report["homes"] == 1000 and report["devices"] == 6000
    assert report["target_messages_per_s"] >= 600
    # The generator keeps up with its plan on this machine (half of it, to stay robust).
    assert sent >= 0.5 * 600 * 3
    assert report["messages_per_s"] > 0 and sum(report["alarms"].values()) > 0
    assert "1000 homes (6000 devices), seed 7:" in out
