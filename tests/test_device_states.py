"""The dispatch service knows every device: the gateway reports each device's state (a
summary on connect, changes within seconds) and its own health with each heartbeat,
over the secured broker; what is garbage is a counted drop (docs/wire-protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devices.wire import (
    MAX_DEVICE_STATES,
    MAX_MESSAGE_BYTES,
    DeviceState,
    DeviceStates,
    devices_topic,
)
from gateway import Gateway
from gateway.devicestate import DeviceStateReport
from gateway.registry import DEVICE_CONFIG, Registry
from gateway.store import Store
from trygg.cli import app

from .conftest import GATEWAY_ID, RunningCloud, publish, publish_inventory
from .servers import Mosquitto, wait_until
from .test_commands_e2e import SCENARIO, centre

pytestmark = pytest.mark.e2e


async def _devices(cloud: RunningCloud) -> dict[str, dict[str, Any]]:
    async with await cloud.authed("tove") as tove:  # a technician
        res = await tove.get("/api/v1/devices")
    assert res.status_code == 200, res.text
    return {d["id"]: d for d in res.json()}


async def test_the_dispatch_service_knows_each_devices_state_and_the_gateways_health(
    sqlite_cloud: RunningCloud, quick_gateway: Gateway, mosquitto: Mosquitto
) -> None:
    async def summarised() -> bool:
        return all(d["state_at"] for d in (await _devices(sqlite_cloud)).values())

    await wait_until(summarised, 20)
    door = (await _devices(sqlite_cloud))["door-1"]
    # Not heard yet: no readings, no faults, and its first check-in due from the start.
    assert (door["battery_pct"], door["faults"], door["contact"]) == (None, [], None)
    due = datetime.fromisoformat(door["checkin_due_at"])
    assert timedelta(hours=1) < due - datetime.now(UTC) <= timedelta(hours=2)

    # The front door opens; the smoke alarm's battery runs low: told within seconds.
    await publish(
        mosquitto.port, "zigbee2mqtt/front_door", json.dumps({"contact": False, "battery": 87})
    )
    await publish(
        mosquitto.port,
        "zigbee2mqtt/kitchen_smoke",
        json.dumps({"battery_low": True, "battery": 9, "linkquality": 60}),
    )

    async def told() -> bool:
        devices = await _devices(sqlite_cloud)
        door, smoke = devices["door-1"], devices["smoke-1"]
        return bool(door["contact"] == "open" and smoke["faults"] == ["battery_low"])

    await wait_until(told, 15)
    devices = await _devices(sqlite_cloud)
    assert devices["door-1"]["battery_pct"] == 87
    assert devices["door-1"]["last_seen_at"] is not None
    assert (devices["smoke-1"]["battery_pct"], devices["smoke-1"]["linkquality"]) == (9, 60)
    # Closed again, and the battery changed: the fault clears with a good battery.
    await publish(mosquitto.port, "zigbee2mqtt/front_door", json.dumps({"contact": True}))
    await publish(mosquitto.port, "zigbee2mqtt/kitchen_smoke", json.dumps({"battery_low": False}))

    async def cleared() -> bool:
        devices = await _devices(sqlite_cloud)
        return bool(devices["door-1"]["contact"] == "closed" and not devices["smoke-1"]["faults"])

    await wait_until(cleared, 15)

    # The heartbeat (the first goes on connect) carries the gateway's health.
    async with await sqlite_cloud.authed("tove") as tove:

        async def healthy() -> bool:
            (gw,) = (await tove.get("/api/v1/gateways")).json()
            return gw["health"] is not None

        await wait_until(healthy, 15)
        (gw,) = (await tove.get("/api/v1/gateways")).json()
    health = gw["health"]
    assert health["version"] and health["uptime_s"] >= 0
    assert set(health["outbox"]) == {"critical", "high", "normal", "low"}
    assert health["links"]["zigbee2mqtt"] == {"v": 1, "state": "connected", "up": True}
    assert (health["devices"], health["devices_silent"]) == (4, 0)
    assert 0 <= health["disk_budget_used_pct"] < 100
    assert abs(gw["clock_offset_s"]) < 60  # one machine: only the transit, however busy


def _report(**fields: Any) -> str:
    body: dict[str, Any] = {
        "gateway_id": GATEWAY_ID,
        "sent_at": datetime.now(UTC).isoformat(),
        "summary": False,
        "devices": [{"id": "dev-1", "battery_pct": 50}],
    }
    return json.dumps(body | fields)


async def test_garbage_on_the_device_states_topic_is_a_counted_drop(
    sqlite_cloud: RunningCloud,
) -> None:
    await publish_inventory(sqlite_cloud, ["dev-1"])
    ingest = sqlite_cloud.ingest
    topic = devices_topic(GATEWAY_ID)
    port = sqlite_cloud.settings.mqtt_port
    garbage: list[tuple[str | bytes, str]] = [
        (b"\xff\xfe not json", "device_states_malformed"),
        ("[]", "device_states_malformed"),
        (_report(devices=[{"id": "dev-1", "battery_pct": 400}]), "device_states_malformed"),
        (_report(devices=[{"id": "dev-1", "faults": ["DROP TABLE"]}]), "device_states_malformed"),
        (_report(devices=[{"id": "dev-1"}] * (MAX_DEVICE_STATES + 1)), "device_states_malformed"),
        (_report(sent_at="2026-12-03T10:00:00"), "device_states_malformed"),  # not UTC
        (_report(gateway_id="gw-other"), "device_states_mismatch"),
        (_report(devices=[{"id": "not-mine"}]), "device_state_unknown_device"),
        ("x" * (MAX_MESSAGE_BYTES + 1), "oversized"),
    ]
    for payload, reason in garbage:
        before = ingest.dropped[reason]
        await publish(port, topic, payload)
        await wait_until(lambda r=reason, b=before: ingest.dropped[r] > b, 10)
    # A NUL in a firmware name is replaced, and the report still applied.
    nul = {"id": "dev-1", "firmware": "1.0\u0000", "battery_pct": 50}
    await publish(port, topic, _report(devices=[nul]))

    async def applied() -> bool:
        return bool((await _devices(sqlite_cloud))["dev-1"]["firmware"] == "1.0\ufffd")

    await wait_until(applied, 10)
    # An older report (out of order after a reconnect) does not undo a newer one.
    old = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    stale_before = ingest.dropped["device_state_stale"]
    await publish(port, topic, _report(sent_at=old, devices=[{"id": "dev-1", "battery_pct": 1}]))
    await wait_until(lambda: ingest.dropped["device_state_stale"] > stale_before, 10)
    assert (await _devices(sqlite_cloud))["dev-1"]["battery_pct"] == 50


def _registry(n: int) -> Registry:
    return Registry(
        [
            DEVICE_CONFIG.validate_python(
                {"id": f"d-{i}", "type": "door_contact", "address": f"a-{i}", "home": "h"}
            )
            for i in range(n)
        ]
    )


async def test_a_change_is_what_a_technician_would_act_on_and_a_summary_comes_in_parts() -> None:
    registry = _registry(450)
    report = DeviceStateReport(GATEWAY_ID, registry)
    sent: list[tuple[str, str]] = []

    async def publish_(topic: str, payload: str) -> None:
        sent.append((topic, payload))

    await report.send_summary(publish_)
    parts = [DeviceStates.model_validate_json(p) for _t, p in sent]
    assert [(m.part, m.parts, len(m.devices)) for m in parts] == [
        (1, 3, 200),
        (2, 3, 200),
        (3, 3, 50),
    ]
    assert {t for t, _p in sent} == {devices_topic(GATEWAY_ID)}
    assert all(len(p.encode()) < MAX_MESSAGE_BYTES for _t, p in sent)
    assert len({d.id for m in parts for d in m.devices}) == 450

    device = registry.get("d-7")
    assert device is not None
    device.status.linkquality = 120
    device.status.battery_pct = 80.4
    assert await report.send_changes(publish_) == 1
    sent.clear()
    # Jitter within a step is no change; a whole percent, or a signal step, is.
    device.status.linkquality = 124
    device.status.battery_pct = 80.9
    assert await report.send_changes(publish_) == 0
    device.status.battery_pct = 79.9
    device.status.contact = "open"
    assert await report.send_changes(publish_) == 1
    (message,) = [DeviceStates.model_validate_json(p) for _t, p in sent]
    assert message.summary is False
    assert message.devices[0].contact == "open"
    # What a device says beyond the wire's range is clamped, not a reason to drop it all.
    device.status.battery_pct = 104.0
    device.status.rssi_dbm = float("nan")
    state = report.state(device)
    assert (state.battery_pct, state.rssi_dbm) == (100.0, None)
    DeviceState.model_validate_json(state.model_dump_json())


# The bridge's list as Zigbee2MQTT publishes it: an Aqara door contact that joined the
# network (its exposes as the bridge describes them), and the bridge itself.
BRIDGE_DEVICES = [
    {"friendly_name": "Coordinator", "ieee_address": "0x00124b0018e2a1b2", "type": "Coordinator"},
    {
        "friendly_name": "0x00158d0001a2b3c4",
        "ieee_address": "0x00158d0001a2b3c4",
        "type": "EndDevice",
        "supported": True,
        "software_build_id": "3000-0001",
        "definition": {
            "model": "MCCGQ11LM",
            "vendor": "Aqara",
            "description": "Door and window sensor",
            "exposes": [
                {"type": "numeric", "name": "battery", "property": "battery", "access": 1,
                 "unit": "%", "value_min": 0, "value_max": 100},
                {"type": "binary", "name": "contact", "property": "contact", "access": 1,
                 "value_on": False, "value_off": True},
                {"type": "numeric", "name": "linkquality", "property": "linkquality",
                 "access": 1, "unit": "lqi"},
            ],
        },
    },
]  # fmt: skip


async def test_a_device_heard_but_not_paired_shows_under_its_gateway_by_what_it_said(
    sqlite_cloud: RunningCloud, quick_gateway: Gateway, mosquitto: Mosquitto
) -> None:
    await publish(mosquitto.port, "zigbee2mqtt/bridge/devices", json.dumps(BRIDGE_DEVICES))
    said = {"contact": False, "battery": 80, "linkquality": 90}
    await publish(mosquitto.port, "zigbee2mqtt/0x00158d0001a2b3c4", json.dumps(said))
    route = f"/api/v1/gateways/{GATEWAY_ID}/discovered"
    async with await sqlite_cloud.authed("tove") as tove:

        async def listed() -> bool:
            return bool((await tove.get(route)).json())

        await wait_until(listed, 15)
        (stranger,) = (await tove.get(route)).json()
    assert (stranger["transport"], stranger["address"]) == ("zigbee2mqtt", "0x00158d0001a2b3c4")
    assert stranger["said"] == "battery, contact, linkquality"  # never the values
    assert stranger["messages"] >= 1
    # What the bridge describes it as: its model, and the type its exposes suggest.
    assert (stranger["model"], stranger["suggested_type"]) == ("MCCGQ11LM", "door_contact")
    async with await sqlite_cloud.authed("anna") as anna:  # an operator pairs nothing
        assert (await anna.get(route)).status_code == 403
    # (Every role and another organisation: tests/test_api_auth.py's route table.)


async def test_a_store_from_before_discovered_devices_said_anything_opens(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(
            "CREATE TABLE discovered (transport TEXT NOT NULL, address TEXT NOT NULL,"
            " first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,"
            " messages INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (transport, address))"
        )
        db.execute(
            "INSERT INTO discovered VALUES ('ble', 'AA:BB', '2026-12-01T10:00:00+00:00',"
            " '2026-12-01T10:00:00+00:00', 3)"
        )
        db.execute("PRAGMA user_version = 1")
    store = Store(path)
    await store.open()
    try:
        await store.note_discovered("ble", "AA:BB", said="BTHome advertisement")
        (found,) = await store.discovered()
        assert (found.messages, found.said) == (4, "BTHome advertisement")
    finally:
        await store.close()


async def test_a_smoke_alarms_test_button_is_a_test_for_the_technicians_only(
    sqlite_cloud: RunningCloud, quick_gateway: Gateway, mosquitto: Mosquitto
) -> None:
    events: list[dict[str, Any]] = []
    opened = asyncio.Event()

    async def operator_stream() -> None:
        async with (
            await sqlite_cloud.authed("anna") as anna,
            anna.stream("GET", "/api/v1/alarms/stream", timeout=None) as stream,
        ):
            opened.set()
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line.removeprefix("data:")))

    listening = asyncio.create_task(operator_stream())
    try:
        await asyncio.wait_for(opened.wait(), 10)
        test = {"smoke": True, "test": True, "battery": 95}
        await publish(mosquitto.port, "zigbee2mqtt/kitchen_smoke", json.dumps(test))

        async def tested() -> bool:
            return bool((await _devices(sqlite_cloud))["smoke-1"]["last_test_at"])

        await wait_until(tested, 15)
        smoke = (await _devices(sqlite_cloud))["smoke-1"]
        assert 0 <= smoke["last_test_delay_ms"] < 60_000
        # A real press after it: the operators' stream and queue have it, not the test.
        await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "sos"}))
        await wait_until(lambda: events, 15)
        assert [e["alarm"]["kind"] for e in events][:1] == ["alarm_button"]
        assert not any(e["alarm"]["test"] for e in events)
    finally:
        listening.cancel()
    async with await sqlite_cloud.authed("anna") as anna:
        queue = (await anna.get("/api/v1/alarms")).json()
    assert [a["kind"] for a in queue] == ["alarm_button"]
    # An organisation that wants them sees its tests in the queue, marked.
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["cloud", "set-organisation", "org-a", "--show-tests"],
        env={
            "TRYGG_DATABASE_URL": sqlite_cloud.settings.database_url,
            "TRYGG_ENVIRONMENT": "development",
        },
    )
    assert result.exit_code == 0, result.output
    assert "show_tests=true" in result.output
    async with await sqlite_cloud.authed("anna") as anna:
        queue = (await anna.get("/api/v1/alarms")).json()
    assert sorted((a["kind"], a["test"]) for a in queue) == [
        ("alarm_button", False),
        ("smoke", True),
    ]


PENDANT = (
    SCENARIO
    + """
[[device]]
id = "pendant-12"
type = "alarm_button"
transport = "zigbee2mqtt"
address = "pendant"
home = "home-12"
"""
)


async def test_a_technicians_test_of_a_pendant_goes_the_whole_way_and_pages_nobody(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with centre(tmp_path, mosquitto, PENDANT) as c:
        test = await c.send("pendant-12", "test")
        done = await c.final(test["id"])
        assert done["state"] == "done", done

        async def tested() -> bool:
            return bool((await _devices(c.cloud))["pendant-12"]["last_test_at"])

        await wait_until(tested, 15)
        pendant = (await _devices(c.cloud))["pendant-12"]
        through = datetime.fromisoformat(pendant["last_test_at"]) - datetime.fromisoformat(
            done["issued_at"]
        )
        assert timedelta(0) < through < timedelta(seconds=15)
        async with await c.cloud.authed("anna") as anna:  # not in the operators' queue
            assert (await anna.get("/api/v1/alarms")).json() == []
        async with await c.cloud.authed("sara") as sara:  # nor on any staff member's phone
            assert (await sara.get("/api/v1/my/alarms")).json() == []
        # A lock has no alarm to test: the dispatch service says so before signing.
        async with await c.cloud.authed("tove") as tove:
            res = await tove.post(
                f"/api/v1/gateways/{GATEWAY_ID}/commands",
                json={"device_id": "door-lock", "action": "test"},
            )
        assert res.status_code == 422, res.text
