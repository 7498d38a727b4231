"""``trygg demo`` as a person runs it: starts, serves the console, raises alarms, opens
the doors of its homes on signed commands, and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import httpx
import pyotp
import pytest

from cloud.security import Role
from trygg.demo import GATEWAY_ID, LOGINS, RESIDENTS, TEAMS, lock_id

from .servers import free_port, wait_until

pytestmark = pytest.mark.e2e

START_LIMIT_S = 90


@dataclass
class RunningDemo:
    port: int
    mqtt_port: int
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    """One demo for the module's tests, started as a person starts it; stopping it cleanly
    (Ctrl-C, exit 0, no traceback) is checked when they are done."""
    tmp = tmp_path_factory.mktemp("demo")
    port, mqtt_port = free_port(), free_port()
    log = tmp / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trygg",
                "demo",
                "--port",
                str(port),
                "--mqtt-port",
                str(mqtt_port),
                "--data-dir",
                str(tmp / "data"),
                "--alarm-every",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    running = RunningDemo(port, mqtt_port, log, proc)
    try:
        deadline = time.monotonic() + START_LIMIT_S
        while "Press Ctrl-C to stop" not in running.output():
            assert proc.poll() is None, running.output()
            assert time.monotonic() < deadline, running.output()
            time.sleep(0.1)
        yield running
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, running.output()
        assert "Trygg demo stopped." in running.output()
        assert "Traceback" not in running.output()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_starts_serves_the_console_and_raises_alarms(demo: RunningDemo) -> None:
    deadline = time.monotonic() + START_LIMIT_S
    text = demo.output()
    assert f"http://127.0.0.1:{demo.port}/" in text and "operator / operator" in text
    assert f"http://127.0.0.1:{demo.port}/staff" in text
    with httpx.Client(base_url=demo.url, timeout=10) as http:
        page = http.get("/", follow_redirects=True)
        assert page.status_code == 200 and "alarm queue" in page.text
        token = http.post(
            "/api/v1/auth/token", data={"username": "operator", "password": "operator"}
        )
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        alarms: list[dict[str, object]] = []
        while not alarms:
            assert time.monotonic() < deadline, demo.output()
            time.sleep(0.5)
            alarms = http.get("/api/v1/alarms", headers=headers).json()
        assert alarms[0]["gateway_id"] == "gw-demo-1"
        # A real small centre: the alarm's resident, address and contacts are there.
        detail = http.get(f"/api/v1/alarms/{alarms[0]['id']}", headers=headers).json()
        assert detail["resident"]["name"] in {r["name"] for r in RESIDENTS}
        assert detail["home"]["address"].endswith("Malmö")
        assert detail["resident"]["contacts"]
        # A printed login for every role, each of which signs in.
        for username, role, _team, _what in LOGINS:
            assert f"{username} / {username}" in text
            signed = http.post(
                "/api/v1/auth/token", data={"username": username, "password": username}
            )
            assert signed.status_code == 200, (username, signed.text)
            me = http.get(
                "/api/v1/me",
                headers={"Authorization": f"Bearer {signed.json()['access_token']}"},
            )
            assert me.json()["role"] == role.value
        assert {role for _u, role, _t, _w in LOGINS} == set(Role)

        # The GPS pendant's wearer walks out of the safe zone: on the map, with the zone.
        def wandered() -> list[dict[str, Any]]:
            found = http.get("/api/v1/alarms", headers=headers).json()
            return [a for a in found if a["kind"] == "geofence_exit"]

        while not wandered():
            assert time.monotonic() < deadline, demo.output()
            time.sleep(0.5)
        away = wandered()[0]
        seen = http.get(f"/api/v1/alarms/{away['id']}", headers=headers).json()
        assert seen["positions"] and seen["zone"]["radius_m"] == 250.0
        assert seen["resident"]["name"] == RESIDENTS[1]["name"]
        assert seen["home"]["latitude"] is not None
        teams = http.get("/api/v1/teams", headers=headers).json()
        assert {t["name"] for t in teams} == set(TEAMS)


# -- doors ---------------------------------------------------------------------------------


class LockWatch:
    """What the simulated locks publish on the demo's broker, as Zigbee2MQTT would."""

    def __init__(self) -> None:
        self.states: dict[str, list[str]] = {}

    def seen(self, lock: str, state: str) -> bool:
        return state in self.states.get(lock, [])


@contextlib.asynccontextmanager
async def watch_locks(demo: RunningDemo, *homes: str) -> AsyncIterator[LockWatch]:
    watch = LockWatch()
    async with aiomqtt.Client("127.0.0.1", demo.mqtt_port, identifier="test-lock-watch") as client:
        for home in homes:
            await client.subscribe(f"zigbee2mqtt/{home}/front_door_lock", qos=1)

        async def listen() -> None:
            async for message in client.messages:
                home = str(message.topic).split("/")[1]
                assert isinstance(message.payload, bytes)
                body = json.loads(message.payload)
                state = body.get("lock_state") if isinstance(body, dict) else None
                if isinstance(state, str):
                    watch.states.setdefault(lock_id(home), []).append(state)

        task = asyncio.create_task(listen())
        try:
            yield watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def signed_in(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    token = await http.post("/api/v1/auth/token", data={"username": username, "password": username})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def command_final(
    http: httpx.AsyncClient, headers: dict[str, str], command_id: str
) -> dict[str, Any]:
    final: dict[str, Any] = {}

    async def settled() -> bool:
        nonlocal final
        final = (await http.get(f"/api/v1/commands/{command_id}", headers=headers)).json()
        return final["state"] in {"done", "failed", "refused", "expired"}

    await wait_until(settled, 20, interval_s=0.1)
    return final


async def test_the_demo_gateway_carries_out_a_signed_unlock_of_a_homes_lock(
    demo: RunningDemo,
) -> None:
    async with (
        httpx.AsyncClient(base_url=demo.url, timeout=10) as http,
        watch_locks(demo, "home-1", "home-2") as watch,
    ):
        technician = await signed_in(http, "technician")

        async def locks() -> dict[str, dict[str, Any]]:
            found = (await http.get("/api/v1/devices", headers=technician)).json()
            return {d["id"]: d for d in found if d["type"] == "digital_lock"}

        async def both_known() -> bool:
            return len(await locks()) == 2

        # Both homes' locks are in the gateway's inventory, each of its home.
        await wait_until(both_known, 15)
        assert {d["home_id"] for d in (await locks()).values()} == {"home-1", "home-2"}

        for home in ("home-1", "home-2"):
            lock = lock_id(home)
            for action, state in (("unlock", "unlocked"), ("lock", "locked")):
                res = await http.post(
                    f"/api/v1/gateways/{GATEWAY_ID}/commands",
                    headers=technician,
                    json={"device_id": lock, "action": action},
                )
                assert res.status_code == 202, res.text
                final = await command_final(http, technician, res.json()["id"])
                # The gateway trusts the service's key: done, not refused commands_disabled.
                assert (final["state"], final["reason"]) == ("done", None), final
                await wait_until(lambda lock=lock, state=state: watch.seen(lock, state), 10)
                watch.states.clear()

        # A lock the demo does not have is a clear 404, not a door somewhere else.
        res = await http.post(
            f"/api/v1/gateways/{GATEWAY_ID}/commands",
            headers=technician,
            json={"device_id": "home-9-front_door_lock", "action": "unlock"},
        )
        assert res.status_code == 404, res.text


# -- staff on their phones -------------------------------------------------------------------


async def with_second_factor(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    """A staff member's first sign-in: set up the second factor, confirm with a code."""
    headers = await signed_in(http, username)
    enrolled = await http.post("/api/v1/auth/second-factor", headers=headers)
    assert enrolled.status_code == 200, enrolled.text
    code = pyotp.TOTP(enrolled.json()["secret"]).now()
    confirmed = await http.post(
        "/api/v1/auth/second-factor/confirm", headers=headers, json={"code": code}
    )
    assert confirmed.status_code == 200, confirmed.text
    return headers


async def my_visits(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Today's visits, yesterday's and tomorrow's: the demo plans them round the time it
    starts, so one started just after midnight began its visit in progress the day before,
    and one started late in the evening has its later visits the next day."""
    today = datetime.now(UTC).astimezone(ZoneInfo("Europe/Stockholm")).date()
    found: dict[int, dict[str, Any]] = {}
    for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
        res = await http.get("/api/v1/my/visits", headers=headers, params={"day": str(day)})
        assert res.status_code == 200, res.text
        found |= {v["id"]: v for v in res.json()}
    return sorted(found.values(), key=lambda v: str(v["starts_at"]))


async def door(
    http: httpx.AsyncClient, headers: dict[str, str], lock: str, action: str, **why: int
) -> httpx.Response:
    return await http.post(f"/api/v1/my/locks/{lock}/{action}", headers=headers, json=why)


async def test_staff_open_the_door_of_their_visit_in_progress_and_of_an_alarm_sent_to_them(
    demo: RunningDemo,
) -> None:
    async with (
        httpx.AsyncClient(base_url=demo.url, timeout=15) as http,
        watch_locks(demo, "home-1", "home-2") as watch,
    ):
        staff = await with_second_factor(http, "staff")
        visits = await my_visits(http, staff)
        now = [v for v in visits if v["open_now"]]
        assert [(v["home_id"], v["staff"]) for v in now] == [("home-1", "staff")], visits
        visit = now[0]
        assert visit["address"].startswith("Storgatan 12")
        assert [lock["id"] for lock in visit["locks"]] == [lock_id("home-1")]
        card = (await http.get(f"/api/v1/my/visits/{visit['id']}", headers=staff)).json()
        assert card["resident"]["name"] == RESIDENTS[0]["name"]
        assert card["home"]["key_safe"] and card["home"]["notes"]

        # "Open door" on the visit in progress: done, and the lock says unlocked.
        opened = await door(http, staff, lock_id("home-1"), "unlock", visit_id=visit["id"])
        assert opened.status_code == 200, opened.text
        assert (opened.json()["state"], opened.json()["reason"]) == ("done", None)
        await wait_until(lambda: watch.seen(lock_id("home-1"), "unlocked"), 10)
        closed = await door(http, staff, lock_id("home-1"), "lock", visit_id=visit["id"])
        assert closed.json()["state"] == "done", closed.text
        await wait_until(lambda: watch.seen(lock_id("home-1"), "locked"), 10)

        # The rest of the day's visits keep their doors shut, each saying why.
        later = next(v for v in visits if v["starts_at"] > visit["ends_at"])
        earlier = next(v for v in visits if v["ends_at"] < visit["starts_at"])
        lock_of = {"home-1": lock_id("home-1"), "home-2": lock_id("home-2")}
        for other, reason in ((later, "visit_not_begun"), (earlier, "visit_ended")):
            refused = await door(
                http, staff, lock_of[other["home_id"]], "unlock", visit_id=other["id"]
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["detail"]["reason"] == reason
        colleague = await with_second_factor(http, "staff2")
        theirs = await door(http, colleague, lock_id("home-1"), "unlock", visit_id=visit["id"])
        assert theirs.status_code == 403 and theirs.json()["detail"]["reason"] == "not_your_visit"

        # An operator sends staff to an alarm at a home with a lock; staff open its door.
        operator = await signed_in(http, "operator")

        async def open_alarm_at_a_locked_home() -> dict[str, Any] | None:
            alarms = (await http.get("/api/v1/alarms", headers=operator)).json()
            found = [
                a
                for a in alarms
                if a["state"] == "new" and a["kind"] == "alarm_button" and a["home_id"] in lock_of
            ]
            return found[0] if found else None

        await wait_until(open_alarm_at_a_locked_home, 30, interval_s=0.2)
        alarm = await open_alarm_at_a_locked_home()
        assert alarm is not None
        acknowledged = await http.post(
            f"/api/v1/alarms/{alarm['id']}/acknowledge", headers=operator
        )
        assert acknowledged.status_code == 200, acknowledged.text
        assigned = await http.post(
            f"/api/v1/alarms/{alarm['id']}/assign", headers=operator, json={"staff": "staff"}
        )
        assert assigned.status_code == 200, assigned.text
        mine = (await http.get("/api/v1/my/alarms", headers=staff)).json()
        assert alarm["id"] in {a["id"] for a in mine}
        accepted = await http.post(f"/api/v1/my/alarms/{alarm['id']}/accept", headers=staff)
        assert accepted.status_code == 200, accepted.text
        lock = lock_of[alarm["home_id"]]
        watch.states.clear()
        opened = await door(http, staff, lock, "unlock", alarm_id=alarm["id"])
        assert opened.json()["state"] == "done", opened.text
        await wait_until(lambda: watch.seen(lock, "unlocked"), 10)
        for step, body in (("on-site", None), ("resolve", {"outcome": "help_given"})):
            res = await http.post(
                f"/api/v1/my/alarms/{alarm['id']}/{step}", headers=staff, json=body
            )
            assert res.status_code == 200, res.text

        # The night patrol may take its team's alarms (home 2 is on its round).
        night = await with_second_factor(http, "night")

        async def takeable() -> bool:
            found = (await http.get("/api/v1/my/alarms", headers=night)).json()
            return any(a["takeable"] and a["home_id"] == "home-2" for a in found)

        await wait_until(takeable, 30, interval_s=0.2)


def test_demo_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "trygg",
                "demo",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert result.returncode != 0
    assert f"port {port}" in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args",
    [["--help"], ["gateway", "--help"], ["cloud", "--help"], ["sim", "--help"], ["demo", "--help"]],
)
def test_help_is_clear(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trygg", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
