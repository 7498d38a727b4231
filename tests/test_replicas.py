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
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from cloud import CloudSettings
from cloud.db import Alarm, EventRecord
from cloud.hub import AlarmHub
from cloud.relay import RelaySeal
from cloud.schemas import AlarmChange, RelayedChange
from devices.wire import DISPATCH_CHANGES_TOPIC, events_topic
from gateway import Gateway

from .conftest import (
    GATEWAY_ID,
    RunningCloud,
    envelope,
    gateway_config,
    publish,
    publish_inventory,
    run_cloud,
)
from .servers import (
    Mosquitto,
    cloud_broker,
    cloud_env,
    free_port,
    mqtt_client,
    throwaway_database,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PENDANTS = [
    {"id": f"pendant-{i}", "type": "alarm_button", "address": f"flat-{i}/pendant", "home": f"h-{i}"}
    for i in range(10)
]


@contextlib.asynccontextmanager
async def replicas(mosquitto: Mosquitto) -> AsyncIterator[tuple[str, RunningCloud, RunningCloud]]:
    async with throwaway_database() as url:

        def settings(name: str) -> CloudSettings:
            return CloudSettings(
                database_url=url, **cloud_broker(mosquitto.port), mqtt_client_id=name
            )

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
    async with mqtt_client(mosquitto.port) as client:
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
        settings = CloudSettings(
            database_url=url, **cloud_broker(mosquitto.port), mqtt_client_id="b"
        )
        async with run_cloud(settings) as b:
            log = tmp_path / "replica-a.log"
            env = {
                **os.environ,
                "TRYGG_DATABASE_URL": url,
                **cloud_env(mosquitto.port),
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


async def test_a_forged_relay_message_never_reaches_the_other_replicas_consoles(
    mosquitto: Mosquitto,
) -> None:
    """The broker's ACL keeps others off the relay; a replica also checks the seal."""
    async with replicas(mosquitto) as (_url, a, b):
        await publish_inventory(a, ["smoke-9"])
        smoke = envelope("relay", 1, kind="smoke", device="smoke-9")
        await publish(mosquitto.port, events_topic(GATEWAY_ID), smoke.model_dump_json())
        async with await b.authed("anna") as http:
            await wait_until(lambda: _open_alarms(http, 1), 20)
            (alarm,) = (await http.get("/api/v1/alarms")).json()
        resolved = AlarmChange.model_validate(
            {"type": "updated", "alarm": alarm | {"state": "resolved", "outcome": "false_alarm"}}
        )
        forged = RelayedChange(replica="forger", org_id="org-a", change=resolved)
        hub_b: AlarmHub = b.app.state.services.hub
        async with hub_b.subscribe("org-a") as stream_b:
            wrong_key = RelaySeal("a-secret-that-is-not-the-deployments-000000")
            old = RelaySeal(b.settings.secret_key, clock=lambda: time.time() - 3600)
            genuine = RelaySeal(b.settings.secret_key)
            sealed = genuine.seal(forged)
            for payload in (
                forged.model_dump_json(),  # unsealed
                wrong_key.seal(forged),
                old.seal(forged),  # sealed by the key, an hour ago
                sealed.replace('"sealed_at":', '"sealed_at":1'),  # its time changed
            ):
                await publish(mosquitto.port, DISPATCH_CHANGES_TOPIC, payload)
            # A real change after them, through the other replica: once it is seen, the
            # forgeries before it on the same subscription have been dealt with.
            async with await a.authed("anna") as http:
                claim = await http.post(f"/api/v1/alarms/{alarm['id']}/claim")
                assert claim.status_code == 200

            async def next_change() -> AlarmChange | None:
                # The alarm's own "created" may come first, relayed from the other replica.
                while (change := await stream_b.get()) is not None:
                    if change.alarm.state != "new":
                        return change
                return None

            seen = await asyncio.wait_for(next_change(), 10)
        assert seen is not None and seen.alarm.state == "claimed"
        assert b.ingest.dropped == {"relay_forged": 3, "relay_stale": 1}
        async with await b.authed("anna") as http:
            assert await _open_alarms(http, 1)


async def _open_alarms(http: httpx.AsyncClient, n: int) -> bool:
    found = (await http.get("/api/v1/alarms", params={"state": ["new", "claimed"]})).json()
    return len(found) == n


def test_a_sealed_change_opens_once_within_its_window() -> None:
    now = [1_000_000.0]
    seal = RelaySeal("the-deployments-secret-key-0123456789abcdef", clock=lambda: now[0])
    change = AlarmChange.model_validate({"type": "escalated", "alarm": ALARM})
    body = RelayedChange(replica="a", org_id="org-a", change=change)
    sealed = seal.seal(body).encode()
    assert seal.open(sealed) == body
    assert seal.open(sealed) == "relay_replayed"
    now[0] += 31
    assert seal.open(seal.seal(body).encode()) == body
    assert seal.open(sealed) == "relay_stale"
    assert seal.open(b"garbage") == "relay_forged"
    assert seal.open(sealed.replace(b'"replica\\":\\"a', b'"replica\\":\\"b')) == "relay_forged"


ALARM: dict[str, object] = {
    "id": 1,
    "kind": "smoke",
    "priority": "critical",
    "state": "new",
    "gateway_id": GATEWAY_ID,
    "device_id": "smoke-9",
    "device_type": "smoke",
    "home_id": "home-1",
    "resident_id": None,
    "event_count": 1,
    "occurred_at": "2026-12-02T18:00:00Z",
    "received_at": "2026-12-02T18:00:00Z",
    "updated_at": "2026-12-02T18:00:00Z",
    "restored_at": None,
    "acknowledged_by": None,
    "acknowledged_at": None,
    "claimed_by": None,
    "claimed_at": None,
    "assigned_to": None,
    "assigned_at": None,
    "on_site_at": None,
    "resolved_by": None,
    "resolved_at": None,
    "outcome": None,
    "resolution_note": None,
    "last_event_at": None,
    "latitude": None,
    "longitude": None,
    "escalated_at": None,
    "escalation": None,
    "escalation_level": 0,
}
