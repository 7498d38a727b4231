"""A damaged, deleted or replaced store: the unsent alarms that can still be read are
carried into a fresh store and delivered once, and the dispatch service is told with the
counts. Real SQLite files damaged the way a failing disk or a careless hand would."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cloud import CloudSettings
from cloud.db import EventRecord
from devices import Priority
from gateway import Gateway, Store
from gateway.store import StoreDamage

from .conftest import gateway_config, make_event, run_cloud
from .servers import Mosquitto, cloud_broker, mqtt_client, wait_until
from .test_faults import two_brokers  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PAGE = 4096


def events(n: int) -> list[str]:
    return [
        make_event("damage", i, Priority.CRITICAL, device=f"pendant-{i % 7}").id for i in range(n)
    ]


async def filled_store(path: Path, n: int) -> Store:
    store = Store(path)
    await store.open()
    for i in range(n):
        await store.put(make_event("damage", i, Priority.CRITICAL, device=f"pendant-{i % 7}"))
    await store.pair("pendant-x", '{"id": "pendant-x"}')
    return store


def overwrite(path: Path, offset: int, length: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(b"\xa5" * length)


def middle_outbox_page(path: Path) -> int:
    """The offset of the page nearest the middle of the file that holds outbox rows (not
    an index's or another table's page)."""
    data = path.read_bytes()
    pages = len(data) // PAGE
    for n in sorted(range(1, pages), key=lambda p: abs(p - pages // 2)):
        if data[n * PAGE : (n + 1) * PAGE].count(b'"occurred_at"') >= 3:
            return n * PAGE
    raise AssertionError("no page of outbox rows")


async def pending_ids(store: Store) -> list[str]:
    return sorted(p.event.id for p in await store.pending(10_000))


async def test_a_damaged_page_costs_its_rows_and_the_rest_is_salvaged_at_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    store = await filled_store(path, 400)
    await store.close()
    size = path.stat().st_size
    assert size > 20 * PAGE  # many pages: one of them is damaged below
    overwrite(path, middle_outbox_page(path), PAGE)

    heard: list[StoreDamage] = []
    store = Store(path)
    store.on_damaged = heard.append
    await store.open()
    try:
        await wait_until(lambda: heard, 5)
        kept = await pending_ids(store)
        salvage = heard[0].salvage
        assert len(kept) == len(salvage.outbox) and 300 <= len(kept) < 400
        assert set(kept) <= set(events(400))
        assert salvage.unreadable >= 1
        assert [d for d, _ in await store.paired_devices()] == ["pendant-x"]
        assert store.quarantined is not None and store.quarantined.exists()
        assert "unreadable at start" in heard[0].reason
    finally:
        await store.close()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_store_file_deleted_or_replaced_under_the_process_is_noticed_and_saved(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "gw.db"
    store = await filled_store(path, 25)
    heard: list[StoreDamage] = []
    store.on_damaged = heard.append
    try:
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        if how == "replaced":
            path.write_bytes(b"somebody else's file")
        await store.check()  # the watch, once a second in a gateway
        await wait_until(lambda: heard, 5)
        assert f"store file {how} under the running gateway" == heard[0].reason
        assert await pending_ids(store) == sorted(events(25))
        assert [d for d, _ in await store.paired_devices()] == ["pendant-x"]
        assert path.exists() and path.read_bytes().startswith(b"SQLite format 3\0")
        if how == "replaced":
            assert heard[0].moved_to is not None
            assert heard[0].moved_to.read_bytes() == b"somebody else's file"
        # And it goes on: a new alarm is kept in the fresh file.
        assert await store.put(make_event("damage", 999))
    finally:
        await store.close()


async def test_damage_found_by_the_integrity_check_is_healed_from_the_live_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    store = await filled_store(path, 40)
    heard: list[StoreDamage] = []
    store.on_damaged = heard.append
    try:
        await store.check(integrity=True)  # sound: and the WAL is written back
        assert heard == []
        overwrite(path, 0, 100)  # the file header: no reader can open it any more
        await store.check(integrity=True)
        await wait_until(lambda: heard, 5)
        assert heard[0].reason.startswith("damaged while running")
        assert len(heard[0].salvage.outbox) == 40  # the process still had every page
        assert await pending_ids(store) == sorted(events(40))
        assert store.quarantined is not None and store.quarantined.exists()
    finally:
        await store.close()


async def press_events(cloud_sessions: object) -> tuple[int, int]:
    async with cloud_sessions() as session:  # type: ignore[operator]
        rows = await session.execute(
            select(EventRecord.kind, func.count()).group_by(EventRecord.kind)
        )
        counts = dict(rows.all())
    return int(counts.get("alarm_button", 0)), int(counts.get("store_damaged", 0))


async def test_unsent_alarms_survive_damage_and_deletion_under_a_running_gateway(
    two_brokers: tuple[Mosquitto, Mosquitto],  # noqa: F811
    tmp_path: Path,
) -> None:
    local, central = two_brokers
    settings = CloudSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", **cloud_broker(central.port)
    )
    store = tmp_path / "gw.db"
    extra: dict[str, object] = {"store": {"path": store, "integrity_check_s": 0.5}}
    config = gateway_config(local, store, extra=extra, ack_timeout_s=2.0)
    config = config.model_copy(
        update={"uplink": config.uplink.model_copy(update={"port": central.port})}
    )
    async with run_cloud(settings) as cloud, Gateway(config) as gw:
        await asyncio.wait_for(gw.uplink.connected.wait(), 10)
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        central.stop()  # the dispatch service is out of reach: alarms wait in the outbox
        await wait_until(lambda: not gw.uplink.connected.is_set(), 10)
        async with mqtt_client(local.port) as devices:
            for n in range(20):
                press = json.dumps({"action": "single", "linkquality": n})
                await devices.publish("zigbee2mqtt/flat-12/pendant", press, qos=1)
            await wait_until(lambda: gw.counters.accepted["event"] == 20, 20)
            checks = gw.store.integrity_checks
            await wait_until(lambda: gw.store.integrity_checks >= checks + 2, 20)
            overwrite(store, 0, 100)  # damaged under the running gateway
            await wait_until(lambda: len(gw.store.damage) == 1, 20)
            for n in range(20, 30):
                press = json.dumps({"action": "single", "linkquality": n})
                await devices.publish("zigbee2mqtt/flat-12/pendant", press, qos=1)
            await wait_until(lambda: gw.counters.accepted["event"] == 30, 20)
            await wait_until(lambda: outbox(gw, 31), 20)  # 20 saved, their report, 10 new
            for suffix in ("", "-wal", "-shm"):  # then deleted under it
                store.with_name(store.name + suffix).unlink(missing_ok=True)
            await wait_until(lambda: len(gw.store.damage) == 2, 20)
        assert gw.tasks.restarts == {}, "nothing failed: the gateway healed in place"
        central.start()
        sessions = cloud.app.state.services.sessions
        await wait_until(lambda: press_events(sessions), 30)
        await wait_until(lambda: _all(sessions), 30)
        async with sessions() as session:
            rows = await session.execute(
                select(EventRecord.detail).where(EventRecord.kind == "store_damaged")
            )
            details = sorted((d for (d,) in rows), key=lambda d: str(d["reason"]))
    assert await press_events(sessions) == (30, 2)
    damaged, deleted = details
    assert damaged["reason"].startswith("damaged while running")
    assert damaged["salvaged_events"] == 20
    assert deleted["reason"] == "store file deleted under the running gateway"
    assert deleted["salvaged_events"] == 31


async def outbox(gw: Gateway, n: int) -> bool:
    return sum((await gw.store.depth()).values()) == n


async def _all(sessions: object) -> bool:
    return await press_events(sessions) == (30, 2)
