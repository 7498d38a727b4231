"""Home-care staff through the API: only their own alarms and visits, the resident's card
only while it is theirs (every read audited), decline and take, and every refused door
refused before anything is signed, with its reason, in the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import update

from cloud.admin import admin_session, ensure_user
from cloud.db import Organisation
from cloud.security import Role
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

STOCKHOLM = ZoneInfo("Europe/Stockholm")  # the test organisations' time zone
NILS = ("nils", "nils-password")  # staff on the night patrol (made by the tests)
LOCK = inventory_device("lock-12", "digital_lock", "home-12", actions=["unlock", "lock"])
OTHER_LOCK = inventory_device("lock-1", "digital_lock", "home-1", actions=["unlock", "lock"])


async def signed_in(cloud: RunningCloud, username: str, password: str) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=cloud.url, timeout=10) as http:
        res = await http.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )
    res.raise_for_status()
    token = res.json()["access_token"]
    return httpx.AsyncClient(
        base_url=cloud.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )


async def press(cloud: RunningCloud, mosquitto: Mosquitto, n: int) -> int:
    """Ingrid presses her pendant at home-12 (once in a test); the alarm's id."""
    sent = envelope("staff", n, device="pendant-12")
    event = sent.event.model_copy(update={"home_id": "home-12", "resident_id": "res-12"})
    body = sent.model_copy(update={"event": event}).model_dump_json()
    await publish(mosquitto.port, events_topic(GATEWAY_ID), body)
    async with await cloud.authed("anna") as anna:

        async def raised() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = (await anna.get("/api/v1/alarms")).json()
            return [a for a in found if a["device_id"] == "pendant-12"] if found else []

        await wait_until(raised)
        (alarm,) = await raised()
    return int(alarm["id"])


async def assign(cloud: RunningCloud, alarm_id: int, staff: str = "sara") -> None:
    async with await cloud.authed("anna") as anna:
        assert (await anna.post(f"/api/v1/alarms/{alarm_id}/acknowledge")).status_code == 200
        res = await anna.post(f"/api/v1/alarms/{alarm_id}/assign", json={"staff": staff})
        assert res.status_code == 200, res.text


async def audit_log(cloud: RunningCloud, **params: str) -> list[dict[str, Any]]:
    async with await cloud.authed("stina") as stina:
        res = await stina.get("/api/v1/audit", params=params)
    res.raise_for_status()
    entries: list[dict[str, Any]] = res.json()
    return entries


@pytest.fixture
async def home_12(cloud: RunningCloud) -> RunningCloud:
    """Ingrid's pendant and door lock reported by the gateway, and a lock elsewhere."""
    await publish_inventory(
        cloud, [inventory_device("pendant-12", home="home-12"), LOCK, OTHER_LOCK]
    )
    return cloud


@pytest.mark.usefixtures("home_12")
async def test_staff_see_their_own_alarm_read_its_card_and_work_it_through(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    alarm_id = await press(cloud, mosquitto, 1)
    async with await cloud.authed("sara") as sara:
        assert (await sara.get("/api/v1/my/alarms")).json() == []
        assert (await sara.get(f"/api/v1/my/alarms/{alarm_id}")).status_code == 404
        assert (await sara.get("/api/v1/alarms")).status_code == 403  # not the queue
        await assign(cloud, alarm_id)
        (mine,) = (await sara.get("/api/v1/my/alarms")).json()
        assert (mine["id"], mine["state"], mine["address"]) == (
            alarm_id,
            "assigned",
            "Storgatan 12, Malmö",
        )
        assert mine["locks"] == [{"id": "lock-12", "state": None}]
        card = (await sara.get(f"/api/v1/my/alarms/{alarm_id}")).json()
        assert card["resident"]["name"] == "Ingrid"
        assert card["resident"]["contacts"][0]["phone"] == "+46 70 123 45 67"
        assert card["home"]["key_safe"] == "key safe by the door, 4711"
        accepted = (await sara.post(f"/api/v1/my/alarms/{alarm_id}/accept")).json()
        assert accepted["accepted_at"] is not None
        again = await sara.post(f"/api/v1/my/alarms/{alarm_id}/accept")
        assert again.status_code == 409 and "accepted already" in again.text
        assert (await sara.post(f"/api/v1/my/alarms/{alarm_id}/on-site")).json()["on_site_at"]
        bad = await sara.post(f"/api/v1/my/alarms/{alarm_id}/resolve", json={"outcome": "meh"})
        assert bad.status_code == 422
        done = await sara.post(
            f"/api/v1/my/alarms/{alarm_id}/resolve",
            json={"outcome": "help_given", "note": "helped her up; no injuries"},
        )
        assert done.status_code == 200 and done.json()["state"] == "resolved"
        # Resolved: no longer hers to read.
        assert (await sara.get("/api/v1/my/alarms")).json() == []
        assert (await sara.get(f"/api/v1/my/alarms/{alarm_id}")).status_code == 404
    async with await cloud.authed("anna") as anna:
        seen = (await anna.get(f"/api/v1/alarms/{alarm_id}")).json()
    assert (seen["alarm"]["resolved_by"], seen["alarm"]["outcome"]) == ("sara", "help_given")
    assert [s["action"] for s in seen["history"]][-3:] == ["accept", "on_site", "resolve"]
    # Anna no longer handles it: the key safe is not shown to her now.
    assert seen["home"]["key_safe"] is None
    reads = {(e["actor"], e["action"], e["target"]) for e in await audit_log(cloud)}
    assert ("sara", "resident.read", "resident:res-12") in reads
    assert ("sara", "keysafe.read", "home:home-12") in reads


@pytest.mark.usefixtures("home_12")
async def test_a_declined_alarm_goes_back_to_the_operators_first_with_the_reason(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    alarm_id = await press(cloud, mosquitto, 2)
    await assign(cloud, alarm_id)
    async with await cloud.authed("sara") as sara:
        no_reason = await sara.post(f"/api/v1/my/alarms/{alarm_id}/decline", json={})
        assert no_reason.status_code == 422
        res = await sara.post(
            f"/api/v1/my/alarms/{alarm_id}/decline", json={"reason": "on another call, 40 min"}
        )
        assert res.status_code == 200, res.text
        assert (await sara.get("/api/v1/my/alarms")).json() == []
    async with await cloud.authed("anna") as anna:
        back = (await anna.get(f"/api/v1/alarms/{alarm_id}")).json()
    alarm = back["alarm"]
    assert (alarm["state"], alarm["assigned_to"], alarm["escalation"]) == (
        "acknowledged",
        None,
        "declined",
    )
    assert alarm["escalation_waiting"] is True and alarm["escalation_level"] == 1
    assert back["history"][-1]["detail"] == {
        "declined_by": "sara",
        "note": "on another call, 40 min",
    }


@pytest.mark.usefixtures("home_12")
async def test_the_night_patrol_takes_its_teams_alarm_where_the_organisation_allows_it(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    async with await cloud.authed("adam") as adam:
        team = (await adam.post("/api/v1/teams", json={"name": "Night patrol"})).json()
        nils = {"username": NILS[0], "password": NILS[1], "role": "staff", "team_id": team["id"]}
        assert (await adam.post("/api/v1/users", json=nils)).status_code == 201
        home = {"address": "Storgatan 12, Malmö", "key_safe": "4711", "team_id": team["id"]}
        assert (await adam.put("/api/v1/homes/home-12", json=home)).status_code == 200
    alarm_id = await press(cloud, mosquitto, 3)
    async with await signed_in(cloud, *NILS) as patrol, await cloud.authed("sara") as sara:
        assert (await patrol.get("/api/v1/my/alarms")).json() == []  # not allowed yet
        refused = await patrol.post(f"/api/v1/my/alarms/{alarm_id}/take")
        assert refused.status_code == 403 and "does not let staff take" in refused.text
        async with admin_session(cloud.settings) as session:
            await session.execute(
                update(Organisation).where(Organisation.id == "org-a").values(staff_may_take=True)
            )
            await session.commit()
        (open_alarm,) = (await patrol.get("/api/v1/my/alarms")).json()
        assert (open_alarm["id"], open_alarm["takeable"], open_alarm["locks"]) == (
            alarm_id,
            True,
            [],
        )
        assert (await sara.get("/api/v1/my/alarms")).json() == []  # not her team
        assert (await sara.post(f"/api/v1/my/alarms/{alarm_id}/take")).status_code == 403
        taken = (await patrol.post(f"/api/v1/my/alarms/{alarm_id}/take")).json()
        assert (taken["state"], taken["assigned_to"], taken["takeable"]) == (
            "assigned",
            "nils",
            False,
        )
        assert taken["accepted_at"] is not None
        twice = await patrol.post(f"/api/v1/my/alarms/{alarm_id}/take")
        assert twice.status_code == 409


def _at(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


async def plan_visit(
    cloud: RunningCloud, start_min: float, end_min: float, **fields: Any
) -> dict[str, Any]:
    body = {
        "home_id": "home-12",
        "resident_id": "res-12",
        "staff": "sara",
        "starts_at": _at(start_min),
        "ends_at": _at(end_min),
    } | fields
    async with await cloud.authed("stina") as stina:
        res = await stina.post("/api/v1/visits", json=body)
    assert res.status_code == 201, res.text
    visit: dict[str, Any] = res.json()
    return visit


async def test_a_supervisor_plans_visits_and_staff_see_their_day_and_the_card_only_around_it(
    cloud: RunningCloud,
) -> None:
    now_visit = await plan_visit(cloud, -10, 30, note="morning help")
    later = await plan_visit(cloud, 180, 210)
    # Someone else's, and a cancelled one: not in Sara's day.
    async with admin_session(cloud.settings) as session:
        await ensure_user(session, "org-a", "karin", "karin-password", Role.STAFF)
        await session.commit()
    await plan_visit(cloud, 0, 30, staff="karin")
    cancelled = await plan_visit(cloud, 60, 90)
    async with await cloud.authed("stina") as stina:
        assert (await stina.delete(f"/api/v1/visits/{cancelled['id']}")).json()["cancelled_at"]
        for bad in (
            {"home_id": "home-12", "staff": "sara", "starts_at": _at(10), "ends_at": _at(5)},
            {"home_id": "home-12", "starts_at": _at(0), "ends_at": _at(5)},
            {"home_id": "nowhere", "staff": "sara", "starts_at": _at(0), "ends_at": _at(5)},
            {"home_id": "home-12", "staff": "anna", "starts_at": _at(0), "ends_at": _at(5)},
            {
                "home_id": "home-12",
                "staff": "sara",
                "starts_at": "2026-12-03T08:00",
                "ends_at": "2026-12-03T09:00",
            },
            {"home_id": "home-12", "staff": "sara", "starts_at": _at(0), "ends_at": _at(2000)},
            {"home_id": "home-12", "staff": "sara", "starts_at": "soon", "ends_at": _at(5)},
            {
                "home_id": "home-12",
                "staff": "sara",
                "starts_at": _at(0),
                "ends_at": _at(5),
                "extra": 1,
            },
        ):
            res = await stina.post("/api/v1/visits", json=bad)
            assert res.status_code == 422, (bad, res.text)
    async with await cloud.authed("anna") as anna:  # an operator reads, but does not plan
        assert (await anna.get("/api/v1/visits")).status_code == 200
        assert (await anna.post("/api/v1/visits", json={})).status_code == 403
    async with await cloud.authed("sara") as sara:
        # The day the visit begins where the organisation is (near midnight, not today).
        starts = datetime.fromisoformat(now_visit["starts_at"]).astimezone(STOCKHOLM)
        day = (await sara.get("/api/v1/my/visits", params={"day": str(starts.date())})).json()
        ids = [v["id"] for v in day]
        assert now_visit["id"] in ids and cancelled["id"] not in ids
        first = next(v for v in day if v["id"] == now_visit["id"])
        assert (first["open_now"], first["address"], first["locks"]) == (
            True,
            "Storgatan 12, Malmö",
            [],
        )
        card = (await sara.get(f"/api/v1/my/visits/{now_visit['id']}")).json()
        assert card["resident"]["name"] == "Ingrid" and card["home"]["key_safe"]
        early = await sara.get(f"/api/v1/my/visits/{later['id']}")
        assert early.status_code == 403 and "only around the visit" in early.text
        assert (
            await sara.get("/api/v1/my/visits", params={"day": "03-12-2026"})
        ).status_code == 422
        assert (await sara.get("/api/v1/my/visits/0")).status_code == 422
    reads = [e for e in await audit_log(cloud, action="keysafe") if e["actor"] == "sara"]
    assert [e["detail"] for e in reads] == [{"visit": now_visit["id"]}]


async def consent(cloud: RunningCloud) -> int:
    async with await cloud.authed("stina") as stina:
        res = await stina.post(
            "/api/v1/residents/res-12/consents",
            json={"service": "lock", "given_by": "resident"},
        )
        assert res.status_code == 201, res.text
        for bad in (
            {"service": "sauna", "given_by": "resident"},
            {"service": "lock", "given_by": "neighbour"},
            {"service": "lock", "given_by": "resident", "valid_from": "2026-12-03T08:00"},
        ):
            assert (
                await stina.post("/api/v1/residents/res-12/consents", json=bad)
            ).status_code == 422
        assert (
            await stina.post("/api/v1/residents/nobody/consents", json=bad | {"valid_from": None})
        ).status_code == 404
    return int(res.json()["id"])


async def door(
    http: httpx.AsyncClient, lock: str, action: str = "unlock", **body: Any
) -> httpx.Response:
    return await http.post(f"/api/v1/my/locks/{lock}/{action}", json=body)


def refused(res: httpx.Response, status: int, reason: str) -> bool:
    return res.status_code == status and res.json()["detail"]["reason"] == reason


@pytest.mark.usefixtures("home_12")
async def test_every_door_that_should_not_open_is_refused_with_its_reason_and_logged(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    consent_id = await consent(cloud)
    alarm_id = await press(cloud, mosquitto, 4)
    async with admin_session(cloud.settings) as session:
        await ensure_user(session, "org-b", "berit", "berit-password", Role.STAFF)
        await ensure_user(session, "org-a", "karin", "karin-password", Role.STAFF)
        await session.commit()
    not_yet = await plan_visit(cloud, 60, 90)
    ended = await plan_visit(cloud, -120, -60)
    karins = await plan_visit(cloud, -5, 30, staff="karin")
    async with (
        await cloud.authed("sara") as sara,
        await signed_in(cloud, "berit", "berit-password") as berit,
    ):
        # Not assigned (yet): nothing is signed.
        assert refused(await door(sara, "lock-12", alarm_id=alarm_id), 403, "not_assigned")
        assert refused(await door(sara, "lock-12", visit_id=not_yet["id"]), 403, "visit_not_begun")
        assert refused(await door(sara, "lock-12", visit_id=ended["id"]), 403, "visit_ended")
        assert refused(await door(sara, "lock-12", visit_id=karins["id"]), 403, "not_your_visit")
        await assign(cloud, alarm_id)
        assert refused(await door(sara, "lock-1", alarm_id=alarm_id), 403, "wrong_home")
        # Another organisation's staff: that lock does not exist for them.
        assert refused(await door(berit, "lock-12", alarm_id=alarm_id), 404, "no_such_lock")
        assert refused(await door(sara, "pendant-12", alarm_id=alarm_id), 404, "no_such_lock")
        # Consent withdrawn: the door stays shut, for the alarm as for a visit.
        async with await cloud.authed("stina") as stina:
            withdrawn = await stina.post(f"/api/v1/residents/res-12/consents/{consent_id}/withdraw")
            assert withdrawn.json()["withdrawn_by"] == "stina"
        assert refused(await door(sara, "lock-12", alarm_id=alarm_id), 403, "no_consent")
        # Resolved: no more opening for it.
        async with await cloud.authed("anna") as anna:
            await anna.post(
                f"/api/v1/alarms/{alarm_id}/resolve", json={"outcome": "resolved_by_phone"}
            )
        assert refused(await door(sara, "lock-12", alarm_id=alarm_id), 403, "alarm_resolved")
        # Garbage: a clear 422, never a 500.
        for body in (
            {},
            {"alarm_id": 1, "visit_id": 1},
            {"alarm_id": "x"},
            {"alarm_id": 0},
            {"alarm_id": 2**40},
            {"lock": 1},
        ):
            assert (
                await sara.post("/api/v1/my/locks/lock-12/unlock", json=body)
            ).status_code == 422
        assert (
            await sara.post("/api/v1/my/locks/lock-12/unlock", content=b"\xff")
        ).status_code == 422
        assert (
            await sara.post("/api/v1/my/locks/a%20b/unlock", json={"alarm_id": 1})
        ).status_code == 422
        assert (
            await sara.post("/api/v1/my/locks/lock-12/open", json={"alarm_id": 1})
        ).status_code in (404, 405)
        assert (await sara.get("/api/v1/my/commands/nope-nope-nope")).status_code == 404
    async with await cloud.authed("anna") as anna:  # the staff routes are staff's
        assert (await door(anna, "lock-12", alarm_id=alarm_id)).status_code == 403
    reasons = [
        e["detail"]["reason"]
        for e in reversed(await audit_log(cloud, action="door"))
        if e["action"] == "door.refused"
    ]
    assert reasons == [
        "not_assigned",
        "visit_not_begun",
        "visit_ended",
        "not_your_visit",
        "wrong_home",
        "no_such_lock",  # Sara's try at a pendant (Berit's is in her organisation's log)
        "no_consent",
        "alarm_resolved",
    ]
    async with await cloud.authed("tove") as tove:  # and nothing was ever signed
        assert (await tove.get(f"/api/v1/gateways/{GATEWAY_ID}/commands")).json() == []


async def test_homes_list_no_key_safe_codes(cloud: RunningCloud) -> None:
    async with await cloud.authed("tove") as tove:
        (home,) = (await tove.get("/api/v1/homes")).json()
    assert home["key_safe_set"] is True and "key_safe" not in home
