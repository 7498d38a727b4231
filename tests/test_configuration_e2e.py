"""A gateway's configuration set at the centre, end to end: the technician's route, the
version kept and audited, the signed configure command over the secured broker, the
gateway's checks, its heartbeat naming the version in force, the device's next press an
alarm in the queue; a refusal's reason back in the console's view; a change made from
an old version refused; a gateway that lost its store given its configuration again by
the next heartbeat (cloud/configuration.py, gateway/remoteconfig.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cloud.admin import admin_session
from cloud.db import AuditEntry
from gateway import Gateway

from .conftest import GATEWAY_ID
from .servers import Mosquitto, wait_until
from .test_commands_e2e import _start, centre

pytestmark = pytest.mark.e2e

SCENARIO = """
name = "an installation"
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
id = "new-pendant"
type = "alarm_button"
transport = "zigbee2mqtt"
address = "0x00158d0001a2b3c4"
home = "home-12"
"""
FILE = {"door-lock", "ble-lock"}  # what the gateway's file declares; the pendant it does not
URL = f"/api/v1/gateways/{GATEWAY_ID}/configuration"
PENDANT = {
    "id": "new-pendant",
    "type": "alarm_button",
    "transport": "zigbee2mqtt",
    "address": "0x00158d0001a2b3c4",
    "home": "home-12",
    "resident": "res-1",
}


async def _view(http: httpx.AsyncClient) -> dict[str, Any]:
    res = await http.get(URL)
    assert res.status_code == 200, res.text
    view: dict[str, Any] = res.json()
    return view


async def _until(http: httpx.AsyncClient, delivery: str) -> dict[str, Any]:
    async def arrived() -> bool:
        return bool((await _view(http))["delivery"] == delivery)

    await wait_until(arrived, 20)
    return await _view(http)


async def test_a_technician_configures_a_pendant_and_its_next_press_is_an_alarm(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with centre(tmp_path, mosquitto, SCENARIO, file_devices=FILE) as c:
        async with await c.cloud.authed("tove") as http:
            empty = await _view(http)
            assert (empty["version"], empty["delivery"], empty["devices"]) == (None, "none", [])
            change = {"base_version": None, "devices": [PENDANT], "homes": [{"id": "home-12"}]}
            res = await http.put(URL, json=change)
            assert res.status_code == 200, res.text
            assert (res.json()["version"], res.json()["created_by"]) == (1, "tove")
            applied = await _until(http, "applied")
            assert (applied["applied_version"], applied["command"]["state"]) == (1, "done")
            assert applied["devices"] == [PENDANT]
            # The inventory the gateway sends after it names the pendant, and its press
            # is an alarm in the operators' queue.
            assert c.gateway.registry.get("new-pendant") is not None

            async def known() -> bool:
                devices = (await http.get("/api/v1/devices")).json()
                return any(d["id"] == "new-pendant" for d in devices)

            await wait_until(known, 15)
            await c.run.act("new-pendant", "press")
        async with await c.cloud.authed("anna") as http:

            async def queued() -> bool:
                alarms = (await http.get("/api/v1/alarms")).json()
                return any(a["device_id"] == "new-pendant" for a in alarms)

            await wait_until(queued, 15)
        async with admin_session(c.cloud.settings) as session:
            rows = await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "configuration.change")
            )
            (entry,) = rows
            assert (entry.actor, entry.target) == ("tove", f"gateway:{GATEWAY_ID}")


async def test_a_refusal_is_shown_with_its_reason_and_a_stale_change_is_refused(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with centre(tmp_path, mosquitto, SCENARIO, file_devices=FILE) as c:
        async with await c.cloud.authed("tove") as http:
            ok = {"base_version": None, "devices": [PENDANT]}
            assert (await http.put(URL, json=ok)).status_code == 200
            await _until(http, "applied")
            # The file declares door-lock: the gateway refuses, keeps version 1, says why.
            clash = {**PENDANT, "id": "door-lock", "address": "elsewhere"}
            res = await http.put(URL, json={"base_version": 1, "devices": [clash]})
            assert res.status_code == 200 and res.json()["version"] == 2
            refused = await _until(http, "refused")
            assert refused["applied_version"] == 1
            command = refused["command"]
            assert (command["state"], command["reason"]) == ("refused", "invalid_config")
            assert command["detail"] == "device door-lock is declared in the gateway's file"
            # Two technicians at once: the second one's change, made from version 1, loses.
            late = await http.put(URL, json={"base_version": 1, "devices": []})
            assert late.status_code == 409
            assert "now version 2 by tove" in late.json()["detail"]
            fixed = await http.put(URL, json={"base_version": 2, "devices": []})
            assert fixed.json()["version"] == 3
            await _until(http, "applied")
            assert c.gateway.registry.get("new-pendant") is None
        # Who may: technicians and administrators change; supervisors read; others none.
        for user, method, expected in (
            ("stina", "get", 200),
            ("stina", "put", 403),
            ("anna", "get", 403),
            ("sara", "put", 403),
            ("adam", "put", 409),  # allowed, and refused for its old base version only
            ("ulla", "get", 404),  # another organisation's supervisor: no such gateway
        ):
            async with await c.cloud.authed(user) as http:
                body = {"base_version": 1, "devices": []}
                res = await (http.get(URL) if method == "get" else http.put(URL, json=body))
                assert res.status_code == expected, (user, method, res.text)


async def test_garbage_changes_are_refused_with_the_reason(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        centre(tmp_path, mosquitto, SCENARIO, file_devices=FILE) as c,
        await c.cloud.authed("tove") as http,
    ):
        for body in (
            b"not json",
            b"[]",
            json.dumps({"devices": []}).encode(),  # no base_version
            json.dumps({"base_version": None, "devices": [1, 2]}).encode(),
            json.dumps({"base_version": None, "devices": [{}] * 501}).encode(),
            json.dumps({"base_version": None, "heartbeat_interval_s": 5}).encode(),
            json.dumps({"base_version": "one"}).encode(),
            json.dumps({"base_version": None, "extra": 1}).encode(),
            b'{"base_version": null, "devices": [{"x": NaN}]}',
        ):
            res = await http.put(URL, content=body, headers={"Content-Type": "application/json"})
            assert res.status_code == 422, (body[:60], res.status_code, res.text)
        huge = {"base_version": None, "devices": [{"note": "x" * 1000}] * 300}
        assert (await http.put(URL, json=huge)).status_code == 413
        res = await http.put("/api/v1/gateways/gw-nope/configuration", json={"base_version": None})
        assert res.status_code == 404
        assert (await _view(http))["version"] is None  # nothing was kept


async def test_a_gateway_that_lost_its_store_gets_its_configuration_again(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        centre(tmp_path, mosquitto, SCENARIO, file_devices=FILE) as c,
        await c.cloud.authed("tove") as http,
    ):
        res = await http.put(
            URL, json={"base_version": None, "devices": [PENDANT], "heartbeat_interval_s": 300}
        )
        assert res.status_code == 200
        await _until(http, "applied")
        assert c.gateway.uplink.heartbeat_interval_s == 300
        # The gateway's disk is replaced: a new store, the file alone.
        await c.gateway.stop()
        for path in await asyncio.to_thread(lambda: list(tmp_path.glob("gw.db*"))):
            path.unlink()
        c.gateway = Gateway(c.config)
        await _start(c.gateway)
        assert c.gateway.configurator.version in (None, 1)  # its first heartbeat says None
        await wait_until(lambda: c.gateway.configurator.version == 1, 20)
        again = await _view(http)
        assert again["command"]["issued_by"] == "system"
        assert c.gateway.registry.get("new-pendant") is not None
        await _until(http, "applied")
        assert c.gateway.uplink.heartbeat_interval_s == 300


async def test_a_gateway_away_during_an_edit_gets_it_when_it_is_back(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Two edits while the gateway is away: the first command waits at the broker (the
    gateway's session is kept) and is stale when the gateway is back; the newest is in
    force either way, by its own command or sent again at the first heartbeat."""
    async with (
        centre(tmp_path, mosquitto, SCENARIO, file_devices=FILE) as c,
        await c.cloud.authed("tove") as http,
    ):
        await c.gateway.stop()
        first = await http.put(URL, json={"base_version": None, "devices": [PENDANT]})
        assert first.status_code == 200 and first.json()["delivery"] == "pending"
        home = {"id": "home-12", "door_open_at_night": True, "night": "21:00-06:30"}
        second = await http.put(
            URL, json={"base_version": 1, "devices": [PENDANT], "homes": [home]}
        )
        assert second.json()["version"] == 2
        c.gateway = Gateway(c.config)
        await _start(c.gateway)
        back = await _until(http, "applied")
        assert back["applied_version"] == 2
        assert c.gateway.configurator.version == 2
        rules = c.gateway.pipeline.rules.homes["home-12"]
        assert (rules.door_open_at_night, rules.night) == (True, "21:00-06:30")
        assert c.gateway.registry.get("new-pendant") is not None
        # Version 1, if it reached the gateway after version 2, was refused as stale.
        commands = (await http.get(f"/api/v1/gateways/{GATEWAY_ID}/commands")).json()
        outcomes = {(c["state"], c["reason"]) for c in commands if c["action"] == "configure"}
        assert outcomes <= {("done", None), ("refused", "stale_version"), ("expired", "expired")}
        assert ("done", None) in outcomes
