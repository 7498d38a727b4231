from __future__ import annotations

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
