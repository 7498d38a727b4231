"""Away mode from the consoles, end to end: an operator sets the resident away, the
home's gateway gets it as a signed configuration and its inactivity rule stops; "back
home" starts it again and overrides the away button; the away button's press, reported
by the gateway, is the home's state at the centre too (cloud/away.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from cloud.admin import admin_session
from cloud.db import AuditEntry, Home
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
from .test_commands_e2e import centre
from .test_configuration_e2e import FILE, SCENARIO

pytestmark = pytest.mark.e2e


async def test_an_operator_sets_the_resident_away_and_the_gateways_inactivity_rule_pauses(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with centre(tmp_path, mosquitto, SCENARIO, file_devices=FILE) as c:
        rules = c.gateway.pipeline.rules

        def away_at_the_gateway() -> bool:
            home = rules.homes.get("home-12")
            return home is not None and rules.away(home)

        async with await c.cloud.authed("anna") as staff:

            async def inventory() -> bool:
                res = await staff.put("/api/v1/homes/home-12/away", json={"away": True})
                return res.status_code == 200 and GATEWAY_ID in res.json()["gateways"]

            # The gateway's inventory names the hall's motion sensor: then the home has it.
            await wait_until(inventory, 20, interval_s=0.5)
            await wait_until(away_at_the_gateway, 20)
            back = await staff.put("/api/v1/homes/home-12/away", json={"away": False})
            assert back.status_code == 200, back.text
            assert back.json()["away"] is False and back.json()["away_by"] == "anna"
            await wait_until(lambda: not away_at_the_gateway(), 20)
            bad = await staff.put("/api/v1/homes/home-12/away", json={"away": "maybe"})
            assert bad.status_code == 422
            nowhere = await staff.put("/api/v1/homes/nowhere/away", json={"away": True})
            assert nowhere.status_code == 404
        async with admin_session(c.cloud.settings) as session:
            actions = list(
                await session.scalars(
                    select(AuditEntry.action).where(AuditEntry.target == "home:home-12")
                )
            )
        assert actions.count("home.back") == 1 and actions.count("home.away") >= 1


async def test_the_away_buttons_press_reported_by_the_gateway_is_the_homes_state(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    await publish_inventory(sqlite_cloud, [inventory_device("away-button", home="home-12")])
    on = envelope("button", 1, kind="away_mode", device="away-button", home_id="home-12")
    await publish(mosquitto.port, events_topic(GATEWAY_ID), on.model_dump_json())

    async def away() -> bool:
        async with admin_session(sqlite_cloud.settings) as session:
            home = await session.get(Home, ("org-a", "home-12"))
            return home is not None and home.away

    await wait_until(away, 15)
    off = envelope(
        "button", 2, kind="away_mode", device="away-button", home_id="home-12", restore=True
    )
    await publish(mosquitto.port, events_topic(GATEWAY_ID), off.model_dump_json())

    async def back() -> bool:
        return not await away()

    await wait_until(back, 15)
    async with admin_session(sqlite_cloud.settings) as session:
        home = await session.get(Home, ("org-a", "home-12"))
        assert home is not None and home.away_by == "button:away-button"


async def test_rules_set_per_resident_reach_the_homes_gateway_as_the_strictest_of_them(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Ingrid needs an inactivity alarm after 8 hours by day and a door alarm at night;
    Olof, her husband with dementia, the wandering watch and 4 hours. Their home runs the
    strictest of each (cloud/homerules.py)."""
    async with centre(tmp_path, mosquitto, SCENARIO, file_devices=FILE) as c:
        rules = c.gateway.pipeline.rules
        async with await c.cloud.authed("adam") as admin:
            olof = {"id": "res-13", "home_id": "home-12", "name": "Olof"}
            assert (await admin.post("/api/v1/residents", json=olof)).status_code == 201
        async with await c.cloud.authed("stina") as supervisor:
            ingrid = {
                "inactivity_h": 8,
                "inactivity_window": "07:00-22:00",
                "inactivity_pre_alarm_s": 60,
                "door_open_at_night": True,
            }

            async def delivered() -> bool:  # once the inventory has named the home's devices
                res = await supervisor.put("/api/v1/residents/res-12/rules", json=ingrid)
                assert res.status_code == 200, res.text
                return GATEWAY_ID in res.json()["gateways"]

            await wait_until(delivered, 20, interval_s=0.5)
            await wait_until(lambda: "home-12" in rules.homes, 20)
            home = rules.homes["home-12"]
            assert (home.inactivity_s, home.inactivity_pre_alarm_s) == (8 * 3600, 60)
            assert home.door_open_at_night and home.wandering_s == 0
            assert home.timezone == "Europe/Stockholm"
            olofs = {"inactivity_h": 4, "wandering_min": 10}
            res = await supervisor.put("/api/v1/residents/res-13/rules", json=olofs)
            assert res.status_code == 200, res.text
            said = res.json()["home_rules"]
            assert (said["inactivity_s"], said["wandering_s"]) == (4 * 3600, 600)
            assert said["inactivity_window"] == "00:00-00:00" and said["door_open_at_night"]

            def both() -> bool:
                return rules.homes["home-12"].wandering_s == 600

            await wait_until(both, 20)
            assert rules.homes["home-12"].inactivity_s == 4 * 3600
            read = (await supervisor.get("/api/v1/residents/res-13/rules")).json()
            assert read["rules"]["wandering_min"] == 10 and read["home_rules"] == said
            bad = await supervisor.put("/api/v1/residents/res-13/rules", json={"inactivity_h": -1})
            assert bad.status_code == 422
            odd = await supervisor.put("/api/v1/residents/res-13/rules", json={"sleep": True})
            assert odd.status_code == 422
        async with await c.cloud.authed("anna") as operator:
            refused = await operator.put("/api/v1/residents/res-13/rules", json=olofs)
            assert refused.status_code == 403


async def test_staff_set_away_only_for_a_home_they_serve(sqlite_cloud: RunningCloud) -> None:
    from datetime import UTC, datetime, timedelta

    async with await sqlite_cloud.authed("sara") as staff:
        refused = await staff.put("/api/v1/homes/home-12/away", json={"away": True})
        assert refused.status_code == 403 and "not a home you serve" in refused.text
    now = datetime.now(UTC)
    visit = {
        "home_id": "home-12",
        "staff": "sara",
        "starts_at": (now + timedelta(hours=2)).isoformat(),
        "ends_at": (now + timedelta(hours=3)).isoformat(),
    }
    async with await sqlite_cloud.authed("stina") as supervisor:
        assert (await supervisor.post("/api/v1/visits", json=visit)).status_code == 201
    async with await sqlite_cloud.authed("sara") as staff:
        allowed = await staff.put("/api/v1/homes/home-12/away", json={"away": True})
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["away_by"] == "sara"
