"""The technician console as a technician uses it, in Debian's Chromium: the gateways
with their health, a gateway's devices as it reports them (the battery falling, a fault,
a door opening), what it hears but has not paired; by keyboard, in Swedish and English,
with axe-core finding nothing serious. Screenshots in .cache/screenshots/technician-*."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from devices import EVENT_KINDS, DeviceType
from gateway import Gateway

from .browser import ROOT, axe_violations, sign_in
from .conftest import RunningCloud, publish
from .servers import Mosquitto, VictoriaMetrics, wait_until
from .test_commands_e2e import centre
from .test_console_staff import _missing, _watched
from .test_device_states import PENDANT

pytestmark = pytest.mark.e2e

SHOTS = ROOT / ".cache" / "screenshots"
DESK: dict[str, Any] = {
    "viewport": {"width": 1280, "height": 860},
    "timezone_id": "Europe/Stockholm",
}


async def _console(browser: Browser, locale: str = "en-GB") -> tuple[BrowserContext, Page]:
    context = await browser.new_context(locale=locale, **DESK)
    return context, _watched(await context.new_page())


async def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"technician-{name}.png"), full_page=True)


async def test_a_technician_sees_the_gateways_health_and_its_devices_live(
    sqlite_cloud: RunningCloud, quick_gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    context, page = await _console(browser)
    await sign_in(page, f"{sqlite_cloud.url}/technician/", "tove", "tove-pass")
    await expect(page.locator("#status")).to_contain_text("updated", timeout=10_000)
    row = page.locator('#gateways tr[data-gateway="gw-test-1"]')
    await expect(row).to_contain_text("online", timeout=15_000)
    await expect(page.locator("#fleet-summary")).to_have_text("1 of 1 online, 0 need attention.")
    await expect(row.locator("td").nth(7)).to_have_text(re.compile(r"^\d+\.\d+\.\d+$"))
    assert await axe_violations(page) == []
    await _shot(page, "fleet")

    # By keyboard: to the gateway's link, and in.
    link = row.get_by_role("link")
    await link.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#gateway-heading")).to_be_focused()
    await expect(page.locator("#gateway-heading")).to_contain_text("gw-test-1")
    devices = page.locator("#devices tr")
    await expect(devices).to_have_count(4, timeout=10_000)
    await expect(page.locator("#links")).to_contain_text("zigbee2mqtt")
    await expect(page.locator("#links")).to_contain_text("connected")

    # The smoke alarm's battery runs low, the front door opens, a stranger speaks up.
    smoke = {"battery": 12, "battery_low": True, "linkquality": 70}
    await publish(mosquitto.port, "zigbee2mqtt/kitchen_smoke", json.dumps(smoke))
    await publish(mosquitto.port, "zigbee2mqtt/front_door", json.dumps({"contact": False}))
    stranger = {"occupancy": True, "battery": 100, "illuminance": 3}
    await publish(mosquitto.port, "zigbee2mqtt/0x00124b0029f0a1b2", json.dumps(stranger))
    smoke_row = page.locator('#devices tr[data-device="smoke-1"]')
    await expect(smoke_row).to_contain_text("12 %", timeout=15_000)
    await expect(smoke_row).to_contain_text("battery low")
    await expect(smoke_row).to_contain_text("70 of 255")
    await expect(smoke_row.locator("td.low")).to_have_text("12 %")
    door_row = page.locator('#devices tr[data-device="door-1"]')
    await expect(door_row).to_contain_text("open", timeout=15_000)
    found = page.locator("#discovered tr")
    await expect(found).to_have_count(1, timeout=15_000)
    await expect(found).to_contain_text("0x00124b0029f0a1b2")
    await expect(found).to_contain_text("battery, illuminance, occupancy")
    # The history: the fault, with how long it took from the gateway to the centre.
    fault = page.locator("#history tr", has_text="smoke-1")
    await expect(fault).to_contain_text("battery low", timeout=15_000)
    await expect(fault).to_contain_text(re.compile(r"\d+ ms"))
    assert await axe_violations(page) == []
    await _shot(page, "gateway")

    # In Swedish, every word from the catalog.
    await page.get_by_label("Language").select_option("sv")
    await expect(page.get_by_role("heading", name="Hörda men inte parkopplade")).to_be_visible()
    await expect(smoke_row).to_contain_text("lågt batteri")
    await expect(door_row).to_contain_text("öppen")
    assert await axe_violations(page) == []
    await _shot(page, "gateway-sv")
    await page.get_by_role("link", name="Alla gateways").click()
    await expect(page.locator("#fleet-heading")).to_be_focused()
    await expect(page.locator("#fleet-summary")).to_contain_text("1 av 1 uppkopplade")
    assert await _missing(page) == []
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_the_console_says_so_to_someone_who_is_not_a_technician(
    sqlite_cloud: RunningCloud, browser: Browser
) -> None:
    context, page = await _console(browser)
    await sign_in(page, f"{sqlite_cloud.url}/technician/", "anna", "anna-pass")
    await expect(page.locator("#not-for-you")).to_have_text(
        "This console is for technicians and administrators; you are signed in as operator."
    )
    await expect(page.locator("#fleet")).to_be_hidden()
    assert await axe_violations(page) == []
    assert await _missing(page) == []
    await context.close()


async def test_the_catalogs_have_the_same_keys() -> None:
    folder = ROOT / "dashboards" / "technician" / "i18n"
    en = json.loads((folder / "en.json").read_text())
    sv = json.loads((folder / "sv.json").read_text())
    assert set(en) == set(sv)
    assert all(isinstance(v, str) and v for v in [*en.values(), *sv.values()])
    # Every event the history may show, and every device type, has words.
    assert {f"kind.{k}" for k in EVENT_KINDS} <= set(en)
    assert {f"type.{t.value}" for t in DeviceType} <= set(en)


async def test_a_technician_sends_a_test_alarm_and_sees_it_come_back(
    mosquitto: Mosquitto, tmp_path: Path, browser: Browser
) -> None:
    async with centre(tmp_path, mosquitto, PENDANT) as c:
        context, page = await _console(browser)
        await sign_in(page, f"{c.cloud.url}/technician/#gateway/gw-test-1", "tove", "tove-pass")
        row = page.locator('#devices tr[data-device="pendant-12"]')
        await expect(row).to_contain_text("not tested", timeout=15_000)
        checklist = page.locator('#checklist div[data-home="home-12"]')
        await expect(checklist.locator("h4")).to_have_text(
            re.compile(r"^home-12: 0 of \d+ devices")
        )
        await expect(checklist).to_contain_text("pendant-12: not tested yet")
        # The lock has no alarm to test: no button.
        lock = page.locator('#devices tr[data-device="door-lock"]')
        await expect(lock.get_by_role("button")).to_have_count(0)
        await row.get_by_role("button", name="Send a test alarm from pendant-12").click()
        result = row.locator(".test-result")
        await expect(result).to_have_text(
            re.compile(r"^Test alarm through in [\d,]+ ms, from the centre and back$"),
            timeout=20_000,
        )
        await expect(row).to_contain_text("through in")
        await expect(checklist).to_contain_text(
            re.compile(r"pendant-12: test came through .+ \([\d,]+ ms\)")
        )
        await expect(checklist.locator("h4")).to_have_text(
            re.compile(r"^home-12: 1 of \d+ devices")
        )
        assert await axe_violations(page) == []
        await _shot(page, "test-alarm")
        async with await c.cloud.authed("anna") as anna:  # the operators were not paged
            assert (await anna.get("/api/v1/alarms")).json() == []
        assert await _missing(page) == []
        assert page.errors == []  # type: ignore[attr-defined]
        await context.close()


# The kitchen's smoke alarm, simulated: the test runs its battery down.
DRAINING = (
    PENDANT
    + """
[[device]]
id = "smoke-12"
type = "smoke"
transport = "zigbee2mqtt"
address = "kitchen_smoke"
home = "home-12"
battery = 64
"""
)


async def test_a_technician_sees_a_simulated_battery_fall(
    mosquitto: Mosquitto, tmp_path: Path, browser: Browser, victoria: VictoriaMetrics
) -> None:
    """In the device table, and charted on the device's page from the readings its
    gateway wrote to VictoriaMetrics, read back through the dispatch service."""
    async with centre(
        tmp_path, mosquitto, DRAINING, timeseries_url=victoria.url, readings_query_url=victoria.url
    ) as c:
        context, page = await _console(browser)
        await sign_in(page, f"{c.cloud.url}/technician/#gateway/gw-test-1", "tove", "tove-pass")
        row = page.locator('#devices tr[data-device="smoke-12"]')
        battery = row.locator("td").nth(4)
        await c.run.act("smoke-12", "battery", pct=31)  # the simulator's check-in says so
        await expect(battery).to_have_text("31 %", timeout=20_000)
        await expect(battery).not_to_have_class(re.compile(r"\blow\b"))
        await c.run.act("smoke-12", "battery", pct=9)
        await expect(battery).to_have_text("9 %", timeout=20_000)
        await expect(battery).to_have_class(re.compile(r"\blow\b"))
        await expect(row).to_contain_text("battery low")  # below the simulator's 15 %
        await _shot(page, "battery-low")

        # The readings have reached the store: the dispatch service reads them back.
        async with await c.cloud.authed("tove") as tove:

            async def stored() -> bool:
                res = await tove.get("/api/v1/devices/smoke-12/readings", params={"hours": 1})
                series = {s["metric"]: s["points"] for s in res.json()["series"]}
                return [p[1] for p in series.get("battery_pct", [])][-1:] == [9]

            await wait_until(stored, 20)
        await row.get_by_role("link", name="smoke-12").click()
        chart = page.locator('figure.chart[data-metric="battery_pct"]')
        await expect(chart.locator("figcaption")).to_contain_text(
            re.compile(r"^Battery: 9 % at .*\d\d:\d\d; lowest 9 %, highest \d+ %$"),
            timeout=20_000,
        )
        await expect(chart.locator("canvas")).to_be_visible()
        await expect(chart.get_by_role("img")).to_have_attribute(
            "aria-label", re.compile(r"^Battery: 9 %")
        )
        await expect(page.locator("#device-facts")).to_contain_text("9 %")
        await expect(page.locator("#device-history")).to_contain_text("battery low")
        assert await axe_violations(page) == []
        await _shot(page, "device-readings")
        # Another period, by keyboard: the charts are drawn again for it.
        await page.locator("#readings-period").focus()
        await page.keyboard.press("ArrowDown")
        await expect(page.locator("#readings-period")).to_have_value("168")
        await expect(chart.locator("figcaption")).to_contain_text("Battery: 9 %", timeout=20_000)
        await page.get_by_label("Language").select_option("sv")
        await expect(chart.locator("figcaption")).to_contain_text("Batteri: 9 %")
        assert await _missing(page) == []
        assert page.errors == []  # type: ignore[attr-defined]
        await context.close()


# A pendant the gateway's file does not declare: heard, then paired from the console.
UNPAIRED = (
    PENDANT
    + """
[[device]]
id = "new-pendant"
type = "alarm_button"
transport = "zigbee2mqtt"
address = "0x00158d0001a2b3c4"
home = "home-12"
"""
)


async def test_a_technician_pairs_a_heard_pendant_from_the_console_and_its_next_press_is_an_alarm(
    mosquitto: Mosquitto, tmp_path: Path, browser: Browser
) -> None:
    declared = {"pendant-12", "door-lock", "ble-lock"}
    async with centre(tmp_path, mosquitto, UNPAIRED, file_devices=declared) as c:
        context, page = await _console(browser)
        await sign_in(page, f"{c.cloud.url}/technician/#gateway/gw-test-1", "tove", "tove-pass")
        state = page.locator("#configuration-state")
        await expect(state).to_have_text(
            "Nothing set from the centre: the gateway has only its own file.", timeout=15_000
        )
        await c.run.act("new-pendant", "press")  # heard, not paired: no alarm
        heard = page.locator("#discovered tr", has_text="0x00158d0001a2b3c4")
        await expect(heard).to_contain_text("action", timeout=15_000)
        # By keyboard: the row's Pair button, the form, its fields, Enter.
        await heard.get_by_role("button", name="Pair the device at 0x00158d0001a2b3c4").focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_label("Device name")).to_be_focused()
        await page.keyboard.type("pendant-hall")
        form = page.locator("#pair")
        await expect(form.locator("select[name=type]")).to_have_value("alarm_button")
        await expect(form.locator("select[name=home]")).to_have_value("home-12")
        await expect(page.get_by_label("BTHome key (if it encrypts)")).to_be_hidden()
        # The bridge's list describes it (the simulator's model): its type is offered.
        await expect(heard).to_contain_text("WXKG11LM: action")
        await expect(page.locator("#pair-suggested")).to_have_text(
            "Its description (WXKG11LM) suggests: alarm button. Check it, and change it if"
            " the device is used otherwise."
        )
        assert await axe_violations(page) == []
        await _shot(page, "pair")
        await page.keyboard.press("Enter")
        await expect(state).to_be_focused()
        await expect(state).to_have_text(
            re.compile(r"^Version 1 in force \(by tove, .+\)\.$"), timeout=20_000
        )
        row = page.locator('#devices tr[data-device="pendant-hall"]')
        await expect(row).to_contain_text("the centre", timeout=15_000)
        await expect(heard).to_have_count(0, timeout=15_000)
        await c.run.act("new-pendant", "press")
        async with await c.cloud.authed("anna") as anna:

            async def queued() -> bool:
                alarms = (await anna.get("/api/v1/alarms")).json()
                return any(a["device_id"] == "pendant-hall" for a in alarms)

            await wait_until(queued, 15)
        await _shot(page, "paired")

        # The home's rules: a door opened at night is an alarm, night from 21:30.
        rules = page.locator("#home-rules")
        await expect(rules.locator("select[name=home]")).to_have_value("home-12")
        await expect(page.get_by_label("Night (local time, from-to)")).to_have_value("22:00-07:00")
        await page.get_by_label("Night (local time, from-to)").fill("21:30-06:30")
        await page.get_by_label("A door opened at night is an alarm").check()
        await page.get_by_label("Out of bed at night and not back within").fill("20")
        await rules.get_by_role("button", name="Save the home's rules").click()
        await expect(state).to_be_focused()
        await expect(state).to_have_text(re.compile(r"^Version 2 in force"), timeout=20_000)
        home = c.gateway.pipeline.rules.homes["home-12"]
        assert (home.night, home.door_open_at_night, home.bed_exit_return_s) == (
            "21:30-06:30",
            True,
            1200,
        )
        assert await axe_violations(page) == []
        await _shot(page, "home-rules")

        # A change the gateway refuses shows its reason; the version in force stays.
        async with await c.cloud.authed("tove") as tove:
            url = "/api/v1/gateways/gw-test-1/configuration"
            now = (await tove.get(url)).json()
            clash = {"id": "door-lock", "type": "door_contact", "address": "x", "home": "home-12"}
            body = {"base_version": now["version"], "devices": [*now["devices"], clash]}
            assert (await tove.put(url, json=body | {"homes": now["homes"]})).status_code == 200
        await expect(state).to_have_text(
            "The gateway refused version 3: device door-lock is declared in the gateway's"
            " file. Version 2 stays in force.",
            timeout=20_000,
        )
        await expect(state).to_have_class("fault")
        refused = page.locator('#configured tr[data-configured="door-lock"]')
        await expect(refused.locator("td").nth(3)).to_have_text("not in force")
        in_force = page.locator('#configured tr[data-configured="pendant-hall"]')
        await expect(in_force.locator("td").nth(3)).to_have_text("in force")
        await _shot(page, "config-refused")
        # Corrected in the console: the clash removed, saved as version 4, in force.
        await refused.get_by_role(
            "button", name="Remove door-lock from the centre's configuration"
        ).click()
        await expect(state).to_have_text(re.compile(r"^Version 4 in force"), timeout=20_000)
        await expect(refused).to_have_count(0)

        # The pendant's page: it is Ingrid's, and must be heard every 30 minutes (version 5).
        await row.get_by_role("link", name="pendant-hall").click()
        await expect(page.locator("#device-heading")).to_have_text(
            "pendant-hall: alarm button in home-12"
        )
        await expect(page.locator("#device-heading")).to_be_focused()
        setup = page.locator("#device-setup")
        await expect(setup.locator("select[name=type]")).to_have_value("alarm_button")
        await expect(setup.locator("select[name=home]")).to_have_value("home-12")
        checkin = setup.get_by_label("Heard at least every")
        await expect(checkin).to_have_value("")
        await checkin.fill("30")
        await setup.get_by_label("Resident's id (optional)").fill("res-12")
        await page.get_by_role("button", name="Save the device").click()
        await expect(page.locator("#device-setup-said")).to_have_text(
            "Saved as version 5; the gateway's answer shows on its page."
        )

        def checkin_s() -> float | None:
            device = c.gateway.registry.get("pendant-hall")
            return None if device is None else device.checkin.total_seconds()

        await wait_until(lambda: checkin_s() == 1800, 20)
        pendant = c.gateway.registry.get("pendant-hall")
        assert pendant is not None
        assert (pendant.config.resident, pendant.config.type) == ("res-12", "alarm_button")
        async with await c.cloud.authed("tove") as tove:  # the new check-in is reported

            async def due_in_half_an_hour() -> bool:
                listed = (await tove.get("/api/v1/devices")).json()
                d = next(x for x in listed if x["id"] == "pendant-hall")
                due, seen = d["checkin_due_at"], d["last_seen_at"]
                return bool(due and seen) and (
                    datetime.fromisoformat(due) - datetime.fromisoformat(seen)
                ) == timedelta(minutes=30)

            await wait_until(due_in_half_an_hour, 20)
        await expect(page.locator("#readings-state")).to_have_text(
            re.compile(r"^Readings are not kept here: the dispatch service has no time-series")
        )
        assert await axe_violations(page) == []
        await _shot(page, "device-checkin")
        await page.get_by_role("link", name="Back to gateway gw-test-1").click()
        await expect(state).to_have_text(re.compile(r"^Version 5 in force"), timeout=20_000)
        # The heartbeat every two minutes (version 6); the gateway beats so at once.
        await page.get_by_label("Every (seconds").fill("120")
        await page.get_by_role("button", name="Save the heartbeat").click()
        await expect(state).to_be_focused()
        await expect(state).to_have_text(re.compile(r"^Version 6 in force"), timeout=20_000)
        assert c.gateway.uplink.heartbeat_interval_s == 120
        assert checkin_s() == 1800

        # Removing the pendant again: version 7, and the home's rules stay.
        await row.get_by_role("button", name="Remove pendant-hall from the gateway").click()
        await expect(state).to_have_text(re.compile(r"^Version 7 in force"), timeout=20_000)
        assert c.gateway.pipeline.rules.homes["home-12"].door_open_at_night
        assert c.gateway.uplink.heartbeat_interval_s == 120
        await expect(row).to_have_count(0, timeout=15_000)
        # In Swedish, every word of it from the catalog.
        await page.get_by_label("Language").select_option("sv")
        await expect(state).to_have_text(re.compile(r"^Version 7 gäller"))
        await expect(page.get_by_role("button", name="Spara hemmets regler")).to_be_visible()
        assert await _missing(page) == []
        assert page.errors == []  # type: ignore[attr-defined]
        await context.close()
