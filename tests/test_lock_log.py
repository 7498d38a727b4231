"""The dispatch service's lock log, from the outside: a command to a lock and each step
its gateway reports, and what the lock reports of itself, reach the lock's log and set
its state; ``GET /api/v1/locks/{id}/log`` pages it and checks its chain, names the entry
altered behind its back, and refuses what is not a lock of the caller's organisation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from cloud import CloudSettings
from cloud.commandkeys import new_key_file
from cloud.db import CommandRecord, Device
from devices import Priority
from devices.wire import CommandOutcome, CommandResult, events_topic, results_topic

from .conftest import (
    GATEWAY_ID,
    RunningCloud,
    envelope,
    inventory_device,
    publish,
    publish_inventory,
    run_cloud,
)
from .servers import Mosquitto, cloud_broker, throwaway_database, wait_until

pytestmark = [pytest.mark.integration]

DEVICES = [
    inventory_device("lock-1", "digital_lock", "home-12", actions=["unlock", "lock"]),
    inventory_device("door-1", "door_contact", "home-12"),
]
LOG = "/api/v1/locks/lock-1/log"


@contextlib.asynccontextmanager
async def lock_cloud(mosquitto: Mosquitto, tmp_path: Path, url: str) -> AsyncIterator[RunningCloud]:
    key = tmp_path / "command-key.pem"
    new_key_file(key)
    settings = CloudSettings(database_url=url, command_key_file=key, **cloud_broker(mosquitto.port))
    async with run_cloud(settings) as cloud:
        await publish_inventory(cloud, DEVICES)
        yield cloud


@pytest.fixture(params=["sqlite", "postgresql"])
async def cloud(
    request: pytest.FixtureRequest, mosquitto: Mosquitto, tmp_path: Path
) -> AsyncIterator[RunningCloud]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
        else:
            url = await stack.enter_async_context(throwaway_database())
        yield await stack.enter_async_context(lock_cloud(mosquitto, tmp_path, url))


@pytest.fixture
async def sqlite_cloud(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[RunningCloud]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    async with lock_cloud(mosquitto, tmp_path, url) as cloud:
        yield cloud


async def command(cloud: RunningCloud, action: str) -> str:
    async with await cloud.authed("tove") as http:
        response = await http.post(
            f"/api/v1/gateways/{GATEWAY_ID}/commands",
            json={"device_id": "lock-1", "action": action},
        )
    assert response.status_code == 202, response.text
    command_id: str = response.json()["id"]
    return command_id


async def answer(
    cloud: RunningCloud, command_id: str, outcome: CommandOutcome, reason: str | None = None
) -> None:
    result = CommandResult(
        command_id=command_id,
        gateway_id=GATEWAY_ID,
        outcome=outcome,
        reason=reason,
        detail=None if reason is None else f"the lock said {reason}",
        at=datetime.now(UTC),
    )
    await publish(cloud.settings.mqtt_port, results_topic(GATEWAY_ID), result.model_dump_json())


async def lock_event(cloud: RunningCloud, n: int, kind: str, *, restore: bool = False) -> None:
    """What the gateway sends when the lock itself reports (docs/ble-lock.md)."""
    sent = envelope(
        "lock-log-test",
        n,
        Priority.LOW if kind == "lock_opened" else Priority.NORMAL,
        kind,
        "lock-1",
        device_type="digital_lock",
        home_id="home-12",
        restore=restore,
        detail={"cause": "keypad"} if kind == "lock_opened" else {},
    )
    await publish(cloud.settings.mqtt_port, events_topic(GATEWAY_ID), sent.model_dump_json())


async def lock_state(cloud: RunningCloud) -> str | None:
    async with cloud.app.state.services.sessions() as session:
        device = await session.get(Device, ("org-a", "lock-1"))
        assert device is not None
        state: str | None = device.lock_state
        return state


async def log_of(cloud: RunningCloud, user: str = "stina", **params: Any) -> dict[str, Any]:
    async with await cloud.authed(user) as http:
        response = await http.get(LOG, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def entries_in_log(cloud: RunningCloud, n: int) -> bool:
    return len((await log_of(cloud, limit=1000))["entries"]) >= n


async def test_commands_their_results_and_the_locks_own_events_are_logged_and_verified(
    cloud: RunningCloud,
) -> None:
    unlock = await command(cloud, "unlock")
    await answer(cloud, unlock, "accepted")
    await answer(cloud, unlock, "done")
    await wait_until(lambda: entries_in_log(cloud, 3))
    assert await lock_state(cloud) == "unlocked"
    lock = await command(cloud, "lock")
    await answer(cloud, lock, "failed", "jammed")
    await wait_until(lambda: entries_in_log(cloud, 5))
    assert await lock_state(cloud) == "jammed"
    await lock_event(cloud, 1, "lock_jammed", restore=True)
    await wait_until(lambda: entries_in_log(cloud, 6))
    assert await lock_state(cloud) is None  # it moves again: whether it is locked, unknown
    await lock_event(cloud, 2, "lock_opened")
    await wait_until(lambda: entries_in_log(cloud, 7))
    assert await lock_state(cloud) == "unlocked"

    body = await log_of(cloud)
    seen = [
        (e["seq"], e["actor"], e["role"], e["action"], e["outcome"], e["reason"], e["command_id"])
        for e in body["entries"]
    ]
    assert seen == [
        (7, "lock", "device", "opened", "reported", "keypad", None),
        (6, "lock", "device", "jam_cleared", "reported", None, None),
        (5, "tove", "technician", "lock", "failed", "jammed", lock),
        (4, "tove", "technician", "lock", "issued", None, lock),
        (3, "tove", "technician", "unlock", "done", None, unlock),
        (2, "tove", "technician", "unlock", "accepted", None, unlock),
        (1, "tove", "technician", "unlock", "issued", None, unlock),
    ]
    assert body["entries"][2]["detail"] == {"detail": "the lock said jammed"}
    assert {e["home_id"] for e in body["entries"]} == {"home-12"}
    assert body["verification"] == {
        "valid": True,
        "entries": 7,
        "first_broken": None,
        "kind": None,
        "problem": None,
    }
    # Paged back, newest first; the check is always of the whole chain.
    page = await log_of(cloud, limit=2, before=5)
    assert [e["seq"] for e in page["entries"]] == [4, 3]
    assert page["verification"]["entries"] == 7

    # Someone with the database turns the failed lock into a done one.
    async with cloud.app.state.services.sessions() as session:
        await session.execute(text("UPDATE lock_log SET outcome = 'done' WHERE seq = 5"))
        await session.commit()
    broken = (await log_of(cloud, "tove"))["verification"]
    assert broken == {
        "valid": False,
        "entries": 5,
        "first_broken": 5,
        "kind": "altered",
        "problem": "altered: entry 5's content does not match its hash",
    }
    async with await cloud.authed("stina") as http:
        audited = (await http.get("/api/v1/audit", params={"action": "lock_log"})).json()
    assert [(e["actor"], e["target"]) for e in audited][:2] == [
        ("tove", "lock:lock-1"),
        ("stina", "lock:lock-1"),
    ]


REQUESTS: list[tuple[str, dict[str, str], str, int]] = [
    (LOG, {}, "adam", 200),
    (LOG, {}, "tove", 200),
    (LOG, {}, "anna", 403),  # an operator
    (LOG, {}, "sara", 403),  # staff
    (LOG, {}, "ulla", 404),  # a supervisor of another organisation
    ("/api/v1/locks/door-1/log", {}, "stina", 404),  # not a lock
    ("/api/v1/locks/nobody/log", {}, "stina", 404),
    (f"/api/v1/locks/{'x' * 129}/log", {}, "stina", 422),
    ("/api/v1/locks/lock%00/log", {}, "stina", 422),
    (LOG, {"limit": "0"}, "stina", 422),
    (LOG, {"limit": "-1"}, "stina", 422),
    (LOG, {"limit": "1001"}, "stina", 422),
    (LOG, {"limit": "ten"}, "stina", 422),
    (LOG, {"limit": "1e3"}, "stina", 422),
    (LOG, {"before": "0"}, "stina", 422),
    (LOG, {"before": "abc"}, "stina", 422),
    (LOG, {"before": str(10**30)}, "stina", 422),
    (LOG, {"before": "\x00"}, "stina", 422),
]


async def test_the_lock_log_refuses_what_is_not_a_lock_of_yours_and_garbage(
    sqlite_cloud: RunningCloud,
) -> None:
    got = []
    for path, params, user, _status in REQUESTS:
        async with await sqlite_cloud.authed(user) as http:
            got.append((await http.get(path, params=params)).status_code)
    assert got == [status for *_, status in REQUESTS]


async def test_the_lock_log_needs_a_signed_in_caller(sqlite_cloud: RunningCloud) -> None:
    async with sqlite_cloud.client() as http:
        assert (await http.get(LOG)).status_code == 401


async def test_a_staff_members_door_attempts_granted_or_refused_are_in_the_locks_log(
    sqlite_cloud: RunningCloud,
) -> None:
    cloud = sqlite_cloud
    async with await cloud.authed("sara") as sara:
        refused = await sara.post("/api/v1/my/locks/lock-1/unlock", json={"visit_id": 999})
        assert refused.status_code == 403, refused.text
        now = datetime.now(UTC)
        async with await cloud.authed("stina") as stina:
            consent = {"service": "lock", "given_by": "resident"}
            res = await stina.post("/api/v1/residents/res-12/consents", json=consent)
            assert res.status_code == 201, res.text
            planned = {
                "home_id": "home-12",
                "resident_id": "res-12",
                "staff": "sara",
                "starts_at": (now - timedelta(minutes=5)).isoformat(),
                "ends_at": (now + timedelta(minutes=30)).isoformat(),
            }
            res = await stina.post("/api/v1/visits", json=planned)
            assert res.status_code == 201, res.text
            visit = res.json()["id"]

        async def the_gateway() -> None:
            """Answers the door's command as the gateway would, once it is sent."""
            found: list[str] = []

            async def sent() -> bool:
                async with cloud.app.state.services.sessions() as session:
                    rows = await session.execute(
                        select(CommandRecord.id).where(CommandRecord.device_id == "lock-1")
                    )
                    found[:] = list(rows.scalars())
                return bool(found)

            await wait_until(sent)
            await answer(cloud, found[0], "accepted")
            await answer(cloud, found[0], "done")

        answering = asyncio.create_task(the_gateway())
        opened = await sara.post("/api/v1/my/locks/lock-1/unlock", json={"visit_id": visit})
        await answering
        assert opened.status_code == 200, opened.text
    await wait_until(lambda: entries_in_log(cloud, 5))
    body = await log_of(cloud)
    command_id = opened.json()["command_id"]
    assert [
        (e["actor"], e["role"], e["action"], e["outcome"], e["reason"], e["command_id"])
        for e in reversed(body["entries"])
    ] == [
        ("sara", "staff", "unlock", "refused", "not_your_visit", None),
        ("sara", "staff", "unlock", "granted", None, command_id),
        ("sara", "staff", "unlock", "issued", None, command_id),
        ("sara", "staff", "unlock", "accepted", None, command_id),
        ("sara", "staff", "unlock", "done", None, command_id),
    ]
    assert body["entries"][-1]["detail"]["visit"] == 999
    assert body["verification"]["valid"] is True
