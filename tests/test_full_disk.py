"""A real full disk under the gateway's store: a tmpfs the test mounts (it runs as root),
filled by another writer while alarms arrive. Nothing accepted is lost, nothing is acked
to the broker while it cannot be stored, and ``/healthz`` says why."""

from __future__ import annotations

import asyncio
import errno
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import aiomqtt
import pytest
from sqlalchemy import func, select

from cloud.db import Alarm, EventRecord
from gateway import Gateway
from gateway.store import Store

from .conftest import RunningCloud, gateway_config, make_event
from .servers import Mosquitto, mqtt_client, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

DISK_MB = 8
RESERVE_MB = 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0700", "tmpfs", str(mount)],
        check=True,
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> int:
    """Write until the filesystem refuses (as a log or another program would)."""
    written = 0
    chunk = b"\0" * 65536
    with path.open("ab", buffering=0) as out:
        while True:
            try:
                written += out.write(chunk) or 0
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        # What is left is smaller than a chunk: take it too.
        for size in (4096, 512, 1):
            while True:
                try:
                    written += out.write(b"\0" * size) or 0
                except OSError:
                    break
    return written


async def press(client: aiomqtt.Client, n: int) -> None:
    payload = {"action": "single", "linkquality": n}  # every press a distinct message
    await client.publish(f"zigbee2mqtt/flat-{n % 10}/pendant", json.dumps(payload), qos=1)


async def healthz(port: int) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return response.status, await response.json()


async def presses(cloud: RunningCloud) -> tuple[int, int]:
    """(press events stored, press events counted into alarms) in the dispatch database."""
    async with cloud.app.state.services.sessions() as session:
        events = await session.scalar(
            select(func.count()).select_from(EventRecord).where(EventRecord.kind == "alarm_button")
        )
        counted = await session.scalar(
            select(func.coalesce(func.sum(Alarm.event_count), 0)).where(
                Alarm.kind == "alarm_button"
            )
        )
    return int(events or 0), int(counted or 0)


async def arrived(cloud: RunningCloud, n: int) -> bool:
    return (await presses(cloud))[0] >= n


async def alarms_of(cloud: RunningCloud, kind: str) -> list[Alarm]:
    async with cloud.app.state.services.sessions() as session:
        rows = await session.execute(select(Alarm).where(Alarm.kind == kind))
        return list(rows.scalars())


PENDANTS = [
    {"id": f"pendant-{i}", "type": "alarm_button", "address": f"flat-{i}/pendant", "home": "h"}
    for i in range(10)
] + [{"id": "smoke-1", "type": "smoke", "address": "kitchen_smoke", "home": "h"}]


async def test_a_full_disk_loses_no_alarm_and_acks_none_it_could_not_store(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, small_disk: Path
) -> None:
    extra: dict[str, object] = {
        "store": {"path": small_disk / "gw.db", "reserve_mb": RESERVE_MB},
        "api": {"host": "127.0.0.1", "port": 0},
        "devices": PENDANTS,
    }
    config = gateway_config(mosquitto, small_disk / "gw.db", extra=extra, ack_timeout_s=2.0)
    async with (
        Gateway(config) as gw,
        mqtt_client(mosquitto.port) as devices,
    ):
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        assert gw.api_port is not None
        reserve = small_disk / "gw.db.reserve"
        assert reserve.stat().st_size == RESERVE_MB * 2**20
        for n in range(5):
            await press(devices, n)
        await wait_until(lambda: arrived(sqlite_cloud, 5), 20)

        # Another writer fills the disk: the alarm reserve gives the next alarms room.
        await asyncio.to_thread(fill, small_disk / "filler-1")
        for n in range(5, 10):
            await press(devices, n)
        await wait_until(lambda: arrived(sqlite_cloud, 10), 20)
        assert not reserve.exists() and gw.store.reserve_released
        status, body = await healthz(gw.api_port)
        assert status == 503 and any("alarm reserve" in p for p in body["problems"])  # type: ignore[attr-defined]

        # It takes the reserve's space too: now nothing can be stored.
        await asyncio.to_thread(fill, small_disk / "filler-2")
        for n in range(10, 15):
            await press(devices, n)
        # A change of state too: it must still be a change when the broker resends it.
        await devices.publish("zigbee2mqtt/kitchen_smoke", json.dumps({"smoke": True}), qos=1)
        await wait_until(lambda: gw.store.fault is not None and gw.store.fault.failures >= 2, 20)
        status, body = await healthz(gw.api_port)
        problems = " ".join(body["problems"])  # type: ignore[arg-type]
        assert status == 503 and "events cannot be stored" in problems
        assert "database or disk is full" in problems
        assert (await presses(sqlite_cloud))[0] == 10  # nothing of the last five went out

        # The disk has room again: the broker still had every press (none was acked), and
        # the dispatch service hears what happened.
        (small_disk / "filler-1").unlink()
        (small_disk / "filler-2").unlink()
        await wait_until(lambda: arrived(sqlite_cloud, 15), 30)
        await wait_until(lambda: alarms_of(sqlite_cloud, "store_fault"), 20)
        await wait_until(lambda: alarms_of(sqlite_cloud, "smoke"), 20)
        await wait_until(lambda: not gw.store.reserve_released, 20)
        status, body = await healthz(gw.api_port)
        assert status == 200, body

    faults = await alarms_of(sqlite_cloud, "store_fault")
    assert len(faults) == 1 and faults[0].device_id == config.gateway.id
    assert [a.event_count for a in await alarms_of(sqlite_cloud, "smoke")] == [1]
    # Every press exactly once: 15 events, each counted into its alarm once.
    assert await presses(sqlite_cloud) == (15, 15)


async def test_readings_never_take_the_alarm_reserve(small_disk: Path) -> None:
    store = Store(small_disk / "gw.db", reserve_bytes=RESERVE_MB * 2**20)
    await store.open()
    try:
        await asyncio.to_thread(fill, small_disk / "filler")
        rows = [("dev-1", "temperature_c", 21.5, i) for i in range(20_000)]
        await store.add_readings(rows)  # no room: dropped, counted, no error
        assert store.readings_dropped["disk_full"] == len(rows)
        assert (small_disk / "gw.db.reserve").exists()  # readings did not get the reserve
        assert await store.put(make_event("full", 1))  # the alarm did
        assert store.reserve_released and store.fault is None
        await store.add_readings(rows[:10])  # refused while the reserve is in use
        assert store.readings_dropped["disk_full"] == len(rows) + 10
        (small_disk / "filler").unlink()
        await store.add_readings(rows[:10])  # room again: the reserve first, then readings
        assert not store.reserve_released and await store.readings_count() == 10
        assert [p.event.id for p in await store.pending(10)] == [make_event("full", 1).id]
    finally:
        await store.close()


async def test_a_native_alarm_on_a_full_disk_is_answered_send_again_and_kept_once_after(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, small_disk: Path
) -> None:
    """A watch's SOS over the native API while nothing can be stored: 503 with
    Retry-After (never a 202 for an alarm that is not kept); the same SOS sent again once
    the disk has room is kept, and reaches the alarm centre once."""
    import hashlib

    import httpx

    token = "watch-on-a-full-disk-credential-0123456789"
    watch = {
        "id": "watch-1",
        "transport": "native",
        "type": "gps_pendant",
        "home": "h",
        "credential_sha256": hashlib.sha256(token.encode()).hexdigest(),
    }
    extra: dict[str, object] = {
        "store": {"path": small_disk / "gw.db", "reserve_mb": RESERVE_MB},
        "api": {"host": "127.0.0.1", "port": 0},
        "native": {"mqtt": False},
        "devices": [*PENDANTS, watch],
    }
    config = gateway_config(mosquitto, small_disk / "gw.db", extra=extra, ack_timeout_s=2.0)
    sos = {"id": "sos-1", "alarm": "sos"}
    async with Gateway(config) as gw:
        await asyncio.wait_for(gw.uplink.connected.wait(), 10)
        url = f"http://127.0.0.1:{gw.api_port}/dev/v1/watch-1/alarm"
        headers = {"Authorization": f"Bearer {token}"}
        await asyncio.to_thread(fill, small_disk / "filler-1")
        async with httpx.AsyncClient(timeout=30) as http:
            # The alarm reserve takes the first one; then it is gone too.
            first = await http.post(url, json={"id": "sos-0", "alarm": "sos"}, headers=headers)
            assert first.status_code == 202 and gw.store.reserve_released
            await asyncio.to_thread(fill, small_disk / "filler-2")
            refused = await http.post(url, json=sos, headers=headers)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1" and "send it again" in refused.text
            (small_disk / "filler-1").unlink()
            (small_disk / "filler-2").unlink()

            async def kept() -> bool:
                return (await http.post(url, json=sos, headers=headers)).status_code == 202

            await wait_until(kept, 30, interval_s=0.2)
            assert (await http.post(url, json=sos, headers=headers)).status_code == 202
        await wait_until(lambda: _outbox_empty(gw), 20)
    # Two presses, each once (one alarm: the second joined the first).
    assert await presses(sqlite_cloud) == (2, 2)
    (alarm,) = await alarms_of(sqlite_cloud, "alarm_button")
    assert alarm.device_id == "watch-1"


async def _outbox_empty(gw: Gateway) -> bool:
    return sum((await gw.store.depth()).values()) == 0
