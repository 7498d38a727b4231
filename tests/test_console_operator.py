"""The operator console as a night-shift operator uses it, in Debian's Chromium: waiting
times that tick and deepen in colour against the answer target, a sound, the title and a
desktop notification for every new urgent alarm (and a console that says it is muted),
a press on an open alarm that makes it new again, the whole lifecycle by keyboard only,
Swedish and English with no key missing from either catalog, and axe-core on each state."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    expect,
)
from sqlalchemy import select, update

from cloud.admin import admin_session
from cloud.db import Organisation
from cloud.escalation import Escalator, Limits, Reason
from cloud.lifecycle import Action, AlarmState, Outcome
from cloud.security import Role
from devices import Priority
from devices.catalog import EVENT_KINDS
from devices.wire import events_topic
from gateway import Gateway

from .browser import axe_violations, sign_in
from .conftest import (
    GATEWAY_ID,
    RunningCloud,
    envelope,
    inventory_device,
    publish,
    publish_inventory,
)
from .servers import Mosquitto, wait_until

pytestmark = pytest.mark.e2e

CONSOLE = Path(__file__).resolve().parents[1] / "dashboards" / "operator"
CATALOGS = {
    lang: json.loads((CONSOLE / "i18n" / f"{lang}.json").read_text()) for lang in ("sv", "en")
}
# Looked at by people, and copied into docs/screenshots for the README.
SHOTS = Path(__file__).resolve().parents[1] / ".cache" / "screenshots"

# Records what the page played and notified, as a person would hear and see it.
OBSERVE = """
window.__played = [];
const play = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function () {
  window.__played.push(this.id);  // the console asked the element to play
  return play.call(this);
};
window.__notified = [];
const Real = window.Notification;
window.Notification = class extends Real {
  constructor(title, options) { super(title, options); window.__notified.push(title); }
};
"""


def test_both_catalogs_hold_every_key_the_console_uses_and_every_code_it_shows() -> None:
    sv, en = CATALOGS["sv"], CATALOGS["en"]
    assert set(sv) == set(en), sorted(set(sv) ^ set(en))
    assert all(isinstance(v, str) and v.strip() for c in (sv, en) for v in c.values())
    script = (CONSOLE / "app.js").read_text()
    page = (CONSOLE / "index.html").read_text()
    used = set(re.findall(r"""\bt\("([a-z_]+\.[a-z0-9_.-]+)\"""", script))
    used |= set(re.findall(r'data-i18n="([^"]+)"', page))
    assert used, "the console names no message at all"
    assert used - set(en) == set()
    # Codes the API sends are shown through the catalog: each one has its words.
    codes = {f"kind.{k}" for k in EVENT_KINDS}
    codes |= {f"state.{s.value}" for s in AlarmState}
    codes |= {f"priority.{p.value}" for p in Priority}
    codes |= {f"outcome.{o.value}" for o in Outcome}
    codes |= {f"history.{a.value}" for a in Action} | {"history.escalate"}
    codes |= {f"escalation.{r.value}" for r in Reason}
    codes |= {f"role.{r.value}" for r in Role}
    # Every action the audit log records (cloud/api/*.py: audit(session, user, "x.y", ...)).
    api = "\n".join(p.read_text() for p in (CONSOLE.parents[1] / "cloud").rglob("*.py"))
    written = set(re.findall(r'audit\(\s*\w+,\s*\w+,\s*"([a-z_]+\.[a-z_]+)"', api))
    assert "resident.read" in written
    written |= {f"alarm.{a.value}" for a in Action}  # audit(..., f"alarm.{action.value}")
    codes |= {f"audit.{a}" for a in written}
    assert codes - set(en) == set()
    # Placeholders agree between the languages.
    for key, text in en.items():
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", sv[key])), key


# The page asks /api/v1/me whether its cookie still signs someone in: a 401 there, before
# signing in, is the answer "no" (and Chromium logs it as a failed load).
def _failed(response: Response) -> bool:
    probe = response.status == 401 and response.url.endswith("/api/v1/me")
    return response.status >= 400 and not probe


def _unexpected_console(message: ConsoleMessage) -> bool:
    probe = message.text.endswith("the server responded with a status of 401 (Unauthorized)")
    return message.type == "error" and not probe


async def _console(browser: Browser, locale: str = "en-GB") -> tuple[BrowserContext, Page]:
    context = await browser.new_context(locale=locale, timezone_id="Europe/Stockholm")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if _unexpected_console(m) else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if _failed(r) else None)
    page.errors = errors  # type: ignore[attr-defined]
    return context, page


async def _played(page: Page, times: int) -> None:
    """Wait until the page has played its sound ``times`` times (polled from here: the
    console's policy forbids the page evaluating strings, as a waiting function would)."""

    async def played() -> bool:
        return bool(await page.evaluate("window.__played.length") == times)

    await wait_until(played, 10)


async def _missing(page: Page) -> list[str]:
    missing: list[str] = await page.evaluate("[...window.trygg.missing]")
    return missing


async def test_the_console_speaks_swedish_from_the_browser_and_english_when_chosen(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    context, page = await _console(browser, "sv-SE")
    await page.goto(sqlite_cloud.url)
    await expect(page.get_by_role("button", name="Logga in")).to_be_visible()
    assert await axe_violations(page) == []
    await page.get_by_label("Användarnamn").fill("anna")
    await page.get_by_label("Lösenord").fill("anna-pass")
    await page.get_by_role("button", name="Logga in").click()
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await expect(page.locator("#waiting")).to_contain_text("inga väntar")

    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "sos"}))
    row = page.locator("#alarms tr").first
    await expect(row).to_contain_text("Larmknapp tryckt", timeout=10_000)
    await expect(row).to_contain_text("kritiskt")
    await expect(row).to_contain_text("nytt")
    await expect(page.locator("#waiting")).to_contain_text("Väntar: 1 kritiskt")
    await expect(page).to_have_title("(1) Trygg — larmkö")
    assert await axe_violations(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "operator-queue-sv.png"))

    await row.get_by_role("cell", name="Larmknapp tryckt").click()
    detail = page.locator("#detail")
    await expect(detail).to_contain_text("Ingrid", timeout=10_000)
    # Not claimed: the key safe is not shown (it is for whoever handles the alarm).
    await expect(detail).not_to_contain_text("Nyckelgömma")
    assert await axe_violations(page) == []

    await page.get_by_label("Språk").select_option("en")
    await expect(row).to_contain_text("Alarm button pressed")
    await expect(page.locator("#waiting")).to_contain_text("Waiting: 1 critical")
    await page.reload()  # the choice is kept
    await expect(page.locator("#alarms tr").first).to_contain_text(
        "Alarm button pressed", timeout=10_000
    )
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    assert await _missing(page) == []
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_waiting_time_ticks_and_deepens_in_colour_until_someone_takes_the_alarm(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    context, page = await _console(browser)
    await page.clock.install()  # the page's clock, moved on by the test
    await sign_in(page, sqlite_cloud.url, "anna", "anna-pass")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "sos"}))
    row = page.locator("#alarms tr").first
    waiting = row.locator("td.waiting")
    await expect(waiting).to_have_text(re.compile(r"^0:0\d$"), timeout=10_000)
    await expect(row).not_to_have_class(re.compile(r"age-"))

    # The answer target is 60 s: half of it, all of it, three times it.
    await page.clock.fast_forward("00:31")
    await expect(waiting).to_have_text(re.compile(r"^0:3\d$"))
    await expect(row).to_have_class(re.compile(r"\bage-1\b"))
    await page.clock.fast_forward("00:30")
    await expect(row).to_have_class(re.compile(r"\bage-2\b"))
    await page.clock.fast_forward("02:00")
    await expect(row).to_have_class(re.compile(r"\bage-3\b"))
    await expect(waiting).to_have_text(re.compile(r"^3:0\d$"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "operator-queue-late.png"))

    await row.get_by_role("button", name="Claim").click()
    await expect(row).to_contain_text("claimed by anna", timeout=10_000)
    await expect(row).not_to_have_class(re.compile(r"age-"))
    await expect(page.locator("#waiting")).to_contain_text("none waiting")
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_a_new_urgent_alarm_sounds_notifies_and_counts_in_the_title_unless_muted(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    context, page = await _console(browser)
    await context.grant_permissions(["notifications"])
    await context.add_init_script(OBSERVE)
    await sign_in(page, sqlite_cloud.url, "anna", "anna-pass")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await expect(page.locator("#mute")).to_have_text(re.compile("Sound on"))

    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "sos"}))
    row = page.locator("#alarms tr").first
    await expect(row).to_contain_text("Alarm button pressed", timeout=10_000)
    await expect(page).to_have_title("(1) Trygg — alarm queue")
    await _played(page, 1)
    assert await page.evaluate("window.__notified") == ["critical: Alarm button pressed"]

    # Pressed again while it waits: new again, and heard again.
    press = json.dumps({"action": "sos", "linkquality": 77})
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", press)
    await expect(row).to_contain_text("new again", timeout=10_000)
    await expect(row).to_have_class(re.compile(r"\bagain\b"))
    await expect(row.locator("td").nth(6)).to_have_text("2")
    await _played(page, 2)

    # Each operator picks a sound (heard once on choosing it) and keeps it.
    await page.get_by_role("combobox", name=re.compile("^Sound")).select_option("bell")
    await _played(page, 3)
    assert (await page.locator("#chime").get_attribute("src")) == "bell.wav"

    # Muted: the console says so (and keeps it for this operator), and stays silent.
    await page.locator("#mute").click()
    await expect(page.locator("#mute")).to_have_text(re.compile("Sound muted"))
    await expect(page.locator("#mute")).to_have_attribute("aria-pressed", "true")
    await page.reload()
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await expect(page.locator("#mute")).to_have_text(re.compile("Sound muted"))
    assert (await page.locator("#chime").get_attribute("src")) == "bell.wav"
    await publish(mosquitto.port, "zigbee2mqtt/kitchen_smoke", json.dumps({"smoke": True}))
    await expect(page.locator("#alarms tr")).to_have_count(2, timeout=10_000)
    await expect(page).to_have_title("(2) Trygg — alarm queue")
    assert await page.evaluate("window.__played") == []  # a fresh page: nothing played
    assert await page.evaluate("window.__notified") == ["critical: Smoke detected"]
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()


async def _tab_to_row(page: Page) -> None:
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.matches('tr[data-alarm-id]')"):
            return
    raise AssertionError("Tab never reached the queue")


async def _focused(page: Page) -> str:
    text: str = await page.evaluate(
        "document.activeElement.getAttribute('aria-label') || document.activeElement.textContent"
    )
    return text


async def test_an_operator_takes_an_alarm_through_its_whole_life_by_keyboard_only(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    context, page = await _console(browser)
    await sign_in(page, sqlite_cloud.url, "anna", "anna-pass")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    jammed = json.dumps({"lock_state": "not_fully_locked"})
    await publish(mosquitto.port, "zigbee2mqtt/front_door_lock", jammed)
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "sos"}))
    rows = page.locator("#alarms tr")
    await expect(rows).to_have_count(2, timeout=10_000)
    await page.locator("body").focus()

    await _tab_to_row(page)
    assert (await _focused(page)).startswith("critical: Alarm button pressed")
    await page.keyboard.press("ArrowDown")
    assert (await _focused(page)).startswith("normal: Lock jammed")
    await page.keyboard.press("ArrowUp")
    await page.keyboard.press("Enter")  # the details, and back
    await expect(page.locator("#detail")).to_contain_text("Ingrid", timeout=10_000)
    assert await _focused(page) == "Close"
    await page.keyboard.press("Escape")
    await expect(page.locator("#detail")).to_be_hidden()
    assert (await _focused(page)).startswith("critical: Alarm button pressed")

    row = rows.first
    for step, shows in (("Claim", "claimed by anna"), ("Acknowledge", "acknowledged by anna")):
        await page.keyboard.press("Tab")
        assert await _focused(page) == step
        await page.keyboard.press("Enter")
        await expect(row).to_contain_text(shows, timeout=10_000)
    await page.keyboard.press("Tab")
    assert await _focused(page) == "Assign…"
    await page.keyboard.press("Enter")
    await expect(row.get_by_label("Staff member")).to_be_focused(timeout=10_000)
    await page.keyboard.press("Tab")
    assert await _focused(page) == "Send"
    await page.keyboard.press("Enter")
    await expect(row).to_contain_text("assigned to sara", timeout=10_000)
    await page.keyboard.press("Tab")
    assert await _focused(page) == "On site"
    await page.keyboard.press("Enter")
    await expect(row).to_contain_text("on site", timeout=10_000)
    await page.keyboard.press("Tab")
    assert await _focused(page) == "Resolve…"
    await page.keyboard.press("Enter")
    await expect(row.get_by_label("Outcome")).to_be_focused(timeout=10_000)
    await page.keyboard.press("Tab")
    await page.keyboard.type("helped up from the floor")
    await page.keyboard.press("Tab")
    assert await _focused(page) == "Resolve"
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(1, timeout=10_000)
    await expect(rows.first).to_contain_text("Lock jammed")
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_the_alarm_opens_on_the_resident_card_with_their_recent_alarms(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    # An earlier press today, ended as a false alarm.
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "sos"}))
    async with await sqlite_cloud.authed("anna") as http:

        async def first_id() -> int | None:
            alarms = (await http.get("/api/v1/alarms")).json()
            return int(alarms[0]["id"]) if alarms else None

        await wait_until(first_id)
        earlier = await first_id()
        assert (await http.post(f"/api/v1/alarms/{earlier}/claim")).status_code == 200
        resolved = await http.post(
            f"/api/v1/alarms/{earlier}/resolve", json={"outcome": "false_alarm", "note": None}
        )
        assert resolved.status_code == 200, resolved.text

    context, page = await _console(browser)
    await sign_in(page, sqlite_cloud.url, "anna", "anna-pass")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    # A new press (the gateway drops a frame it has just had, so this one differs).
    press = json.dumps({"action": "sos", "linkquality": 5})
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", press)
    row = page.locator("#alarms tr").first
    await expect(row).to_contain_text("Alarm button pressed", timeout=10_000)
    await row.click()
    card = page.locator("#detail .resident")
    await expect(card.locator("h3")).to_have_text("Ingrid, 90 years", timeout=10_000)
    await expect(card).to_contain_text("Storgatan 12, Malmö")
    # The key safe is for whoever handles the alarm: not shown before it is claimed.
    await expect(card).not_to_contain_text("4711")
    await expect(card).to_contain_text("Swedish")
    await expect(card).to_contain_text("hard of hearing")
    call = card.get_by_role("link", name=re.compile("Call Lena"))
    await expect(call).to_have_attribute("href", "tel:+46701234567")
    await expect(card.locator("ol.recent li")).to_have_count(1)
    await expect(card.locator("ol.recent li")).to_contain_text("Alarm button pressed: false alarm")
    # The card comes before the alarm's own details.
    sections = await page.locator("#detail section").evaluate_all(
        "els => els.map(e => e.className)"
    )
    assert sections == ["card resident", "card alarm"]
    assert await axe_violations(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "operator-alarm.png"), full_page=True)
    # Her daughter calls: Ingrid is staying with her for a week. Away: no inactivity alarm.
    await expect(card.locator(".away")).to_contain_text("The resident is at home.")
    await card.get_by_role("button", name="Set away").click()
    await expect(page.locator("#status")).to_have_text("Away mode set; the gateway is told.")
    await expect(card.locator(".away")).to_contain_text("The resident is away", timeout=10_000)
    await card.get_by_role("button", name="Back home").click()
    await expect(card.locator(".away")).to_contain_text("at home", timeout=10_000)
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_the_supervisor_sees_todays_service_level_who_is_on_and_searches_the_audit_log(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    async with await sqlite_cloud.authed("adam") as http:
        team = (await http.post("/api/v1/teams", json={"name": "Natt"})).json()
        nils = {"username": "nils", "password": "nils-password", "role": "operator"}
        assert (await http.post("/api/v1/users", json=nils | {"team_id": team["id"]})).is_success
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "sos"}))
    async with sqlite_cloud.client() as http:
        login = {"username": "nils", "password": "nils-password"}
        token = (await http.post("/api/v1/auth/token", data=login)).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"

        async def first_id() -> int | None:
            alarms = (await http.get("/api/v1/alarms")).json()
            return int(alarms[0]["id"]) if alarms else None

        await wait_until(first_id)
        assert (await http.post(f"/api/v1/alarms/{await first_id()}/claim")).is_success

    context, page = await _console(browser)
    await sign_in(page, sqlite_cloud.url, "stina", "stina-pass")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await page.get_by_role("button", name="Service level").click()
    view = page.locator("#supervision")
    await expect(view.locator("h2")).to_contain_text("Today's service level", timeout=10_000)
    figures = view.locator("#sv-summary")
    await expect(figures).to_contain_text("1Alarms today")
    await expect(figures).to_contain_text("100.0 %Taken within 60 s")
    await expect(view.locator("#sv-operators tbody tr")).to_have_count(1)
    await expect(view.locator("#sv-operators tbody tr")).to_contain_text("nils")
    await expect(view.locator("#sv-teams tbody tr")).to_contain_text("Natt")
    await expect(view.locator("#sv-escalations")).to_contain_text("none")
    await expect(view.locator("#sv-online")).to_contain_text("stina (supervisor)")

    await view.get_by_label("Who").fill("nils")
    await view.get_by_label("What").select_option("alarm.claim")
    await view.get_by_role("button", name="Search").click()
    await expect(view.locator("#audit tbody tr")).to_have_count(1, timeout=10_000)
    await expect(view.locator("#audit tbody tr")).to_contain_text("claimed an alarm")
    await view.get_by_label("Who").fill("nobody")
    await view.get_by_role("button", name="Search").click()
    await expect(view.locator("#audit")).to_contain_text("No entries.")
    assert await axe_violations(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "supervisor.png"), full_page=True)
    # The view stays open for her after a reload; an operator has no such button.
    await page.reload()
    await expect(page.locator("#supervision")).to_be_visible(timeout=10_000)
    assert await _missing(page) == []
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()
    context, operator = await _console(browser)  # another browser: its own cookie
    await sign_in(operator, sqlite_cloud.url, "anna", "anna-pass")
    await expect(operator.locator("#status")).to_have_text("live", timeout=10_000)
    await expect(operator.get_by_role("button", name="Service level")).to_be_hidden()
    await context.close()


async def test_a_wandering_residents_alarm_shows_the_zone_the_positions_and_home_on_a_map(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, browser: Browser
) -> None:
    cloud = sqlite_cloud
    async with await cloud.authed("adam") as http:
        home = {"address": "Storgatan 12, Malmö", "latitude": 55.6050, "longitude": 13.0038}
        assert (await http.put("/api/v1/homes/home-12", json=home)).status_code == 200
        device = {"id": "gps-1", "gateway_id": GATEWAY_ID, "home_id": "home-12"}
        device |= {"type": "gps_pendant", "resident_id": "res-12"}
        assert (await http.post("/api/v1/devices", json=device)).status_code == 201
    await publish_inventory(cloud, [inventory_device("gps-1", "gps_pendant", "home-12")])
    zone = {"zone_latitude": 55.6050, "zone_longitude": 13.0038, "zone_radius_m": 300.0}
    # Out of the zone, and further out a minute later: one alarm, two positions.
    for n, (lat, lon) in enumerate(((55.6080, 13.0090), (55.6101, 13.0142)), start=1):
        sent = envelope(
            "wander",
            n,
            Priority.HIGH,
            "geofence_exit",
            device="gps-1",
            device_type="gps_pendant",
            home_id="home-12",
            resident_id="res-12",
            detail={"latitude": lat, "longitude": lon, **zone},
        )
        await publish(mosquitto.port, events_topic(GATEWAY_ID), sent.model_dump_json())

    context, page = await _console(browser)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await sign_in(page, cloud.url, "anna", "anna-pass")
    row = page.locator("#alarms tr").first
    await expect(row).to_contain_text("Left the safe zone", timeout=10_000)
    await expect(row.locator("td").nth(6)).to_have_text("2", timeout=10_000)
    await row.click()
    detail = page.locator("#detail")
    await expect(detail.locator("#map")).to_be_visible(timeout=10_000)
    await expect(detail.locator(".resident h3")).to_contain_text("Ingrid")
    # Leaflet drew the zone, the track, both positions and the home, on a plain map.
    await expect(detail.locator("#map.plain")).to_have_count(1)
    await expect(detail.locator("path.zone")).to_have_count(1)
    await expect(detail.locator("path.track")).to_have_count(1)
    await expect(detail.locator("path.position")).to_have_count(2)
    await expect(detail.locator("path.home")).to_have_count(1)
    await expect(detail.locator(".leaflet-control-scale")).to_be_visible()
    summary = detail.locator(".map-summary")
    await expect(summary).to_contain_text("Last position 55.61010, 13.01420")
    await expect(summary).to_contain_text(re.compile(r"\d+ m outside the safe zone"))
    assert await axe_violations(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "operator-map.png"), full_page=True)
    # Nothing was fetched from anywhere but the dispatch service (no tile server, no CDN).
    assert requests and all(u.startswith(cloud.url) for u in requests), requests
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()

    # Looking was audited; an administrator's detail carries no positions at all.
    async with await cloud.authed("stina") as http:
        log = (await http.get("/api/v1/audit", params={"action": "position"})).json()
    assert [(e["actor"], e["detail"]) for e in log] == [("anna", {"device": "gps-1"})]
    async with await cloud.authed("adam") as http:
        (listed,) = (await http.get("/api/v1/alarms")).json()
        seen = (await http.get(f"/api/v1/alarms/{listed['id']}")).json()
    assert (seen["positions"], seen["zone"]) == ([], None)
    assert (listed["latitude"], seen["alarm"]["latitude"]) == (None, None)
    async with await cloud.authed("anna") as http:
        (theirs,) = (await http.get("/api/v1/alarms")).json()
    assert (theirs["latitude"], theirs["longitude"]) == (55.6101, 13.0142)


async def test_filters_by_team_priority_and_state_are_kept_for_each_operator(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, browser: Browser
) -> None:
    cloud = sqlite_cloud
    async with await cloud.authed("adam") as http:
        team = (await http.post("/api/v1/teams", json={"name": "Väster"})).json()
        home = {"address": "Storgatan 12, Malmö", "team_id": team["id"]}
        assert (await http.put("/api/v1/homes/home-12", json=home)).status_code == 200
        wrong = await http.put("/api/v1/homes/home-12", json=home | {"team_id": 999})
        assert wrong.status_code == 422 and "no team 999" in wrong.text
    # One alarm from home-12 (Väster's), one from a home no team serves.
    devices = [inventory_device("pendant-12", home="home-12"), inventory_device("pendant-9")]
    await publish_inventory(cloud, devices)
    for n, (device, home_id) in enumerate((("pendant-12", "home-12"), ("pendant-9", "home-1"))):
        sent = envelope("filters", n, device=device, home_id=home_id)
        await publish(mosquitto.port, events_topic(GATEWAY_ID), sent.model_dump_json())

    context, page = await _console(browser)
    await sign_in(page, cloud.url, "anna", "anna-pass")
    rows = page.locator("#alarms tr")
    await expect(rows).to_have_count(2, timeout=10_000)
    await page.locator("#filter-team").select_option(label="Väster")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("home-12")
    await expect(page.locator("#filtered")).to_have_text("1 alarms hidden by the filters")
    await page.locator("#filter-priority").select_option("high")
    await expect(rows).to_have_count(0)
    await page.reload()  # kept for anna
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await expect(page.locator("#filter-priority")).to_have_value("high")
    await expect(page.locator("#filter-team")).to_have_value(str(team["id"]))
    await expect(rows).to_have_count(0)
    await page.locator("#filter-priority").select_option("")
    await expect(rows).to_have_count(1)
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()
    # Bert's console has its own filters.
    context, page = await _console(browser)
    await sign_in(page, cloud.url, "bert", "bert-pass")
    await expect(page.locator("#alarms tr")).to_have_count(2, timeout=10_000)
    await context.close()


async def test_a_technicians_test_press_is_a_test_row_never_sounded_counted_or_escalated(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    cloud = sqlite_cloud
    async with admin_session(cloud.settings) as session:  # this centre shows its tests
        await session.execute(
            update(Organisation).where(Organisation.id == "org-a").values(show_tests=True)
        )
        await session.commit()
    async with await cloud.authed("tove") as http:  # the technician checking the pendant

        async def reported() -> bool:
            devices = (await http.get("/api/v1/devices")).json()
            return "pendant-1" in {d["id"] for d in devices}

        await wait_until(reported)
        res = await http.post("/api/v1/devices/pendant-1/test", json={"minutes": 30})
        assert res.status_code == 200 and res.json()["test_until"], res.text
        assert (
            await http.post("/api/v1/devices/pendant-1/test", json={"minutes": 0})
        ).status_code == 422
    context, page = await _console(browser)
    await context.add_init_script(OBSERVE)
    await sign_in(page, cloud.url, "anna", "anna-pass")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "sos"}))
    row = page.locator("#alarms tr").first
    await expect(row).to_contain_text("test", timeout=10_000)
    await expect(row).to_have_class(re.compile(r"\btest\b"))
    await expect(page.locator("#waiting")).to_contain_text("none waiting")
    await expect(page).to_have_title("Trygg — alarm queue")
    assert await page.evaluate("window.__played") == []
    await context.close()
    # Never escalated, however long it waits (a sweep with its clock two hours on).
    services = cloud.app.state.services

    async def later(_session: object) -> datetime:
        return datetime.now(UTC) + timedelta(hours=2)

    limits = Limits.from_settings(cloud.settings)
    sweep = Escalator(services.sessions, services.hub, limits, None, later)
    assert await sweep.sweep() == []
    async with await cloud.authed("tove") as http:
        assert (await http.delete("/api/v1/devices/pendant-1/test")).json()["test_until"] is None
    async with await cloud.authed("stina") as http:
        log = (await http.get("/api/v1/audit", params={"action": "device"})).json()
    assert [e["action"] for e in log][:2] == ["device.test_end", "device.test"]


async def test_a_supervisor_records_consents_and_sets_a_residents_rules_the_gateway_then_runs(
    mosquitto: Mosquitto, tmp_path: Path, browser: Browser
) -> None:
    """The supervision view's resident part: the consents (recorded, shown, withdrawn) and
    the home rules, saved from the form and running on the home's gateway as signed
    configuration; both languages, axe-core, and a language change reads nothing again."""
    from cloud.db import AuditEntry

    from .test_commands_e2e import centre
    from .test_configuration_e2e import FILE, SCENARIO

    async with centre(tmp_path, mosquitto, SCENARIO, file_devices=FILE) as c:
        rules = c.gateway.pipeline.rules
        async with await c.cloud.authed("tove") as tech:

            async def inventoried() -> bool:  # then the home has a gateway to send to
                devices = (await tech.get("/api/v1/devices")).json()
                return any(d["home_id"] == "home-12" for d in devices)

            await wait_until(inventoried, 20, interval_s=0.3)
        context, page = await _console(browser)
        await sign_in(page, c.cloud.url, "stina", "stina-pass")
        await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
        await page.get_by_role("button", name="Service level").click()
        view = page.locator("#supervision")
        await expect(view.locator("#rs-resident option[value='res-12']")).to_have_count(1)
        await view.get_by_label("Resident", exact=True).select_option("res-12")
        consents = view.locator("#rs-consents tbody tr")
        await expect(consents).to_contain_text("No consent is recorded", timeout=10_000)

        await view.get_by_label("Service", exact=True).select_option("camera")
        await view.get_by_label("Given by", exact=True).select_option("cohabitant")
        await view.get_by_label("Their name").fill("Olof")
        await view.get_by_role("button", name="Record the consent").click()
        await expect(view.locator("#rs-said")).to_have_text("Consent recorded: camera checks.")
        await expect(consents).to_have_count(1)
        await expect(consents).to_contain_text("camera checksa relative living with them: Olof")
        await expect(consents).to_contain_text("in force")

        form = view.locator("#rs-rules")
        await form.get_by_label("No activity for this many hours").fill("8")
        await form.get_by_label("Counted from").fill("07:00")
        await form.get_by_label("to (the same time: all day)").fill("22:00")
        await form.get_by_label("First a pre-alarm in the home").fill("60")
        await form.get_by_label("A door opened at night is an alarm").check()
        await form.get_by_role("button", name="Save the rules").click()
        await expect(view.locator("#rs-said")).to_contain_text(
            f"Rules saved and sent: {GATEWAY_ID} (version", timeout=10_000
        )
        await expect(view.locator("#rs-home")).to_have_text(
            "The home runs, for everyone who lives there: "
            "no activity for 8 h (07:00-22:00); a door at night."
        )

        def running() -> bool:
            home = rules.homes.get("home-12")
            return home is not None and home.inactivity_s == 8 * 3600

        await wait_until(running, 20)
        home = rules.homes["home-12"]
        assert (home.inactivity_window, home.inactivity_pre_alarm_s) == ("07:00-22:00", 60)
        assert home.door_open_at_night and home.wandering_s == 0
        # A value the service refuses (the form's own limits stepped around) is said.
        await form.get_by_label("No activity for this many hours").evaluate(
            "(el) => el.removeAttribute('max')"
        )
        await form.get_by_label("No activity for this many hours").fill("500")
        await form.get_by_role("button", name="Save the rules").click()
        await expect(view.locator("#rs-said")).to_contain_text("Not done: inactivity_h:")
        assert rules.homes["home-12"].inactivity_s == 8 * 3600

        await view.get_by_role(
            "button", name="Withdraw: camera checks, a relative living with them: Olof"
        ).click()
        await expect(view.locator("#rs-said")).to_have_text(
            "Consent withdrawn: camera checks. The service stops now."
        )
        await expect(consents).not_to_contain_text("in force")
        await expect(consents).to_contain_text("stina, ")
        assert await axe_violations(page) == []
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.locator("#rs-heading").scroll_into_view_if_needed()
        await page.screenshot(path=str(SHOTS / "supervisor-resident.png"), full_page=True)

        async def consent_reads() -> int:
            async with admin_session(c.cloud.settings) as session:
                query = select(AuditEntry.id).where(AuditEntry.action == "consent.read")
                return len(list(await session.scalars(query)))

        before = await consent_reads()
        await page.get_by_label("Language").select_option("sv")
        await expect(consents).to_contain_text("kameratillsyn")
        await expect(view.locator("#rs-home")).to_contain_text("Hemmet kör")
        await expect(page.get_by_role("button", name="Spara reglerna")).to_be_visible()
        assert await axe_violations(page) == []
        # Each showing was logged (chosen, after the record, after the withdrawal); a
        # change of language shows what is there and reads nothing again.
        assert before >= 3 and await consent_reads() == before
        assert await _missing(page) == []
        errors: list[str] = page.errors  # type: ignore[attr-defined]
        assert errors and all("422" in e for e in errors), errors  # the refused save only
        await context.close()
