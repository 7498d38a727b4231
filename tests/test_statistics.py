"""Response statistics (time to claim, assign, on site; share claimed within 60 s and
180 s; per day and per operator) on SQLite and PostgreSQL; validation errors a person can
read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from cloud.alarms import record_event
from cloud.db import Alarm
from cloud.lifecycle import Action, Actor, apply

from .conftest import GATEWAY_ID, USERS, RunningCloud, make_event
from .servers import wait_until

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


async def alarm_at(cloud: RunningCloud, n: int, received_at: datetime) -> int:
    event = make_event("stats", n, device=f"pendant-{n}", occurred_at=received_at)
    async with cloud.app.state.services.sessions() as session:
        intake = await record_event(session, "org-a", GATEWAY_ID, event)
        assert intake.alarm is not None
        await session.execute(
            update(Alarm).where(Alarm.id == intake.alarm.id).values(received_at=received_at)
        )
        await session.commit()
        return intake.alarm.id


async def step(
    cloud: RunningCloud, alarm_id: int, action: Action, who: str, at: datetime, **kw: Any
) -> None:
    actor = Actor(who, USERS[who][2])
    async with cloud.app.state.services.sessions() as session:
        assert await apply(session, "org-a", alarm_id, action, actor, now=at, **kw)
        await session.commit()


async def test_statistics_count_from_receipt_to_the_first_claim_assignment_and_arrival(
    cloud: RunningCloud,
) -> None:
    s = timedelta(seconds=1)
    a1, a2, a3, a4 = [await alarm_at(cloud, n, T0) for n in range(1, 5)]
    a5 = await alarm_at(cloud, 5, T0 + timedelta(days=1))
    await step(cloud, a1, Action.CLAIM, "anna", T0 + 20 * s)
    await step(cloud, a1, Action.ACKNOWLEDGE, "anna", T0 + 40 * s)
    await step(cloud, a1, Action.ASSIGN, "anna", T0 + 100 * s, assignee="sara")
    await step(cloud, a1, Action.ON_SITE, "sara", T0 + 700 * s)
    await step(cloud, a2, Action.CLAIM, "bert", T0 + 90 * s)
    await step(cloud, a3, Action.ACKNOWLEDGE, "anna", T0 + 150 * s)  # claims on the way
    # a4 was never claimed: it counts against both shares.
    await step(cloud, a5, Action.CLAIM, "anna", T0 + timedelta(days=1) + 30 * s)
    await step(cloud, a5, Action.RELEASE, "anna", T0 + timedelta(days=1) + 40 * s)
    await step(cloud, a5, Action.CLAIM, "bert", T0 + timedelta(days=1) + 99 * s)  # not first
    assert a4
    # A technician's test alarm, even one never claimed, is no call anybody waited on.
    test = await alarm_at(cloud, 6, T0)
    async with cloud.app.state.services.sessions() as session:
        await session.execute(update(Alarm).where(Alarm.id == test).values(test=True))
        await session.commit()
    async with await cloud.authed("stina") as http:
        res = await http.get(
            "/api/v1/statistics",
            params={"from": "2026-11-23T00:00:00Z", "to": "2026-11-25T00:00:00Z"},
        )
    assert res.status_code == 200, res.text
    body = res.json()
    total = body["total"]
    assert (total["alarms"], total["claimed"]) == (5, 4)
    assert total["median_s_to_claim"] == 60.0  # of 20, 30, 90, 150
    assert total["median_s_to_assign"] == 100.0 and total["median_s_to_on_site"] == 700.0
    assert total["claimed_within_60s_share"] == 0.4  # 20 and 30 of five
    assert total["claimed_within_180s_share"] == 0.8
    days = {d["day"]: (d["alarms"], d["claimed"]) for d in body["days"]}
    assert days == {"2026-11-23": (4, 3), "2026-11-24": (1, 1)}
    operators = {o["operator"]: (o["claimed"], o["median_s_to_claim"]) for o in body["operators"]}
    assert operators == {"anna": (3, 30.0), "bert": (1, 90.0)}
    # Another organisation's supervisor sees none of it.
    async with await cloud.authed("ulla") as http:
        theirs = await http.get("/api/v1/statistics", params={"from": "2026-11-23T00:00:00Z"})
    assert theirs.json()["total"]["alarms"] == 0 and theirs.json()["operators"] == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-11-24T00:00:00Z", "to": "2026-11-23T00:00:00Z"}, "before"),
        ({"from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "366 days"),
        ({"from": "2026-11-23T00:00:00"}, "time zone"),
        ({"from": "yesterday"}, "from:"),
        ({"priority": "urgent"}, "priority"),
    ],
)
async def test_statistics_refuse_bad_ranges_with_a_reason(
    sqlite_cloud: RunningCloud, params: dict[str, str], message: str
) -> None:
    async with await sqlite_cloud.authed("stina") as http:
        res = await http.get("/api/v1/statistics", params=params)
    assert res.status_code == 422
    assert message in res.json()["detail"]


async def test_validation_errors_are_a_sentence_and_a_list(sqlite_cloud: RunningCloud) -> None:
    async with await sqlite_cloud.authed("anna") as http:
        res = await http.post("/api/v1/alarms/1/resolve", json={"outcome": "fixed-it"})
    body = res.json()
    assert res.status_code == 422
    assert body["detail"].startswith("outcome: Input should be 'help_given'")
    assert body["errors"][0]["loc"] == ["body", "outcome"]


async def test_days_are_the_organisations_own_and_teams_are_counted_with_their_operators(
    sqlite_cloud: RunningCloud,
) -> None:
    cloud = sqlite_cloud
    # 23:30 UTC on the 23rd is half past midnight on the 24th in Malmö.
    late = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    a1 = await alarm_at(cloud, 1, late)
    async with await cloud.authed("adam") as http:
        team = (await http.post("/api/v1/teams", json={"name": "Natt"})).json()
        body = {"username": "nils", "password": "nils-password", "role": "operator"}
        created = await http.post("/api/v1/users", json=body | {"team_id": team["id"]})
        assert created.status_code == 201, created.text
    await step(cloud, a1, Action.CLAIM, "anna", late + timedelta(seconds=20))
    a2 = await alarm_at(cloud, 2, late)
    async with cloud.app.state.services.sessions() as session:
        actor = Actor("nils", USERS["anna"][2])
        assert await apply(
            session, "org-a", a2, Action.CLAIM, actor, now=late + timedelta(seconds=90)
        )
        await session.commit()
    async with await cloud.authed("stina") as http:
        res = await http.get(
            "/api/v1/statistics",
            params={"from": "2026-11-23T00:00:00Z", "to": "2026-11-25T00:00:00Z"},
        )
    body = res.json()
    assert body["time_zone"] == "Europe/Stockholm"
    assert [(d["day"], d["alarms"]) for d in body["days"]] == [("2026-11-24", 2)]
    teams = [(t["team"], t["claimed"], t["median_s_to_claim"]) for t in body["teams"]]
    assert teams == [("Natt", 1, 90.0)]  # anna has no team


async def test_the_supervisors_today_counts_since_local_midnight_and_names_who_is_on(
    sqlite_cloud: RunningCloud,
) -> None:
    cloud = sqlite_cloud
    now = datetime.now(UTC)
    a1 = await alarm_at(cloud, 1, now - timedelta(seconds=20))
    await step(cloud, a1, Action.CLAIM, "anna", now - timedelta(seconds=10))
    # Received two days ago and never taken: not today's, but escalated and still open.
    a2 = await alarm_at(cloud, 2, now - timedelta(days=2))
    async with await cloud.authed("anna") as http:
        assert (await http.get("/api/v1/statistics/today")).status_code == 403
    async with (
        await cloud.authed("stina") as http,
        http.stream("GET", "/api/v1/alarms/stream") as live,
    ):
        assert live.status_code == 200
        async for _line in live.aiter_lines():
            break  # the stream has begun: stina's console is live
        today = (await http.get("/api/v1/statistics/today")).json()
    level = today["service_level"]["total"]
    assert (level["alarms"], level["claimed"], level["claimed_within_60s_share"]) == (1, 1, 1.0)
    assert [o["operator"] for o in today["service_level"]["operators"]] == ["anna"]
    assert [(u["username"], u["role"]) for u in today["online"]] == [("stina", "supervisor")]
    assert today["time_zone"] == "Europe/Stockholm"

    async def escalated() -> list[tuple[int, str]]:
        async with await cloud.authed("stina") as http:
            body = (await http.get("/api/v1/statistics/today")).json()
        return [(a["id"], a["escalation"]) for a in body["escalations"]]

    await wait_until(escalated)
    assert await escalated() == [(a2, "unclaimed")]
