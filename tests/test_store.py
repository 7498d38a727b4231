from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices import Event, Priority, stable_event_id
from gateway import Store, StoreError

KINDS = {
    Priority.CRITICAL: "alarm_button",
    Priority.HIGH: "inactivity",
    Priority.NORMAL: "battery_low",
    Priority.LOW: "lock_opened",
}


def event(n: int, priority: Priority) -> Event:
    return Event(
        id=stable_event_id("gw", str(n)),
        kind=KINDS[priority],
        priority=priority,
        device_id=f"dev-{n}",
        device_type="alarm_button",
        home_id="home-1",
        occurred_at=datetime.now(UTC),
    )


async def test_pending_is_highest_priority_first_then_oldest(tmp_path: Path) -> None:
    store = Store(tmp_path / "gw.db")
    await store.open()
    order = [
        Priority.LOW,
        Priority.NORMAL,
        Priority.CRITICAL,
        Priority.LOW,
        Priority.CRITICAL,
        Priority.HIGH,
    ]
    events = [event(i, p) for i, p in enumerate(order)]
    for e in events:
        assert await store.put(e)
    pending = [p.event for p in await store.pending(10)]
    assert pending == [events[2], events[4], events[5], events[1], events[0], events[3]]
    assert [p.event for p in await store.pending(2, exclude=[events[2].id])] == [
        events[4],
        events[5],
    ]
    await store.close()


async def test_events_survive_a_reopen_until_acked(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    store = Store(path)
    await store.open()
    a, b = event(1, Priority.CRITICAL), event(2, Priority.NORMAL)
    await store.put(a)
    await store.put(b)
    assert not await store.put(a), "the same id is held once"
    await store.close()

    store = Store(path)
    await store.open()
    assert (await store.depth())[Priority.CRITICAL] == 1
    assert await store.ack([a.id, "ev-unknown-000"]) == 1
    assert [p.event for p in await store.pending(10)] == [b]
    await store.close()


async def test_using_a_closed_store_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "gw.db")
    with pytest.raises(StoreError, match="not open"):
        await store.put(event(1, Priority.CRITICAL))


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    store = Store(tmp_path / "dir.db")
    with pytest.raises(StoreError, match="cannot open"):
        await store.open()


async def test_the_disk_budget_thins_then_drops_readings_and_never_events(tmp_path: Path) -> None:
    budget = 512 * 1024
    store = Store(tmp_path / "gw.db", budget_bytes=budget)
    await store.open()
    kept = [event(i, Priority.CRITICAL) for i in range(20)]
    for e in kept[:10]:
        await store.put(e)
    start_ms = 1_764_000_000_000
    n = 0
    for _batch in range(40):  # 40 x 2,000 readings, one a second from 4 devices: far over budget
        rows = []
        for _ in range(2000):
            rows.append((f"dev-{n % 4}", "temperature_c", float(n), start_ms + (n // 4) * 1000))
            n += 1
        await store.add_readings(rows)
    assert await store._run(store._used_bytes) <= budget
    for e in kept[10:]:  # the store still accepts events when full of readings
        assert await store.put(e)
    assert [p.event for p in await store.pending(100)] == kept
    assert store.readings_dropped["downsampled"] > 0
    assert store.readings_dropped["over_budget"] > 0
    remaining = await store.readings_count()
    assert remaining + sum(store.readings_dropped.values()) == n
    newest = await store.readings(100_000)
    assert newest[-1].value == float(n - 1), "the newest readings are the ones kept"
    await store.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
async def test_an_unreadable_database_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gw.db"
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 500)
    else:
        store = Store(path)
        await store.open()
        for i in range(200):
            await store.put(event(i, Priority.NORMAL))
        await store.close()
        data = path.read_bytes()
        path.write_bytes(data[:4096] + b"\x00" * 100 + data[8192:])  # damage the second page
    before = path.read_bytes()
    store = Store(path)
    await store.open()
    assert store.quarantined is not None and store.quarantined.read_bytes() == before
    assert "the old one is kept as" in caplog.text
    assert await store.put(event(1, Priority.CRITICAL))
    assert [a for _, a, _ in await store.audit_log()] == ["store_damaged"]
    await store.close()


async def test_an_alarm_commit_goes_ahead_of_queued_readings_work(tmp_path: Path) -> None:
    import asyncio
    import time

    from gateway.store import BULK

    store = Store(tmp_path / "gw.db")
    await store.open()
    done: list[str] = []

    def slow(name: str) -> Callable[[], None]:
        def work() -> None:
            time.sleep(0.05)
            done.append(name)

        return work

    bulk = [asyncio.ensure_future(store._run(slow(f"bulk-{n}"), BULK)) for n in range(4)]
    await asyncio.sleep(0.01)  # bulk-0 is running, bulk-1..3 wait
    assert await store.put(event(1, Priority.CRITICAL))
    done.append("alarm")
    await asyncio.gather(*bulk)
    assert done.index("alarm") <= 1, done  # after the batch that was already running, at most
    await store.close()
