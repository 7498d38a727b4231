"""The gateway's device inventory, and what the dispatch service refuses to ingest.

A real gateway reports its devices on connect and on every change (pairing, removal,
a firmware build learned); the dispatch service keeps them per gateway and takes events
only of catalog kinds from devices so reported. Refused events are acked as refused, so
the gateway deletes and audits them; an event of a device that an inventory on its way
names waits for it instead of being refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cloud.db import Device
from cloud.db import Gateway as GatewayRow
from devices import EVENT_KINDS, Priority
from devices.wire import (
    MAX_INVENTORY_BYTES,
    Ack,
    Inventory,
    acks_topic,
    events_topic,
    inventory_topic,
)
from gateway import Gateway

from .conftest import (
    GATEWAY_ID,
    RunningCloud,
    envelope,
    gateway_config,
    inventory_device,
    make_event,
    publish,
    publish_inventory,
)
from .servers import Mosquitto, mqtt_client, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PRESS = json.dumps({"action": "emergency", "linkquality": 88}).encode()


async def devices_of(cloud: RunningCloud) -> dict[str, tuple[Any, ...]]:
    """Every device the dispatch service keeps, as (gateway, home, type, transport,
    firmware, actions, reported, resident)."""
    async with cloud.app.state.services.sessions() as session:
        rows = (await session.execute(select(Device).order_by(Device.id))).scalars()
        return {
            d.id: (
                d.gateway_id,
                d.home_id,
                d.type,
                d.transport,
                d.firmware,
                d.actions,
                d.reported_at is not None,
                d.resident_id,
            )
            for d in rows
        }


async def applied_revision(cloud: RunningCloud) -> int | None:
    async with cloud.app.state.services.sessions() as session:
        row = await session.get(GatewayRow, GATEWAY_ID)
        return None if row is None else row.inventory_revision


async def alarms(cloud: RunningCloud) -> list[tuple[str, str]]:
    async with await cloud.authed("anna") as http:
        found = (await http.get("/api/v1/alarms")).json()
    return sorted((a["device_id"], a["kind"]) for a in found)


@pytest.fixture
async def api_gateway(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Gateway]:
    config = gateway_config(mosquitto, tmp_path / "gw.db", extra={"api": {"port": 0}})
    async with Gateway(config) as gw:
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        await asyncio.wait_for(gw.uplink.connected.wait(), 10)
        yield gw


BASE = ("gw-test-1", "home-12")
REPORTED = {
    "door-1": (*BASE, "door_contact", "zigbee2mqtt", None, [], True, None),
    "lock-1": (*BASE, "digital_lock", "zigbee2mqtt", None, ["unlock", "lock"], True, None),
    "pendant-1": (*BASE, "alarm_button", "zigbee2mqtt", None, ["test"], True, "res-12"),
    "smoke-1": (*BASE, "smoke", "zigbee2mqtt", None, ["test"], True, None),
}


async def test_a_gateway_reports_its_devices_on_connect_and_on_every_change(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cloud = sqlite_cloud
    # Registered at the centre beforehand, with its resident: the inventory keeps that.
    async with await cloud.authed("tove") as http:
        body = {"id": "pendant-1", "gateway_id": GATEWAY_ID, "home_id": "home-12"}
        body |= {"type": "alarm_button", "resident_id": "res-12"}
        assert (await http.post("/api/v1/devices", json=body)).status_code == 201
    config = gateway_config(mosquitto, tmp_path / "gw.db", extra={"api": {"port": 0}})
    async with Gateway(config) as gw:
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        await wait_until(lambda: _devices_are(cloud, REPORTED))
        first = gw.inventory.revision
        assert await applied_revision(cloud) == first

        # The bridge names the lock's firmware build: a change, reported.
        bridge = [{"friendly_name": "front_door_lock", "software_build_id": "2.1.7"}]
        await publish(mosquitto.port, "zigbee2mqtt/bridge/devices", json.dumps(bridge))
        lock = REPORTED["lock-1"]
        with_firmware = REPORTED | {"lock-1": (*lock[:4], "2.1.7", *lock[5:])}
        await wait_until(lambda: _devices_are(cloud, with_firmware))

        # Paired through the technician API and pressed at once: the inventory goes
        # before the event, so the alarm arrives and nothing waits or is refused.
        new = {"id": "pendant-new", "type": "alarm_button", "address": "flat-13/pendant"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.api_port}") as api:
            response = await api.post("/devices", json=new | {"home": "home-13"})
            assert response.status_code == 201, response.text
            await publish(mosquitto.port, "zigbee2mqtt/flat-13/pendant", PRESS)
            await wait_until(lambda: _has_alarm(cloud, "pendant-new"), 20)
            paired: tuple[Any, ...] = (
                "gw-test-1",
                "home-13",
                "alarm_button",
                "zigbee2mqtt",
                None,
                ["test"],
                True,
                None,
            )
            assert (await devices_of(cloud))["pendant-new"] == paired
            # Removed: kept at the centre with its history, no longer reported.
            assert (await api.delete("/devices/pendant-new")).status_code == 204
        removed = with_firmware | {"pendant-new": (*paired[:6], False, None)}
        await wait_until(lambda: _devices_are(cloud, removed))
        last = gw.inventory.revision
        assert last > first and await applied_revision(cloud) == last
        assert (cloud.ingest.refused, cloud.ingest.waiting_for_inventory) == (0, 0)

    # A restart with nothing changed keeps the revision (and the firmware it knew).
    async with Gateway(config) as gw:
        await asyncio.wait_for(gw.uplink.connected.wait(), 10)
        assert gw.inventory.revision == last
        (lock_now,) = [d for d in gw.inventory.devices() if d.id == "lock-1"]
        assert lock_now.firmware == "2.1.7"
    assert await devices_of(cloud) == removed


async def _devices_are(cloud: RunningCloud, expected: dict[str, tuple[Any, ...]]) -> bool:
    return await devices_of(cloud) == expected


async def _has_alarm(cloud: RunningCloud, device_id: str) -> bool:
    return any(device == device_id for device, _kind in await alarms(cloud))


async def test_unknown_kinds_and_devices_are_refused_deleted_and_audited_by_the_gateway(
    sqlite_cloud: RunningCloud, api_gateway: Gateway, mosquitto: Mosquitto
) -> None:
    cloud, gw = sqlite_cloud, api_gateway
    await wait_until(lambda: _devices_are_reported(cloud, 4))
    refused = [
        make_event("refused", 1, kind="made_up", device="pendant-1"),
        make_event("refused", 2, device="ghost-1"),
        # The gateway's own id, but not one of the kinds a gateway says of itself.
        make_event("refused", 3, device=GATEWAY_ID),
    ]
    for event in refused:
        assert await gw.store.put(event)
    gw.uplink.wake()
    await wait_until(lambda: gw.uplink.refused == 3, 20)
    # Gone from the outbox, each refusal in the gateway's audit log with its reason.
    assert sum((await gw.store.depth()).values()) == 0
    audit = {d for _at, action, d in await gw.store.audit_log() if action == "event_refused"}
    assert audit == {
        f"{refused[0].id}: unknown_kind: kind 'made_up' is not in the device catalog",
        f"{refused[1].id}: unknown_device: device 'ghost-1' is not in this gateway's inventory",
        f"{refused[2].id}: unknown_device: device '{GATEWAY_ID}' is not in this gateway's"
        " inventory",
    }
    assert cloud.ingest.dropped == {"unknown_kind": 1, "unknown_device": 2}
    # A real press right after still arrives, and so does the gateway's own store fault.
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", PRESS)
    await gw.pipeline.raise_gateway_event(EVENT_KINDS["store_fault"], {"reason": "test"})
    await wait_until(lambda: _alarm_count(cloud, 2), 20)
    assert await alarms(cloud) == [(GATEWAY_ID, "store_fault"), ("pendant-1", "alarm_button")]
    assert cloud.ingest.refused == 3 and cloud.ingest.waiting_for_inventory == 0


async def _devices_are_reported(cloud: RunningCloud, n: int) -> bool:
    return sum(1 for row in (await devices_of(cloud)).values() if row[6]) == n


async def _alarm_count(cloud: RunningCloud, n: int) -> bool:
    return len(await alarms(cloud)) == n


GARBAGE: list[bytes] = [
    b"not json",
    b'{"v": 1, "gateway_id": "gw-test-1"}',
    b'{"v": 1, "gateway_id": "gw-test-1", "revision": -1, "sent_at": "2026-12-02T18:00:00Z",'
    b' "devices": []}',
    b'{"v": 1, "gateway_id": "gw-test-1", "revision": 99, "sent_at": "2026-12-02T18:00:00Z",'
    b' "devices": [{"id": "", "type": "x", "home_id": "h", "transport": "t"}]}',
    b"[]",
    "\u00e5\u00e4\u00f6".encode("utf-16"),
]


def _inventory(gateway_id: str, revision: int, *devices: str) -> bytes:
    body = Inventory(
        gateway_id=gateway_id,
        revision=revision,
        sent_at=datetime.now(UTC),
        devices=[inventory_device(d) for d in devices],
    )
    return body.model_dump_json().encode()


async def test_garbage_stale_and_foreign_inventories_are_counted_and_change_nothing(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    await publish_inventory(cloud, ["dev-1"], revision=10)
    topic = inventory_topic(GATEWAY_ID)
    async with mqtt_client(mosquitto.port, GATEWAY_ID) as client:
        for payload in GARBAGE:
            await client.publish(topic, payload, qos=1)
        await client.publish(topic, _inventory("gw-other", 50, "dev-2"), qos=1)  # not its own
        await client.publish(topic, _inventory(GATEWAY_ID, 9, "dev-2"), qos=1)  # older
        await client.publish(topic, b"{" + b" " * MAX_INVENTORY_BYTES + b"}", qos=1)
    async with mqtt_client(mosquitto.port, "gw-stranger") as client:  # not registered
        stranger = inventory_topic("gw-stranger")
        await client.publish(stranger, _inventory("gw-stranger", 1, "dev-2"), qos=1)
    # Applied in order after all of them: the newer one, with a device of its own and
    # one whose id PostgreSQL could not hold as it came (a NUL, kept replaced).
    await publish_inventory(cloud, ["dev-1", "dev-3", "dev\x004"], revision=11)
    assert cloud.ingest.dropped == {
        "inventory_garbage": len(GARBAGE),
        "inventory_mismatch": 1,
        "inventory_stale": 1,
        "oversized": 1,
        "unknown_gateway": 1,
    }
    assert cloud.ingest.neutralised == {"nul_character": 1}
    reported = {d: row[6] for d, row in (await devices_of(cloud)).items()}
    assert reported == {"dev-1": True, "dev-3": True, "dev\ufffd4": True}


async def test_an_event_that_overtakes_its_inventory_waits_for_it_and_is_never_refused(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    """Replicas share the gateways' messages: a device's first event can be taken by
    one before another has applied the inventory that names it."""
    await publish_inventory(cloud, ["dev-1"], revision=20)
    acks: list[Ack] = []

    def sent(n: int, revision: int, device: str) -> str:
        item = envelope("race", n, Priority.CRITICAL, device=device)
        return item.model_copy(update={"inventory_revision": revision}).model_dump_json()

    async with mqtt_client(mosquitto.port, GATEWAY_ID) as client:
        await client.subscribe(acks_topic(GATEWAY_ID), qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                acks.append(Ack.model_validate_json(message.payload))

        collector = asyncio.create_task(collect())
        topic = events_topic(GATEWAY_ID)
        await client.publish(topic, sent(1, 21, "dev-new"), qos=1)  # its inventory is on its way
        await client.publish(topic, sent(2, 20, "dev-gone"), qos=1)  # none names it: refused
        await client.publish(topic, sent(3, 20, "dev-1"), qos=1)
        await wait_until(lambda: len(acks) == 2)
        why = "unknown_device: device 'dev-gone' is not in this gateway's inventory"
        assert [(a.event_ids, a.refused) for a in acks] == [
            ([_id(2)], {_id(2): why}),
            ([_id(3)], {}),
        ]
        assert cloud.ingest.waiting_for_inventory == 1
        # The inventory lands; the gateway sends the event again after its ack timeout.
        await publish_inventory(cloud, ["dev-1", "dev-new"], revision=21)
        await client.publish(topic, sent(1, 21, "dev-new"), qos=1)
        await wait_until(lambda: len(acks) == 3)
        collector.cancel()
    assert (acks[2].event_ids, acks[2].refused) == ([_id(1)], {})
    assert await alarms(cloud) == [("dev-1", "alarm_button"), ("dev-new", "alarm_button")]
    assert cloud.ingest.dropped == {"unknown_device": 1}


def _id(n: int) -> str:
    return make_event("race", n).id
