"""Gateway supervision in the dispatch service: silence past two heartbeat intervals, or a
last will, is a ``gateway_offline`` technical alarm; the next heartbeat resolves it. Timing
with a controllable clock on SQLite and PostgreSQL; the last will end to end with a real
gateway process killed with SIGKILL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.db import Gateway
from cloud.supervision import GatewaySupervisor
from devices.wire import Heartbeat

from .conftest import GATEWAY_ID, RunningCloud
from .servers import Mosquitto, one_broker_gateway, wait_until

pytestmark = pytest.mark.integration


class Clock:
    # From the real time on: the service's own supervisor sweeps too, with the real
    # clock, and must see the test's heartbeats as recent, not as days old.
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    async def __call__(self, session: AsyncSession) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def supervisor(cloud: RunningCloud, clock: Clock) -> GatewaySupervisor:
    services = cloud.app.state.services
    return GatewaySupervisor(services.sessions, services.hub, clock)


async def beat(sup: GatewaySupervisor, cloud: RunningCloud, **fields: Any) -> None:
    heartbeat = Heartbeat(gateway_id=GATEWAY_ID, **{"state": "online", **fields})
    async with cloud.app.state.services.sessions() as session:
        gateway = await session.get(Gateway, GATEWAY_ID)
        assert gateway is not None
        changes = await sup.heartbeat(session, gateway, heartbeat)
        await session.commit()
    sup.tell(changes)


async def offline_alarms(cloud: RunningCloud) -> list[dict[str, Any]]:
    async with await cloud.authed("anna") as http:
        found = (await http.get("/api/v1/alarms")).json()
    return [a for a in found if a["kind"] == "gateway_offline"]


async def test_silence_past_two_heartbeat_intervals_is_one_alarm_and_a_heartbeat_resolves_it(
    cloud: RunningCloud,
) -> None:
    clock = Clock()
    sup, replica = supervisor(cloud, clock), supervisor(cloud, clock)
    await beat(sup, cloud, interval_s=60)
    clock.advance(119)
    assert await sup.sweep() == []
    clock.advance(2)  # 121 s: two intervals and a second
    # Two replicas sweep at the same moment: one outage, one alarm.
    found = await asyncio.gather(sup.sweep(), replica.sweep())
    assert sorted(found[0] + found[1]) == [GATEWAY_ID]
    clock.advance(30)
    assert await sup.sweep() == [] and await replica.sweep() == []
    (alarm,) = await offline_alarms(cloud)
    assert (alarm["state"], alarm["priority"], alarm["device_id"]) == ("new", "normal", GATEWAY_ID)
    await beat(sup, cloud, interval_s=60)
    (alarm,) = await offline_alarms(cloud)
    assert (alarm["state"], alarm["outcome"], alarm["resolved_by"]) == (
        "resolved",
        "restored",
        "system",
    )
    # A second outage is a new alarm, not the old one reopened.
    clock.advance(200)
    assert await sup.sweep() == [GATEWAY_ID]
    assert sorted(a["state"] for a in await offline_alarms(cloud)) == ["new", "resolved"]


async def test_a_gateway_with_a_longer_interval_is_given_two_of_its_own(
    sqlite_cloud: RunningCloud,
) -> None:
    clock = Clock()
    sup = supervisor(sqlite_cloud, clock)
    await beat(sup, sqlite_cloud, interval_s=300)
    clock.advance(599)
    assert await sup.sweep() == []
    clock.advance(2)
    assert await sup.sweep() == [GATEWAY_ID]


async def test_a_last_will_is_an_alarm_at_once_and_only_once(sqlite_cloud: RunningCloud) -> None:
    clock = Clock()
    sup = supervisor(sqlite_cloud, clock)
    await beat(sup, sqlite_cloud)
    await beat(sup, sqlite_cloud, state="offline")
    await beat(sup, sqlite_cloud, state="offline")  # the broker may deliver it twice
    clock.advance(500)
    assert await sup.sweep() == []  # already known to be away
    (alarm,) = await offline_alarms(sqlite_cloud)
    assert alarm["state"] == "new"
    await beat(sup, sqlite_cloud)
    (alarm,) = await offline_alarms(sqlite_cloud)
    assert alarm["state"] == "resolved"


async def test_a_killed_gateways_last_will_raises_the_alarm_and_its_return_resolves_it(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    gateway = one_broker_gateway(tmp_path, mosquitto.port, GATEWAY_ID, [])
    gateway.start()
    try:

        async def online() -> bool:
            async with sqlite_cloud.app.state.services.sessions() as session:
                row = await session.get(Gateway, GATEWAY_ID)
                return row is not None and row.online is True

        await wait_until(online, limit_s=30)
        gateway.kill()  # SIGKILL: no goodbye; the broker publishes its last will
        await wait_until(lambda: _states(sqlite_cloud, ["new"]), limit_s=10)
        gateway.start()
        await wait_until(lambda: _states(sqlite_cloud, ["resolved"]), limit_s=30)
    finally:
        gateway.terminate()


async def _states(cloud: RunningCloud, states: list[str]) -> bool:
    return [a["state"] for a in await offline_alarms(cloud)] == states
