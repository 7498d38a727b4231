"""Signed commands end to end, as a technician's request travels: the dispatch service's
route, its signature, the secured broker, the gateway's checks, the simulator's locks
(Zigbee2MQTT and BLE), their confirmed state, and ``done`` in the dispatch service and
on its live stream. A command issued while the gateway is away expires there and is
never carried out when the gateway comes back."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from trygg_sim.broker import BrokerLogin
from trygg_sim.play import ScenarioRun, Wiring, gateway_config
from trygg_sim.scenario import parse_scenario

from cloud import CloudSettings
from cloud.commandkeys import export_trusted_keys, new_key_file
from devices.codecs.blelock import LockCause, LockState
from gateway import Gateway, GatewayConfig

from .conftest import GATEWAY_ID, RunningCloud, run_cloud
from .servers import (
    ZIGBEE2MQTT,
    Mosquitto,
    cloud_broker,
    free_port,
    free_udp_port,
    login,
    pki,
    wait_until,
)

pytestmark = pytest.mark.e2e

SCENARIO = """
name = "front doors"
start = "02:00"
end = "03:00"
speed = 1
[[device]]
id = "door-lock"
type = "digital_lock"
transport = "zigbee2mqtt"
address = "front_door_lock"
home = "home-12"
[[device]]
id = "ble-lock"
type = "digital_lock"
transport = "ble_lock"
home = "home-12"
[[device]]
id = "stuck-lock"
type = "digital_lock"
transport = "zigbee2mqtt"
address = "stuck_lock"
home = "home-12"
lock = "jams"
"""
FINAL = {"done", "failed", "refused", "expired"}


@dataclass
class Centre:
    cloud: RunningCloud
    run: ScenarioRun
    config: GatewayConfig
    gateway: Gateway
    changes: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, device: str, action: str, **extra: Any) -> dict[str, Any]:
        async with await self.cloud.authed("tove") as http:  # a technician
            res = await http.post(
                f"/api/v1/gateways/{GATEWAY_ID}/commands",
                json={"device_id": device, "action": action, **extra},
            )
        assert res.status_code == 202, res.text
        command: dict[str, Any] = res.json()
        assert command["state"] == "pending"
        return command

    def states(self, command_id: str) -> list[str]:
        return [c["state"] for c in self.changes if c["id"] == command_id]

    async def final(self, command_id: str, limit_s: float = 15.0) -> dict[str, Any]:
        """The command's last state as the live stream told it, once final."""
        await wait_until(lambda: FINAL & set(self.states(command_id)), limit_s)
        async with await self.cloud.authed("tove") as http:
            stored: dict[str, Any] = (await http.get(f"/api/v1/commands/{command_id}")).json()
        assert stored["state"] == self.states(command_id)[-1]
        return stored


async def _watch(cloud: RunningCloud, changes: list[dict[str, Any]], open_: asyncio.Event) -> None:
    async with (
        await cloud.authed("tove") as http,
        http.stream("GET", "/api/v1/commands/stream", timeout=None) as stream,
    ):
        assert stream.status_code == 200
        open_.set()
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                changes.append(json.loads(line.removeprefix("data:")))


async def _start(gateway: Gateway) -> None:
    await gateway.start()
    await asyncio.wait_for(gateway.uplink.connected.wait(), 15)
    await asyncio.wait_for(gateway.link("zigbee2mqtt").ready.wait(), 15)
    link = gateway.device_links["ble-lock"]
    await asyncio.wait_for(link.connected.wait(), 15)  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def centre(
    tmp: Path,
    broker: Mosquitto,
    scenario_text: str = SCENARIO,
    *,
    file_devices: set[str] | None = None,
    timeseries_url: str | None = None,
    **cloud_settings: Any,
) -> AsyncIterator[Centre]:
    """``file_devices``: the scenario's devices the gateway's file declares (all);
    ``timeseries_url``: where the gateway writes readings (none: it keeps none)."""
    key = tmp / "command-key.pem"
    new_key_file(key)
    settings = CloudSettings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'cloud.db'}",
        command_key_file=key,
        **cloud_broker(broker.port),
        **cloud_settings,
    )
    trusted = tmp / "dispatch-keys.json"
    export_trusted_keys(settings, trusted)
    scenario = parse_scenario(scenario_text, "front-doors.toml")
    wiring = Wiring(
        broker_port=broker.port,
        ble_port=free_udp_port(),
        ble_gatt_port=free_port(),
        serial_dir=tmp / "serial",
        login=BrokerLogin(ZIGBEE2MQTT, pki().passwords[ZIGBEE2MQTT], pki().tls.ca_cert),
    )
    body = gateway_config(
        scenario,
        wiring,
        gateway_id=GATEWAY_ID,
        store=tmp / "gw.db",
        gateway_login=login(GATEWAY_ID),
    )
    if file_devices is not None:
        body["devices"] = [d for d in body["devices"] if d["id"] in file_devices]
    body["gateway"]["device_changes_s"] = 0.2  # device states told within a moment
    body["commands"] = {"trusted_keys_file": str(trusted), "no_answer_s": 3.0}
    body["commands"]["clock_skew_s"] = 1.0
    if timeseries_url is not None:
        body["timeseries"] = {"url": timeseries_url, "poll_s": 0.1, "timeout_s": 5}
    config = GatewayConfig.model_validate(body)
    async with contextlib.AsyncExitStack() as stack:
        cloud = await stack.enter_async_context(run_cloud(settings))
        run = await stack.enter_async_context(ScenarioRun(scenario, wiring))
        playing = asyncio.create_task(run.play())
        stack.callback(playing.cancel)
        await asyncio.wait_for(run.commands_ready.wait(), 15)
        gateway = Gateway(config)
        await _start(gateway)
        here = Centre(cloud, run, config, gateway)
        opened = asyncio.Event()
        watcher = asyncio.create_task(_watch(cloud, here.changes, opened))
        stack.callback(watcher.cancel)
        await asyncio.wait_for(opened.wait(), 10)
        # The gateway's inventory has reached the dispatch service: its locks are known.
        async with await cloud.authed("tove") as http:

            async def locks_known() -> bool:
                devices = (await http.get("/api/v1/devices")).json()
                wanted = {"door-lock", "ble-lock"} & (file_devices or {"door-lock", "ble-lock"})
                return wanted <= {d["id"] for d in devices}

            await wait_until(locks_known, 15)
        try:
            yield here
        finally:
            await here.gateway.stop()


async def test_a_technician_unlocks_and_locks_both_kinds_of_lock_through_the_gateway(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with centre(tmp_path, mosquitto) as c:
        unlock = await c.send("door-lock", "unlock")
        done = await c.final(unlock["id"])
        assert (done["state"], done["reason"]) == ("done", None)
        assert c.states(unlock["id"]) == ["pending", "accepted", "done"]
        assert c.run.zigbee_state("door-lock")["lock_state"] == "unlocked"
        assert (await c.final((await c.send("door-lock", "lock"))["id"]))["state"] == "done"
        assert c.run.zigbee_state("door-lock")["lock_state"] == "locked"

        ble = c.run.gatt_lock("ble-lock")
        assert ble.status.state is LockState.LOCKED
        opened = await c.final((await c.send("ble-lock", "unlock"))["id"])
        assert opened["state"] == "done"
        assert (ble.status.state, ble.status.cause) == (LockState.UNLOCKED, LockCause.REMOTE)

        # A lock that jams: the technician learns it failed, and why.
        jammed = await c.final((await c.send("stuck-lock", "lock"))["id"])
        assert (jammed["state"], jammed["reason"]) == ("failed", "jammed")

        # The gateway's own record agrees, command by command.
        rows = await c.gateway.store.command_audit()
        assert {r.outcome for r in rows if r.command_id == unlock["id"]} >= {"accepted", "done"}
        async with await c.cloud.authed("stina") as http:  # a supervisor reads the audit log
            log = (await http.get("/api/v1/audit", params={"action": "command"})).json()
        assert len([e for e in log if e["action"] == "command.create"]) == 4


async def test_a_command_issued_while_the_gateway_is_away_expires_and_never_opens_the_door(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with centre(tmp_path, mosquitto, command_expiry_grace_s=1.5) as c:
        await c.gateway.stop()
        command = await c.send("door-lock", "unlock", ttl_s=1)
        expired = await c.final(command["id"])
        assert expired["state"] == "expired"
        # Back: the broker hands over what it kept for the gateway's session, the gateway
        # finds it expired, and the door stays locked.
        c.gateway = Gateway(c.config)
        await _start(c.gateway)

        async def answered() -> bool:
            rows = await c.gateway.store.command_audit()
            return any(r.command_id == command["id"] and r.outcome == "expired" for r in rows)

        await wait_until(answered, 15)
        assert c.run.zigbee_state("door-lock")["lock_state"] == "locked"
        rows = await c.gateway.store.command_audit()
        assert "accepted" not in {r.outcome for r in rows if r.command_id == command["id"]}
        # The dispatch service's record stays as it was: a final state is final.
        async with await c.cloud.authed("tove") as http:
            again = (await http.get(f"/api/v1/commands/{command['id']}")).json()
        assert again["state"] == "expired"
        assert c.states(command["id"])[-1] == "expired"
        # And a fresh command goes through as ever.
        assert (await c.final((await c.send("door-lock", "unlock"))["id"]))["state"] == "done"
