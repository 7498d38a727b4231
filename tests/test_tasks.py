"""Supervised gateway tasks: a failure is counted, reported and followed by a restart;
it never ends the gateway. And readings a store cannot keep never block the others."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

import pytest

from gateway.readings import ReadingsBuffer
from gateway.store import Store
from gateway.tasks import TaskSupervisor

from .servers import wait_until


async def test_a_failing_task_is_restarted_with_its_error_counted_and_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []
    healthy = asyncio.Event()

    async def work() -> None:
        runs.append(len(runs))
        if len(runs) <= 3:
            raise IndexError("list index out of range")
        healthy.set()
        await asyncio.Event().wait()  # then runs until cancelled

    supervisor = TaskSupervisor(first_s=0.01, cap_s=0.05)
    with caplog.at_level(logging.ERROR, logger="trygg.gateway.tasks"):
        task = supervisor.spawn("serial-gps", work)
        await asyncio.wait_for(healthy.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(runs) == 4
    failure = supervisor.failures()["serial-gps"]
    assert (failure.restarts, failure.error, failure.down) == (
        3,
        "IndexError: list index out of range",
        False,
    )
    failed = [r for r in caplog.records if "serial-gps failed" in r.getMessage()]
    assert len(failed) == 3
    assert [r.exc_info is not None for r in failed] == [True, False, False]


async def test_a_task_that_returns_is_started_again() -> None:
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1

    supervisor = TaskSupervisor(first_s=0.01, cap_s=0.02)
    task = supervisor.spawn("rules", work)
    await wait_until(lambda: calls >= 3, 10)
    task.cancel()
    assert supervisor.last_error["rules"] == "ended"


async def test_a_reading_that_is_not_a_number_is_dropped_and_the_rest_is_kept(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "gw.db")
    await store.open()
    try:
        readings = ReadingsBuffer(store)
        readings.add(("gps-1", "speed_kmh", math.nan, 1))
        readings.add(("gps-1", "speed_kmh", math.inf, 2))
        readings.add(("gps-1", "speed_kmh", 12.5, 3))
        await readings.flush()
        assert readings.dropped["not_finite"] == 2
        assert [(r.metric, r.value) for r in await store.readings(10)] == [("speed_kmh", 12.5)]
    finally:
        await store.close()
