"""The alarm lifecycle: every transition of the state machine, who may take it, the
recorded history, concurrent claims, merging repeated events, and technical alarms that
resolve on their restore. On SQLite and on PostgreSQL (the ``cloud`` fixture)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cloud.alarms import TECHNICAL_KINDS, record_event
from cloud.db import Alarm
from cloud.lifecycle import (
    ROLES,
    TRANSITIONS,
    Action,
    Actor,
    AlarmState,
    Outcome,
    TransitionError,
    plan,
)
from cloud.security import Role
from devices import Event, Priority
from devices.wire import events_topic

from .conftest import (
    GATEWAY_ID,
    RunningCloud,
    envelope,
    inventory_device,
    make_event,
    publish,
    publish_inventory,
)
from .servers import Mosquitto, wait_until

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 24, 2, 14, tzinfo=UTC)
ANNA = Actor("anna", Role.OPERATOR)


def alarm_in(state: AlarmState, claimed_by: str | None = None) -> Alarm:
    return Alarm(id=7, state=state.value, claimed_by=claimed_by, assigned_to=None, outcome=None)


ARGS = {"assignee": "sara", "outcome": Outcome.HELP_GIVEN, "note": "on another call"}
SARA = Actor("sara", Role.STAFF)  # the assignee, for what only staff do


def actor_for(action: Action) -> Actor:
    return SARA if ROLES[action] == {Role.STAFF} else ANNA


@pytest.mark.parametrize(
    ("state", "action"), list(itertools.product(list(AlarmState), list(Action)))
)
def test_the_state_machine_allows_exactly_its_transitions(
    state: AlarmState, action: Action
) -> None:
    sources, target = TRANSITIONS[action]
    holder = "anna" if state not in (AlarmState.NEW, AlarmState.RESOLVED) else None
    alarm = alarm_in(state, holder)
    alarm.assigned_to = "sara" if state in (AlarmState.ASSIGNED, AlarmState.ON_SITE) else None
    if state in sources:
        step = plan(alarm, action, actor_for(action), NOW, **ARGS)  # type: ignore[arg-type]
        assert step.to_state is target and step.changes["state"] == target.value
    else:
        with pytest.raises(TransitionError, match=f"cannot {action.value}"):
            plan(alarm, action, actor_for(action), NOW, **ARGS)  # type: ignore[arg-type]


@pytest.mark.parametrize(("action", "role"), list(itertools.product(list(Action), list(Role))))
def test_only_the_right_roles_may_act(action: Action, role: Role) -> None:
    sources, _ = TRANSITIONS[action]
    start = sorted(sources)[0]
    alarm = alarm_in(start, "someone" if start is not AlarmState.NEW else None)
    alarm.assigned_to = "pat"
    actor = Actor("pat", role)
    # Someone else holds every started alarm here: only a supervisor, or staff on their own
    # assignment, may act on it; anyone with the role may act on a new one.
    if role in ROLES[action] and (role in (Role.SUPERVISOR, Role.STAFF) or start is AlarmState.NEW):
        plan(alarm, action, actor, NOW, **ARGS)  # type: ignore[arg-type]
    else:
        with pytest.raises(TransitionError):
            plan(alarm, action, actor, NOW, **ARGS)  # type: ignore[arg-type]


def test_a_claimed_alarm_is_the_claimers_and_a_supervisor_may_take_over() -> None:
    alarm = alarm_in(AlarmState.CLAIMED, "anna")
    with pytest.raises(TransitionError, match="claimed by anna"):
        plan(alarm, Action.ACKNOWLEDGE, Actor("bert", Role.OPERATOR), NOW)
    step = plan(alarm, Action.ACKNOWLEDGE, Actor("stina", Role.SUPERVISOR), NOW)
    assert step.changes["acknowledged_by"] == "stina" and "claimed_by" not in step.changes
    with pytest.raises(TransitionError, match="needs an outcome"):
        plan(alarm, Action.RESOLVE, ANNA, NOW)


# -- through the API, on both databases ------------------------------------------------


@pytest.fixture
async def reported(cloud: RunningCloud) -> None:
    """The test gateway has reported the devices these tests press (its inventory)."""
    await publish_inventory(cloud, ["pendant-1", inventory_device("smoke-1", "smoke")])


async def press(
    mosquitto: Mosquitto,
    n: int,
    *,
    device: str = "pendant-1",
    kind: str = "alarm_button",
    priority: Priority = Priority.CRITICAL,
    restore: bool = False,
    detail: dict[str, object] | None = None,
) -> None:
    sent = envelope("lifecycle", n, priority, kind, device, restore=restore, detail=detail or {})
    await publish(mosquitto.port, events_topic(GATEWAY_ID), sent.model_dump_json())


async def alarms_of(http: httpx.AsyncClient) -> list[dict[str, object]]:
    res = await http.get("/api/v1/alarms")
    res.raise_for_status()
    found: list[dict[str, object]] = res.json()
    return found


async def one_alarm(cloud: RunningCloud, events: int = 1) -> dict[str, object]:
    async with await cloud.authed("anna") as http:
        await wait_until(lambda: _count_events(http, events))
        (alarm,) = await alarms_of(http)
    return alarm


async def _count_events(http: httpx.AsyncClient, events: int) -> bool:
    found = await alarms_of(http)
    return sum(int(str(a["event_count"])) for a in found) >= events


@pytest.mark.usefixtures("reported")
async def test_an_alarm_goes_from_new_to_resolved_and_its_history_says_who_and_when(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    await press(mosquitto, 1)
    alarm_id = (await one_alarm(cloud))["id"]
    base = f"/api/v1/alarms/{alarm_id}"
    async with await cloud.authed("anna") as anna, await cloud.authed("sara") as sara:
        claimed = (await anna.post(f"{base}/claim")).json()
        assert (claimed["state"], claimed["claimed_by"]) == ("claimed", "anna")
        assert (await anna.post(f"{base}/acknowledge")).json()["state"] == "acknowledged"
        assigned = await anna.post(
            f"{base}/assign", json={"staff": "sara", "note": "key safe 4711"}
        )
        assert (assigned.json()["state"], assigned.json()["assigned_to"]) == ("assigned", "sara")
        # The staff member sees the alarm assigned to her, and says she is there.
        assert (await sara.get(base)).status_code == 200
        on_site = await sara.post(f"{base}/on-site")
        assert on_site.status_code == 200 and on_site.json()["on_site_at"] is not None
        resolved = await anna.post(
            f"{base}/resolve", json={"outcome": "help_given", "note": "helped back to bed"}
        )
        body = resolved.json()
        assert (body["state"], body["outcome"], body["resolved_by"]) == (
            "resolved",
            "help_given",
            "anna",
        )
        assert body["resolution_note"] == "helped back to bed"
        detail = (await anna.get(base)).json()
        # Done is done: nothing moves a resolved alarm.
        again = await anna.post(f"{base}/resolve", json={"outcome": "false_alarm"})
        assert again.status_code == 409 and "resolved (help_given, by anna)" in again.text
    steps = [(t["action"], t["from_state"], t["to_state"], t["by"]) for t in detail["history"]]
    assert steps == [
        ("claim", "new", "claimed", "anna"),
        ("acknowledge", "claimed", "acknowledged", "anna"),
        ("assign", "acknowledged", "assigned", "anna"),
        ("on_site", "assigned", "on_site", "sara"),
        ("resolve", "on_site", "resolved", "anna"),
    ]
    times = [datetime.fromisoformat(t["at"]) for t in detail["history"]]
    assert times == sorted(times)
    assert detail["history"][2]["detail"] == {"assigned_to": "sara", "note": "key safe 4711"}
    assert detail["history"][4]["detail"]["outcome"] == "help_given"


@pytest.mark.usefixtures("reported")
async def test_illegal_steps_are_refused_with_a_reason_a_person_understands(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    await press(mosquitto, 2)
    alarm_id = (await one_alarm(cloud))["id"]
    base = f"/api/v1/alarms/{alarm_id}"
    async with (
        await cloud.authed("anna") as anna,
        await cloud.authed("bert") as bert,
        await cloud.authed("sara") as sara,
    ):
        early = await anna.post(f"{base}/resolve", json={"outcome": "help_given"})
        assert early.status_code == 409
        assert "cannot resolve: alarm" in early.text and "is new" in early.text
        assert (await anna.post(f"{base}/assign", json={"staff": "sara"})).status_code == 409
        assert (await sara.post(f"{base}/on-site")).status_code == 409
        assert (await sara.get(base)).status_code == 404  # not assigned to her
        assert (await anna.post(f"{base}/claim")).status_code == 200
        taken = await bert.post(f"{base}/claim")
        assert taken.status_code == 409 and "claimed by anna" in taken.json()["detail"]
        assert (await bert.post(f"{base}/acknowledge")).status_code == 409
        assert (await bert.post(f"{base}/release")).status_code == 409
        await anna.post(f"{base}/acknowledge")
        not_staff = await anna.post(f"{base}/assign", json={"staff": "tove"})  # a technician
        assert not_staff.status_code == 422 and "No staff member 'tove'" in not_staff.text
        other_org = await anna.post(f"{base}/assign", json={"staff": "olle"})
        assert other_org.status_code == 422
        for bad in ({}, {"outcome": "fixed-it"}, {"outcome": "help_given", "note": "x" * 2001}):
            assert (await anna.post(f"{base}/resolve", json=bad)).status_code == 422
        assert (await anna.post(f"{base}/assign", json={"staff": ""})).status_code == 422
        assert (
            await anna.post(f"{base}/assign", json={"staff": "sara", "x": 1})
        ).status_code == 422
        # Release gives a claimed alarm back; only a claimed one.
        assert (await anna.post(f"{base}/release")).status_code == 409


@pytest.mark.usefixtures("reported")
async def test_a_released_alarm_can_be_claimed_by_another_operator(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    await press(mosquitto, 3)
    alarm_id = (await one_alarm(cloud))["id"]
    base = f"/api/v1/alarms/{alarm_id}"
    async with await cloud.authed("anna") as anna, await cloud.authed("bert") as bert:
        await anna.post(f"{base}/claim")
        released = (await anna.post(f"{base}/release")).json()
        assert (released["state"], released["claimed_by"]) == ("new", None)
        assert (await bert.post(f"{base}/claim")).json()["claimed_by"] == "bert"


@pytest.mark.usefixtures("reported")
async def test_concurrent_claims_have_exactly_one_winner_and_the_others_are_told_who(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    await press(mosquitto, 4)
    alarm_id = (await one_alarm(cloud))["id"]
    async with await cloud.authed("anna") as anna, await cloud.authed("bert") as bert:
        claims = [
            (who, http.post(f"/api/v1/alarms/{alarm_id}/claim"))
            for who, http in [("anna", anna), ("bert", bert)] * 6
        ]
        results = await asyncio.gather(*(request for _who, request in claims))
        detail = (await anna.get(f"/api/v1/alarms/{alarm_id}")).json()
    won = [r for r in results if r.status_code == 200]
    lost = [r for r in results if r.status_code == 409]
    assert len(won) == 1 and len(lost) == len(results) - 1
    winner = won[0].json()["claimed_by"]
    assert all(f"claimed by {winner}" in r.json()["detail"] for r in lost)
    assert [t["action"] for t in detail["history"]] == ["claim"]


@pytest.mark.usefixtures("reported")
async def test_repeated_presses_merge_into_one_alarm_with_a_count_and_the_latest_position(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    await press(mosquitto, 10, detail={"latitude": 55.60, "longitude": 13.00})
    await press(mosquitto, 11, detail={"latitude": 55.61, "longitude": 13.01})
    await press(mosquitto, 12, detail={"latitude": "north", "longitude": 13.02})  # ignored
    alarm = await one_alarm(cloud, events=3)
    assert alarm["event_count"] == 3
    assert (alarm["latitude"], alarm["longitude"]) == (55.61, 13.01)


@pytest.mark.usefixtures("reported")
async def test_a_technical_alarm_resolves_on_its_restore_and_a_life_alarm_does_not(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    assert "battery_low" in TECHNICAL_KINDS and "smoke" not in TECHNICAL_KINDS
    await press(mosquitto, 20, device="smoke-1", kind="battery_low", priority=Priority.NORMAL)
    await press(mosquitto, 21, device="smoke-1", kind="smoke")
    async with await cloud.authed("anna") as http:
        await wait_until(lambda: _count_events(http, 2))
        await press(mosquitto, 22, device="smoke-1", kind="battery_low", restore=True)
        await press(mosquitto, 23, device="smoke-1", kind="smoke", restore=True)

        async def restored() -> bool:
            return all(a["restored_at"] for a in await alarms_of(http))

        await wait_until(restored)
        by_kind = {a["kind"]: a for a in await alarms_of(http)}
        technical = (await http.get(f"/api/v1/alarms/{by_kind['battery_low']['id']}")).json()
    assert by_kind["smoke"]["state"] == "new"  # an operator still has to deal with it
    resolved = technical["alarm"]
    assert (resolved["state"], resolved["outcome"], resolved["resolved_by"]) == (
        "resolved",
        "restored",
        "system",
    )
    assert [t["action"] for t in technical["history"]] == ["resolve"]


async def test_an_event_after_the_merge_window_starts_a_new_alarm(cloud: RunningCloud) -> None:
    def event(n: int) -> Event:
        return make_event("window", n, device="pendant-9")

    sessions = cloud.app.state.services.sessions
    async with sessions() as session:
        first = await record_event(session, "org-a", GATEWAY_ID, event(1))
        await session.commit()
        joined = await record_event(session, "org-a", GATEWAY_ID, event(2))
        await session.commit()
        later = await record_event(
            session, "org-a", GATEWAY_ID, event(3), merge_window=timedelta(0)
        )
        await session.commit()
    assert first.created and not joined.created and later.created
    assert first.alarm is not None and joined.alarm is not None and later.alarm is not None
    assert joined.alarm.id == first.alarm.id and later.alarm.id != first.alarm.id
