"""Fault injection with real processes: kill the gateway, the broker, the dispatch
service and its database; nothing accepted is lost, nothing arrives twice, alarms keep
their priority order. Every loop here is bounded in count and time."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cloud import CloudSettings
from cloud.db import Alarm, EventRecord
from devices import Priority
from devices.wire import events_topic
from gateway import Gateway

from .conftest import (
    GATEWAY_ID,
    TEST_DEVICES,
    RunningCloud,
    envelope,
    gateway_config,
    publish_inventory,
    run_cloud,
)
from .servers import (
    GatewayProcess,
    Mosquitto,
    PrivatePostgres,
    cloud_broker,
    mqtt_client,
    one_broker_gateway,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PENDANTS = [
    {
        "id": f"pendant-{i}",
        "type": "alarm_button",
        "address": f"flat-{i}/pendant",
        "home": f"home-{i}",
    }
    for i in range(10)
]


OFFLINE = "gateway_offline"


async def cloud_counts(cloud: RunningCloud) -> tuple[int, int]:
    """(events stored, events counted into alarms) in the dispatch database, of devices:
    not the service's own ``gateway_offline`` events, which a killed gateway's last will or
    a broker outage raise (tests/test_gateway_supervision.py)."""
    async with cloud.app.state.services.sessions() as session:
        events = (
            await session.execute(
                select(func.count()).select_from(EventRecord).where(EventRecord.kind != OFFLINE)
            )
        ).scalar_one()
        counted = (
            await session.execute(
                select(func.coalesce(func.sum(Alarm.event_count), 0)).where(Alarm.kind != OFFLINE)
            )
        ).scalar_one()
    return int(events), int(counted)


async def wait_for_log(gateway: GatewayProcess, text: str, limit_s: float = 30) -> None:
    await wait_until(lambda: text in gateway.text(), limit_s, interval_s=0.05)


async def test_kill_9_in_the_middle_of_bursts_loses_nothing_and_duplicates_nothing(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    gw = one_broker_gateway(tmp_path, mosquitto.port, GATEWAY_ID, PENDANTS)
    rng = random.Random(7)
    sent = 0
    gw.start()
    await wait_for_log(gw, "subscribed to zigbee2mqtt/#")  # the broker now keeps its session
    async with mqtt_client(mosquitto.port) as device_side:
        for rnd in range(6):
            kill_after = rng.randint(5, 35)
            for n in range(40):
                press = {"action": "single", "linkquality": sent}  # every press a distinct message
                await device_side.publish(
                    f"zigbee2mqtt/flat-{sent % 10}/pendant", json.dumps(press), qos=1
                )
                sent += 1
                if n == kill_after:
                    gw.kill()  # SIGKILL in the middle of the burst
                await asyncio.sleep(0.005)
            before = gw.text().count("subscribed to zigbee2mqtt/#")
            gw.start()
            if rnd % 3 == 2:
                await asyncio.sleep(rng.uniform(0.0, 0.5))  # killed again before it is up
            else:  # the others hit a working gateway, however slowly this machine starts it
                await wait_until(
                    lambda before=before: gw.text().count("subscribed to zigbee2mqtt/#") > before,
                    60,
                    interval_s=0.05,
                )
    try:
        await wait_until(lambda: _all_arrived(sqlite_cloud, sent), 60, interval_s=0.2)
    finally:
        assert gw.terminate() in (0, -15)
    events, counted = await cloud_counts(sqlite_cloud)
    assert (events, counted) == (sent, sent), gw.text()[-3000:]
    # The kills hit a working gateway: several runs accepted alarms before they died.
    runs = gw.text().split("gateway gw-test-1 started")[1:]
    assert sum("accepted alarm_button" in run for run in runs) >= 3


async def _all_arrived(cloud: RunningCloud, n: int) -> bool:
    events, _ = await cloud_counts(cloud)
    return events >= n


@pytest.fixture
async def two_brokers(tmp_path: Path) -> AsyncIterator[tuple[Mosquitto, Mosquitto]]:
    """The home's broker (Zigbee2MQTT) and the dispatch service's broker, as in the field."""
    # The dispatch broker persists sessions, as in production (docker/mosquitto.conf): what
    # gateways publish after its restart waits for the dispatch service in order.
    local, central = Mosquitto(tmp_path), Mosquitto(tmp_path, persistent=True)
    local.start()
    central.start()
    try:
        yield local, central
    finally:
        local.stop()
        central.stop()


async def received_order(cloud: RunningCloud) -> list[tuple[str, str]]:
    async with cloud.app.state.services.sessions() as session:
        rows = await session.execute(
            select(EventRecord.priority, EventRecord.kind)
            .where(EventRecord.kind != OFFLINE)
            .order_by(EventRecord.received_at, EventRecord.id)
        )
        return [(p, k) for p, k in rows]


async def test_alarms_raised_while_the_dispatch_broker_is_down_arrive_first_in_priority_order(
    two_brokers: tuple[Mosquitto, Mosquitto], tmp_path: Path
) -> None:
    local, central = two_brokers
    settings = CloudSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", **cloud_broker(central.port)
    )
    config = gateway_config(local, tmp_path / "gw.db", ack_timeout_s=2.0)
    config = config.model_copy(
        update={"uplink": config.uplink.model_copy(update={"port": central.port})}
    )
    async with run_cloud(settings) as cloud, Gateway(config) as gw:
        await asyncio.wait_for(gw.uplink.connected.wait(), 10)
        central.stop()
        await wait_until(lambda: not gw.uplink.connected.is_set(), 10)
        async with mqtt_client(local.port) as device_side:
            # The backlog first: 200 lock openings (information), then a jam, then the alarms.
            for i in range(200):
                opened = {"action": "unlock", "action_source_name": "keypad", "action_user": i}
                await device_side.publish("zigbee2mqtt/front_door_lock", json.dumps(opened), qos=1)
            await device_side.publish(
                "zigbee2mqtt/front_door_lock", json.dumps({"lock_state": "not_fully_locked"}), qos=1
            )
            await device_side.publish(
                "zigbee2mqtt/kitchen_smoke", json.dumps({"smoke": True}), qos=1
            )
            await device_side.publish(
                "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "single"}), qos=1
            )
        await wait_until(lambda: gw.counters.accepted["event"] == 203, 20)
        await asyncio.sleep(1.0)  # the broker stays down a while longer
        central.start()
        await wait_until(lambda: _stored(cloud, 203), 30)
        order = await received_order(cloud)
    ranks = [Priority(p).rank for p, _ in order]
    assert ranks == sorted(ranks), "highest priority first after the outage"
    assert [k for _, k in order[:3]] == ["smoke", "alarm_button", "lock_jammed"]


async def _kinds_stored(cloud: RunningCloud, wanted: set[tuple[str, str]]) -> bool:
    async with cloud.app.state.services.sessions() as session:
        rows = await session.execute(select(EventRecord.kind, EventRecord.device_id))
        return wanted <= {(kind, device) for kind, device in rows.all()}


async def _stored(cloud: RunningCloud, n: int) -> bool:
    return (await cloud_counts(cloud))[0] == n


async def test_a_stopped_dispatch_service_loses_nothing(
    mosquitto: Mosquitto, gateway: Gateway, tmp_path: Path
) -> None:
    settings = CloudSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", **cloud_broker(mosquitto.port)
    )
    async with run_cloud(settings) as cloud:
        await _press(mosquitto, 0)
        await wait_until(lambda: _stored(cloud, 1), 10)
    # The dispatch service is down: alarms wait in the gateway's outbox.
    for i in range(1, 6):
        await _press(mosquitto, i)
    await wait_until(lambda: gateway.counters.accepted["event"] == 6, 10)
    await asyncio.sleep(0.5)
    assert sum((await gateway.store.depth()).values()) == 5
    async with run_cloud(settings) as cloud:
        await wait_until(lambda: _stored(cloud, 6), 30)
        await wait_until(lambda: _outbox_empty(gateway), 10)
        assert await cloud_counts(cloud) == (6, 6)


async def _press(mosquitto: Mosquitto, n: int) -> None:
    async with mqtt_client(mosquitto.port) as client:
        await client.publish(
            "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "single", "linkquality": n}), qos=1
        )


async def _outbox_empty(gateway: Gateway) -> bool:
    return sum((await gateway.store.depth()).values()) == 0


@pytest.fixture
def private_postgres() -> AsyncIterator[PrivatePostgres]:  # type: ignore[misc]
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.remove()


async def test_the_cloud_does_not_ack_what_it_could_not_commit(
    private_postgres: PrivatePostgres, mosquitto: Mosquitto, gateway: Gateway
) -> None:
    settings = CloudSettings(database_url=private_postgres.url, **cloud_broker(mosquitto.port))
    async with run_cloud(settings) as cloud:
        await _press(mosquitto, 0)
        await wait_until(lambda: _stored(cloud, 1), 10)
        await asyncio.to_thread(private_postgres.stop)
        await _press(mosquitto, 1)
        await wait_until(lambda: cloud.ingest.dropped["database_error"] >= 1, 20)
        assert (await gateway.store.depth())[Priority.CRITICAL] == 1, "kept: it was not acked"
        await asyncio.to_thread(private_postgres.start)
        await wait_until(lambda: _outbox_empty(gateway), 30)  # resent after the ack timeout
        assert await cloud_counts(cloud) == (2, 2)


async def test_a_full_disk_budget_still_accepts_and_delivers_alarms(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    extra: dict[str, object] = {
        # Above what remembering 5,000 messages for redeliveries takes, below the readings.
        "store": {"path": tmp_path / "gw.db", "budget_mb": 1.0},
        # A time-series server that is not there: readings pile up against the budget.
        "timeseries": {"url": "http://127.0.0.1:9", "poll_s": 0.1, "timeout_s": 0.5},
    }
    async with Gateway(gateway_config(mosquitto, tmp_path / "gw.db", extra=extra)) as gw:
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        async with mqtt_client(mosquitto.port) as client:
            for i in range(5000):
                state = {
                    "contact": True,
                    "battery": i % 100,
                    "linkquality": i % 255,
                    "voltage": 3000 + i,
                }
                await client.publish("zigbee2mqtt/front_door", json.dumps(state), qos=1)
            await wait_until(lambda: gw.readings.committed == 15_000, 30)
            await client.publish(
                "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "single"}), qos=1
            )
        await wait_until(lambda: _stored(sqlite_cloud, 1), 10)
        dropped = gw.store.readings_dropped
        assert dropped["downsampled"] + dropped["over_budget"] > 0
        used = await gw.store._run(gw.store._used_bytes)
        assert used <= 1.0 * 1024 * 1024 * 1.1  # within the budget, but for the alarm's own pages


async def test_a_corrupt_gateway_database_is_quarantined_and_the_gateway_starts_clean(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    store = tmp_path / "gw.db"
    store.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 64)
    gw = one_broker_gateway(tmp_path, mosquitto.port, GATEWAY_ID, TEST_DEVICES, store=store)
    gw.start()
    try:
        await wait_for_log(gw, "subscribed to zigbee2mqtt/#")
        await _press(mosquitto, 1)
        # The press arrives, and beside it the gateway's report of its damaged store (in
        # either order: wait for both, not for a count one of them passes through).
        kinds = {("alarm_button", "pendant-1"), ("store_damaged", GATEWAY_ID)}
        await wait_until(lambda: _kinds_stored(sqlite_cloud, kinds), 20)
    finally:
        assert gw.terminate() in (0, -15)
    log = gw.text()
    assert "unreadable at start" in log and "the old one is kept as" in log
    assert "Traceback" not in log
    moved = await asyncio.to_thread(lambda: list(tmp_path.glob("gw.db.corrupt-*")))
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"SQLite format 3")


async def test_duplicated_and_reordered_deliveries_make_one_alarm_each(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    envelopes = [envelope("reorder", i, device=f"pendant-{i}") for i in range(20)]
    await publish_inventory(sqlite_cloud, [item.event.device_id for item in envelopes])
    wire = envelopes * 3
    random.Random(3).shuffle(wire)
    async with mqtt_client(mosquitto.port, GATEWAY_ID) as client:
        for item in wire:
            await client.publish(events_topic(GATEWAY_ID), item.model_dump_json(), qos=1)
    await wait_until(lambda: sqlite_cloud.ingest.duplicates == 40, 20)
    assert await cloud_counts(sqlite_cloud) == (20, 20)
    async with await sqlite_cloud.authed("anna") as http:
        alarms = (await http.get("/api/v1/alarms")).json()
    assert sorted(a["device_id"] for a in alarms) == sorted(f"pendant-{i}" for i in range(20))


def test_private_postgres_binaries_exist() -> None:
    assert shutil.which("runuser") is not None
