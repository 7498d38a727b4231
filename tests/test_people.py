"""Organisations' people and places through the API: an administrator sets up a team,
staff, a home, a resident, a gateway and a device; operators see the resident with the
alarm; every action and every read of resident data is in the audit log. On SQLite and
PostgreSQL. Bad input is refused with a reason."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devices.wire import events_topic

from .conftest import (
    GATEWAY_ID,
    RunningCloud,
    envelope,
    inventory_device,
    publish,
    publish_inventory,
)
from .servers import Mosquitto, wait_until

pytestmark = pytest.mark.integration


async def audit_of(
    cloud: RunningCloud, *, sign_ins: bool = False, **params: str
) -> list[dict[str, Any]]:
    """The audit log, newest first; without sign-ins unless asked (each test signs in)."""
    async with await cloud.authed("stina") as http:
        res = await http.get("/api/v1/audit", params=params)
    res.raise_for_status()
    entries: list[dict[str, Any]] = res.json()
    return [e for e in entries if sign_ins or not e["action"].startswith("auth.")]


async def created(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    res = await http.post(path, json=body)
    assert res.status_code == 201, res.text
    out: dict[str, Any] = res.json()
    return out


async def test_an_administrator_sets_up_a_home_and_everything_is_audited(
    cloud: RunningCloud,
) -> None:
    async with await cloud.authed("adam") as admin:
        team = await created(admin, "/api/v1/teams", {"name": "Night patrol"})
        nina = {"username": "nina", "password": "a long password", "role": "staff"}
        staff = await created(admin, "/api/v1/users", {**nina, "team_id": team["id"]})
        assert (staff["role"], staff["team_id"]) == ("staff", team["id"])
        home = {"id": "home-7", "address": "Ängsvägen 7", "key_safe": "behind the drainpipe"}
        await created(admin, "/api/v1/homes", home)
        contact = {"name": "Per", "relation": "son", "phone": "+46 70 000 00 07"}
        resident = {"id": "res-7", "home_id": "home-7", "name": "Sven", "contacts": [contact]}
        await created(admin, "/api/v1/residents", resident)
        await created(admin, "/api/v1/gateways", {"id": "gw-home-7", "name": "Ängsvägen 7"})
        device = {"id": "pendant-7", "gateway_id": "gw-home-7", "home_id": "home-7"}
        await created(admin, "/api/v1/devices", {**device, "type": "alarm_button"})
        # PUT replaces the whole record: what is left out is cleared.
        update = {"home_id": "home-12", "name": "Sven Berg", "contacts": [contact]}
        moved = await admin.put("/api/v1/residents/res-7", json=update)
        assert moved.status_code == 200 and moved.json()["home_id"] == "home-12"
        # Taken, and duplicate: 409 with the reason.
        again = await admin.post("/api/v1/homes", json=home)
        assert again.status_code == 409 and "already a home home-7" in again.text
        taken = await admin.post("/api/v1/users", json={**nina, "password": "another long one"})
        assert taken.status_code == 409 and "'nina' is taken" in taken.text
    async with await cloud.authed("anna") as operator:
        staff_list = (await operator.get("/api/v1/users")).json()
        assert "nina" in [u["username"] for u in staff_list]
        assert "password" not in str(staff_list) and "hash" not in str(staff_list)
        names = {r["id"]: r["name"] for r in (await operator.get("/api/v1/residents")).json()}
        assert names == {"res-12": "Ingrid", "res-7": "Sven Berg"}
        sven = (await operator.get("/api/v1/residents/res-7")).json()
        assert sven["contacts"] == [contact]
    async with await cloud.authed("tove") as technician:
        devices = (await technician.get("/api/v1/devices", params={"home_id": "home-7"})).json()
        assert [d["id"] for d in devices] == ["pendant-7"]
        assert (await technician.get("/api/v1/residents/res-7")).status_code == 403
    entries = await audit_of(cloud)
    actions = [(e["actor"], e["action"], e["target"]) for e in reversed(entries)]
    assert actions == [
        ("adam", "team.create", f"team:{team['id']}"),
        ("adam", "user.create", "user:nina"),
        ("adam", "home.create", "home:home-7"),
        ("adam", "resident.create", "resident:res-7"),
        ("adam", "gateway.create", "gateway:gw-home-7"),
        ("adam", "device.create", "device:pendant-7"),
        ("adam", "resident.update", "resident:res-7"),
        ("anna", "resident.read", "resident:res-7"),
    ]
    # Paging back, and filtering by who or what.
    older = await audit_of(cloud, actor="adam", before=str(entries[1]["id"]), limit="2")
    assert [e["action"] for e in older] == ["device.create", "gateway.create"]
    assert [e["action"] for e in await audit_of(cloud, actor="anna")] == ["resident.read"]
    assert [e["actor"] for e in await audit_of(cloud, target="resident:res-7")] == [
        "anna",
        "adam",
        "adam",
    ]


async def test_sign_ins_and_failed_ones_are_audited(sqlite_cloud: RunningCloud) -> None:
    async with sqlite_cloud.client() as http:
        await http.post("/api/v1/auth/token", data={"username": "anna", "password": "nope"})
        await http.post("/api/v1/auth/token", data={"username": "nobody", "password": "nope"})
    await sqlite_cloud.token("anna")
    entries = await audit_of(sqlite_cloud, sign_ins=True, target="user:anna")
    assert [e["action"] for e in entries] == ["auth.login", "auth.failed"]
    assert entries[0]["detail"]["from"] == "127.0.0.1"
    assert entries[1]["detail"] == {"from": "127.0.0.1", "why": "password"}


async def test_the_alarm_shows_who_lives_there_and_how_to_get_in_and_the_reading_is_logged(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    await publish_inventory(cloud, [inventory_device("pendant-1", home="home-12")])
    sent = envelope("people", 1, device="pendant-1")
    event = sent.event.model_copy(update={"home_id": "home-12", "resident_id": "res-12"})
    await publish(
        mosquitto.port,
        events_topic(GATEWAY_ID),
        sent.model_copy(update={"event": event}).model_dump_json(),
    )
    async with await cloud.authed("anna") as http:
        await wait_until(lambda: _alarms(http))
        (alarm,) = (await http.get("/api/v1/alarms")).json()
        await http.post(f"/api/v1/alarms/{alarm['id']}/claim")
        detail = (await http.get(f"/api/v1/alarms/{alarm['id']}")).json()
    assert detail["home"]["address"] == "Storgatan 12, Malmö"
    assert detail["home"]["key_safe"] == "key safe by the door, 4711"
    assert detail["resident"]["name"] == "Ingrid"
    assert detail["resident"]["contacts"][0]["relation"] == "daughter"
    entries = [(e["actor"], e["action"], e["target"]) for e in await audit_of(cloud)]
    assert ("anna", "alarm.claim", f"alarm:{alarm['id']}") in entries
    assert ("anna", "resident.read", "resident:res-12") in entries


async def _alarms(http: httpx.AsyncClient) -> bool:
    return bool((await http.get("/api/v1/alarms")).json())


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/v1/homes", {"id": "h 1", "address": "x"}, "id: String should match pattern"),
        ("/api/v1/homes", {"id": "h1", "address": ""}, "address: String should have at least"),
        ("/api/v1/homes", {"id": "h1", "address": "x", "colour": "red"}, "colour: Extra inputs"),
        ("/api/v1/residents", {"id": "r1", "home_id": "nowhere", "name": "A"}, "no home nowhere"),
        (
            "/api/v1/residents",
            {"id": "r1", "home_id": "home-12", "name": "A", "contacts": [{"name": "B"}]},
            "contacts.0.phone: Field required",
        ),
        (
            "/api/v1/residents",
            {
                "id": "r1",
                "home_id": "home-12",
                "name": "A",
                "contacts": [{"name": "B", "phone": "call me"}],
            },
            "contacts.0.phone: String should match pattern",
        ),
        ("/api/v1/users", {"username": "x1", "password": "short", "role": "staff"}, "password"),
        ("/api/v1/users", {"username": "x1", "password": "long enough!", "role": "boss"}, "role"),
        (
            "/api/v1/users",
            {"username": "x1", "password": "long enough!", "role": "staff", "team_id": 999},
            "No team 999",
        ),
        ("/api/v1/gateways", {"id": "GW!", "name": "x"}, "id: String should match pattern"),
        (
            "/api/v1/devices",
            {"id": "d1", "gateway_id": "gw-nope", "home_id": "home-12", "type": "smoke"},
            "no gateway gw-nope",
        ),
        (
            "/api/v1/devices",
            {"id": "d1", "gateway_id": GATEWAY_ID, "home_id": "home-12", "type": "toaster"},
            "type: Input should be",
        ),
        ("/api/v1/teams", {"name": "x" * 101}, "name: String should have at most 100"),
    ],
)
async def test_bad_input_is_refused_with_the_reason(
    sqlite_cloud: RunningCloud, path: str, body: dict[str, Any], message: str
) -> None:
    async with await sqlite_cloud.authed("adam") as http:
        res = await http.post(path, json=body)
    assert res.status_code == 422, res.text
    assert message in res.json()["detail"]
    assert await audit_of(sqlite_cloud) == []  # nothing happened, so nothing is logged
