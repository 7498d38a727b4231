"""Two dispatch replicas on one PostgreSQL and one mosquitto: they share the gateways'
traffic through an MQTT shared subscription, every event is stored once and every alarm
created once, each replica's consoles see the other's changes, and killing one replica
with SIGKILL in the middle of a stream loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from sqlalchemy import func, select

from cloud import CloudSettings
from cloud.db import Alarm, EventRecord
from cloud.hub import AlarmHub
from cloud.schemas import AlarmChange
from gateway import Gateway

from .conftest import RunningCloud, gateway_config, run_cloud
from .servers import Mosquitto, free_port, throwaway_database, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PENDANTS = [
    {"id": f"pendant-{i}", "type": "alarm_button", "address": f"flat-{i}/pendant", "home": f"h-{i}"}
    for i in range(10)
]


@contextlib.asynccontextmanager
async def replicas(mosquitto: Mosquitto) -> AsyncIterator[tuple[str, RunningCloud, RunningCloud]]:
    async with throwaway_database() as url:

        def settings(name: str) -> CloudSettings:
            return CloudSettings(database_url=url, mqtt_port=mosquitto.port, mqtt_client_id=name)

        async with (
            run_cloud(settings("replica-a")) as a,
            run_cloud(settings("replica-b")) as b,
        ):
            yield url, a, b


@contextlib.asynccontextmanager
async def gateway_for(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Gateway]:
    config = gateway_config(
        mosquitto, tmp_path / "gw.db", extra={"devices": PENDANTS}, ack_timeout_s=2.0
    )
    async with Gateway(config) as gw:
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        await asyncio.wait_for(gw.uplink.connected.wait(), 10)
        yield gw


async def presses(mosquitto: Mosquitto, count: int, pause_s: float = 0.0) -> None:
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        for n in range(count):
            press = {"action": "single", "linkquality": n % 250, "battery": n // 250}
            await client.publish(f"zigbee2mqtt/flat-{n % 10}/pendant", json.dumps(press), qos=1)
            if pause_s:
                await asyncio.sleep(pause_s)


async def stored(cloud: RunningCloud) -> tuple[int, int, int]:
    """(events, alarms, events counted into alarms) of the pendants."""
    async with cloud.app.state.services.sessions() as session:
        events = await session.scalar(
            select(func.count()).select_from(EventRecord).where(EventRecord.kind == "alarm_button")
        )
        alarms, counted = (
            await session.execute(
                select(func.count(), func.coalesce(func.sum(Alarm.event_count), 0)).where(
                    Alarm.kind == "alarm_button"
                )
            )
        ).one()
    return int(events or 0), int(alarms), int(counted)


async def test_two_replicas_share_the_traffic_and_store_each_event_and_alarm_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with replicas(mosquitto) as (_url, a, b), gateway_for(mosquitto, tmp_path) as gw:
        await presses(mosquitto, 200)
        await wait_until(lambda: gw.counters.accepted["event"] == 200, 20)
        await wait_until(lambda: _all_stored(a, 200), 30)
        assert await stored(a) == (200, 10, 200)  # one open alarm per pendant, all counted
        # Both replicas took part: the shared subscription spread the events.
        assert a.ingest.committed > 0 and b.ingest.committed > 0
        assert a.ingest.committed + b.ingest.committed >= 200
        # A change made on one replica reaches the consoles of the other.
        hub_b: AlarmHub = b.app.state.services.hub
        async with hub_b.subscribe("org-a") as stream_b:
            async with await a.authed("anna") as http:
                (first, *_rest) = (await http.get("/api/v1/alarms")).json()
                assert (await http.post(f"/api/v1/alarms/{first['id']}/claim")).status_code == 200

            async def claimed_seen() -> AlarmChange | None:
                while (change := await stream_b.get()) is not None:
                    if change.alarm.id == first["id"] and change.alarm.claimed_by:
                        return change
                return None

            change = await asyncio.wait_for(claimed_seen(), 5)
        assert change is not None and change.type == "updated"
        assert change.alarm.claimed_by == "anna" and change.alarm.state == "claimed"


async def _all_stored(cloud: RunningCloud, n: int) -> bool:
    return (await stored(cloud))[0] >= n


async def test_killing_a_replica_mid_stream_loses_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with throwaway_database() as url:
        settings = CloudSettings(database_url=url, mqtt_port=mosquitto.port, mqtt_client_id="b")
        async with run_cloud(settings) as b:
            log = tmp_path / "replica-a.log"
            env = {
                **os.environ,
                "TRYGG_DATABASE_URL": url,
                "TRYGG_MQTT_PORT": str(mosquitto.port),
                "TRYGG_MQTT_CLIENT_ID": "a",
                "PYTHONUNBUFFERED": "1",
            }
            command = [sys.executable, "-m", "trygg", "cloud", "run", f"--port={free_port()}"]
            with log.open("wb") as out:
                a = await asyncio.create_subprocess_exec(
                    *command, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            try:
                await wait_until(lambda: "ingest subscribed" in log.read_text(), 30)
                async with gateway_for(mosquitto, tmp_path) as gw:
                    sending = asyncio.create_task(presses(mosquitto, 300, pause_s=0.005))
                    # Both replicas are committing: some events stored are not B's.
                    await wait_until(lambda: _stored_by_another(b), 20)
                    a.kill()  # SIGKILL: what it had taken and not acked is the gateway's to resend
                    await a.wait()
                    await sending
                    await wait_until(lambda: gw.counters.accepted["event"] == 300, 20)
                    await wait_until(lambda: _all_stored(b, 300), 60)
                    await wait_until(lambda: _outbox_empty(gw), 30)
            finally:
                if a.returncode is None:
                    a.kill()
                    await a.wait()
            assert await stored(b) == (300, 10, 300)
            assert "ingest subscribed" in log.read_text()


async def _stored_by_another(cloud: RunningCloud) -> bool:
    events = (await stored(cloud))[0]
    return events >= 50 and events > cloud.ingest.committed


async def _outbox_empty(gateway: Gateway) -> bool:
    return sum((await gateway.store.depth()).values()) == 0
