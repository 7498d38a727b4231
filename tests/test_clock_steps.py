"""Steps of the dispatch host's wall clock, made with libfaketime (Debian's) in a real
``trygg cloud run`` process, on SQLite and PostgreSQL: an unclaimed critical alarm still
escalates on time, a gateway that beat a moment ago is not reported offline, and each
step is recorded as a ``clock_step`` technical alarm. Below it, the watch and the steady
clock with clocks the test turns by hand.

libfaketime reads the offset from a file the test rewrites (``FAKETIME_NO_CACHE``: read on
every call). The monotonic clock is left alone (``FAKETIME_DONT_FAKE_MONOTONIC``), as in
a real step of the wall clock.
"""

from __future__ import annotations

import contextlib
import glob
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cloud import CloudSettings
from cloud.clock import SteadyClock
from cloud.clockwatch import ClockWatch, Look, Step, steps_between
from cloud.db import EventRecord, Gateway, make_engine, make_sessionmaker
from gateway import Gateway as GatewayService

from .conftest import GATEWAY_ID, USERS, RunningCloud, gateway_config, publish, seed_cloud
from .servers import (
    DispatchProcess,
    Mosquitto,
    cloud_broker,
    cloud_env,
    throwaway_database,
    wait_until,
)

pytestmark = pytest.mark.integration

ESCALATE_AFTER_S = 10
# Escalation sweeps every 0.2 s here; the rest is a busy machine's scheduling.
ON_TIME_S = 4.0
POLL_S = 0.1  # the API, polled by the test: often enough, without loading the service


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is not installed: scripts/test.sh installs it")
    return found[0]


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    else:
        async with throwaway_database() as url:
            yield url


class FakeClock:
    """The dispatch process's wall clock, offset from the real one by the test."""

    def __init__(self, workdir: Path) -> None:
        self.file = workdir / "faketime.rc"
        self.set(0)

    def set(self, offset_s: int) -> None:
        self.file.write_text(f"{offset_s:+d}\n")

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(self.file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }


async def alarms(dispatch: DispatchProcess, token: str) -> list[dict[str, Any]]:
    import httpx

    async with httpx.AsyncClient(base_url=dispatch.url, timeout=30) as http:
        res = await http.get("/api/v1/alarms", headers={"Authorization": f"Bearer {token}"})
        res.raise_for_status()
        found: list[dict[str, Any]] = res.json()
        return found


async def sign_in(dispatch: DispatchProcess, username: str) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=dispatch.url, timeout=30) as http:
        res = await http.post(
            "/api/v1/auth/token", data={"username": username, "password": USERS[username][1]}
        )
        res.raise_for_status()
        token: str = res.json()["access_token"]
        return token


def of_kind(found: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [a for a in found if a["kind"] == kind]


async def test_clock_steps_on_the_dispatch_host_neither_delay_escalation_nor_fake_an_outage(
    database: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    settings = CloudSettings(database_url=database, **cloud_broker(mosquitto.port))
    await seed_cloud(settings)
    clock = FakeClock(tmp_path)
    env = {
        "TRYGG_DATABASE_URL": database,
        **cloud_env(mosquitto.port),
        "TRYGG_MQTT_CLIENT_ID": f"dispatch-{tmp_path.name}",
        "TRYGG_ESCALATE_UNCLAIMED_CRITICAL_S": str(ESCALATE_AFTER_S),
        "TRYGG_ESCALATION_EVERY_S": "0.2",
        "TRYGG_SUPERVISION_EVERY_S": "0.2",
        **clock.env(),
    }
    dispatch = DispatchProcess(tmp_path, env)
    engine = make_engine(database)
    sessions = make_sessionmaker(engine)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        stack.callback(dispatch.stop)
        dispatch.start()
        await dispatch.ready()
        token = await sign_in(dispatch, "anna")

        # A gateway that has just beaten (its next heartbeat is a minute away).
        config = gateway_config(mosquitto, tmp_path / "gateway.db", ack_timeout_s=2.0)
        gateway = await stack.enter_async_context(GatewayService(config))
        await wait_until(lambda: gateway.link("zigbee2mqtt").ready.is_set())

        async def gateway_online() -> bool:
            async with sessions() as session:
                row = await session.get(Gateway, GATEWAY_ID)
                return row is not None and row.online is True

        await wait_until(gateway_online, 20, POLL_S)

        pressed_at = datetime.now(UTC)
        await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "sos"}))
        await wait_until(lambda: _one(dispatch, token, "alarm_button"), 20, POLL_S)
        alarm_seen_at = datetime.now(UTC)

        # Back an hour, then forward two (an hour ahead of the real time).
        clock.set(-3600)
        await wait_until(lambda: _faults(dispatch, token, 1), 20, POLL_S)
        clock.set(+3600)
        await wait_until(lambda: _faults(dispatch, token, 2), 20, POLL_S)

        limit = ESCALATE_AFTER_S + ON_TIME_S + 10  # generous: the bounds are asserted below
        await wait_until(lambda: _escalated(dispatch, token), limit, POLL_S)
        seen_at = datetime.now(UTC)
        found = await alarms(dispatch, token)

        (press,) = of_kind(found, "alarm_button")
        received = datetime.fromisoformat(press["received_at"])
        escalated = datetime.fromisoformat(press["escalated_at"])
        # On time by the database's clock, which is the real one: each stamp lies between
        # what the test did and what it then saw, by its own clock (never stepped).
        assert (escalated - received).total_seconds() >= ESCALATE_AFTER_S
        assert (escalated - received).total_seconds() <= ESCALATE_AFTER_S + ON_TIME_S
        assert pressed_at - timedelta(seconds=1) <= received <= alarm_seen_at
        assert escalated <= seen_at

        # The gateway beat before both steps and never since: it is not offline.
        assert of_kind(found, "gateway_offline") == []
        assert await gateway_online()

        (fault,) = of_kind(found, "clock_step")
        assert (fault["priority"], fault["state"], fault["event_count"]) == ("normal", "new", 2)
        assert fault["gateway_id"] == "dispatch" and fault["title"] == "Dispatch clock jumped"
        async with sessions() as session:
            rows = await session.scalars(
                select(EventRecord)
                .where(EventRecord.kind == "clock_step", EventRecord.org_id == "org-a")
                .order_by(EventRecord.received_at)
            )
            steps = [(r.detail["clock"], r.detail["step_s"]) for r in rows]
        assert [which for which, _ in steps] == ["host", "host"]
        assert [round(by / 60) for _, by in steps] == [-60, 120]  # minutes
        # Every organisation is told: its operators rely on the same service.
        ulla = await sign_in(dispatch, "ulla")
        assert len(of_kind(await alarms(dispatch, ulla), "clock_step")) == 1

        dispatch.stop()
        assert dispatch.returncode() == 0, dispatch.text()
    assert "Traceback" not in dispatch.text()
    assert dispatch.text().count("the host clock jumped") == 2


async def _one(dispatch: DispatchProcess, token: str, kind: str) -> bool:
    return len(of_kind(await alarms(dispatch, token), kind)) == 1


async def _faults(dispatch: DispatchProcess, token: str, count: int) -> bool:
    faults = of_kind(await alarms(dispatch, token), "clock_step")
    return bool(faults) and faults[0]["event_count"] >= count


async def _escalated(dispatch: DispatchProcess, token: str) -> bool:
    (press,) = of_kind(await alarms(dispatch, token), "alarm_button")
    return bool(press["escalation"] == "unclaimed")


class SteppedWall:
    """This host's wall clock, as the test steps it (monotonic time is the real one)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def step(self, seconds: float) -> None:
        self.offset_s += seconds


AT = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("elapsed", "host", "database", "expected"),
    [
        (1.0, 1.0, 1.0, []),
        (1.0, 2.9, None, []),  # within the limit: a slow look, a slewing NTP
        (1.0, 1.0 - 3600, 1.0, [Step("host", -3600.0, AT)]),
        (1.0, 1.0 + 7200, None, [Step("host", 7200.0, AT)]),
        (1.0, 1.0, 31.0, [Step("database", 30.0, AT)]),
        (5.0, 5.0 - 60, 5.0 + 60, [Step("host", -60.0, AT), Step("database", 60.0, AT)]),
        (30.0, 30.0, 30.0, []),  # a long stall of the event loop is not a step
    ],
)
def test_a_clock_that_advances_unlike_the_monotonic_one_has_been_stepped(
    elapsed: float, host: float, database: float | None, expected: list[Step]
) -> None:
    before = Look(100.0, 1_800_000_000.0, None if database is None else 1_800_000_000.0)
    after = Look(
        100.0 + elapsed,
        before.host + host,
        None if database is None else 1_800_000_000.0 + database,
    )
    assert steps_between(before, after, 2.0, AT) == expected


def test_the_steady_clock_is_not_moved_by_a_step_of_the_wall_clock() -> None:
    hands = {"wall": 1_800_000_000.0, "monotonic": 1000.0}
    steady = SteadyClock(lambda: hands["wall"], lambda: hands["monotonic"])
    start = steady.now()
    hands["monotonic"] += 10
    hands["wall"] += 10 - 3600
    assert steady.now() - start == timedelta(seconds=10)
    hands["monotonic"] += 5
    hands["wall"] += 5 + 7200
    assert steady.now() - start == timedelta(seconds=15)


async def test_the_watch_records_each_step_in_every_organisation_once(
    cloud: RunningCloud,
) -> None:
    services = cloud.app.state.services
    wall = SteppedWall()
    watch = ClockWatch(services.sessions, services.hub, 2.0, "dispatch-1", wall)
    async with services.hub.subscribe("org-b") as stream:
        assert await watch.look() == []  # the first look only sets the baseline
        assert await watch.look() == []
        wall.step(-3600)
        (back,) = await watch.look()
        wall.step(+3600)
        (forward,) = await watch.look()
        assert await watch.look() == []
        change = await stream.get()
    assert (back.clock, round(back.by_s), round(forward.by_s)) == ("host", -3600, 3600)
    assert watch.steps == 2
    assert change is not None and change.alarm.kind == "clock_step"
    for user in ("anna", "olle"):
        async with await cloud.authed(user) as http:
            found = of_kind((await http.get("/api/v1/alarms")).json(), "clock_step")
        (fault,) = found
        assert (fault["device_id"], fault["event_count"], fault["state"]) == (
            "dispatch:dispatch-1",
            2,
            "new",
        )
