"""The staff page as a home-care worker uses it, on a phone-sized Chromium (360 x 740,
touch): Swedish on a Swedish phone and English otherwise, installable (a manifest and a
service worker that keeps only the page's shell, never an API answer), light for sunlight
and dark for the night, with axe-core on each view in both; an alarm an operator assigns
arrives live with a sound and a buzz, and the worker accepts it, opens the door (the
simulator's lock obeys), marks on site and resolves it while the operator's queue shows
each step; a jammed or silent lock and a refusal each said in words; the whole path by
keyboard; and a Web Push message shown as a notification that names no resident."""

from __future__ import annotations

import contextlib
import json
import re
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    async_playwright,
    expect,
)
from sqlalchemy import update

from cloud.admin import admin_session
from cloud.db import Home, Organisation, User
from cloud.lifecycle import AlarmState, Outcome
from devices import Priority
from devices.catalog import EVENT_KINDS
from devices.codecs.zigbee2mqtt import LOCK_STATES
from gateway import Gateway

from .browser import CHROMIUM, CHROMIUM_ARGS, axe_violations, sign_in
from .conftest import RunningCloud, publish
from .servers import Mosquitto, wait_until
from .test_commands_e2e import SCENARIO, centre

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "dashboards" / "staff"
CATALOGS = {lang: json.loads((PAGE / "i18n" / f"{lang}.json").read_text()) for lang in ("sv", "en")}
# Looked at by people, and copied into docs/screenshots for the README.
SHOTS = ROOT / ".cache" / "screenshots"
PHONE: dict[str, Any] = {
    "viewport": {"width": 360, "height": 740},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
    "timezone_id": "Europe/Stockholm",
}
# Why the dispatch service refuses to open a door ({"reason": ...}): each has words.
REFUSALS = (
    "not_assigned",
    "alarm_resolved",
    "visit_not_begun",
    "visit_ended",
    "not_your_visit",
    "wrong_home",
    "no_consent",
    "no_such_lock",
    "commands_off",
    "lock_unavailable",
    "no_reason_given",
)
# Records what the page played and how it buzzed, as a person would hear and feel it.
OBSERVE = """
window.__played = [];
const play = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function () {
  window.__played.push(this.id);
  return play.call(this);
};
window.__vibrated = [];
navigator.vibrate = (pattern) => { window.__vibrated.push(pattern); return true; };
"""


def _keys_named_in(text: str) -> set[str]:
    spaces = "ui|action|door|lock|push|refusal"
    return set(re.findall(rf"""["'`]((?:{spaces})\.[a-z0-9_]+)["'`]""", text))


def test_both_catalogs_hold_every_key_the_page_uses_and_every_code_it_shows() -> None:
    sv, en = CATALOGS["sv"], CATALOGS["en"]
    assert set(sv) == set(en), sorted(set(sv) ^ set(en))
    assert all(isinstance(v, str) and v.strip() for c in (sv, en) for v in c.values())
    script = (PAGE / "app.js").read_text() + (PAGE / "sw.js").read_text()
    page = (PAGE / "index.html").read_text()
    used = _keys_named_in(script)
    used |= set(re.findall(r'data-i18n(?:-label)?="([^"]+)"', page))
    assert len(used) > 50, "the page names almost no message"
    assert used - set(en) == set()
    # Codes the API sends are shown through the catalog: each one has its words.
    codes = {f"kind.{k}" for k in EVENT_KINDS}
    codes |= {f"state.{s.value}" for s in AlarmState}
    codes |= {f"priority.{p.value}" for p in Priority}
    codes |= {f"outcome.{o.value}" for o in Outcome}
    doors = (ROOT / "cloud" / "doors.py").read_text()
    given = set(re.findall(r'DoorRefused\(\s*\d+,\s*"([a-z_]+)"', doors))
    given |= set(re.findall(r'reason = "([a-z_]+)"', doors))
    assert given and given <= set(REFUSALS), given - set(REFUSALS)
    codes |= {f"refusal.{r}" for r in REFUSALS}
    codes |= {f"lock.{s}" for s in LOCK_STATES | {"jammed"}}
    assert codes - set(en) == set()
    # Placeholders agree between the languages.
    for key, text in en.items():
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", sv[key])), key
    # The words the issue asks for, as a person reads them.
    assert (en["door.open"], sv["door.open"]) == ("Door open", "Dörren är öppen")
    assert en["door.jammed"] == "Lock jammed: use the key safe"
    assert en["door.no_answer"] == "No answer from the lock"


def test_the_page_offers_the_outcomes_the_service_records() -> None:
    script = (PAGE / "app.js").read_text()
    listed = re.search(r"const OUTCOMES = \[([^\]]*)\]", script)
    assert listed, "app.js lists no outcomes"
    offered = re.findall(r'"([a-z_]+)"', listed.group(1))
    # All but "restored", which only the service itself records (a device came back).
    assert sorted(offered) == sorted(o.value for o in Outcome if o is not Outcome.RESTORED)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_the_manifest_names_the_app_its_icons_and_a_scope_the_worker_covers() -> None:
    manifest = json.loads((PAGE / "manifest.webmanifest").read_text())
    assert manifest["start_url"] == manifest["scope"] == "/staff/"
    assert manifest["display"] == "standalone"
    assert manifest["name"] and manifest["short_name"]
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["theme_color"])
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["background_color"])
    sizes = set()
    for icon in manifest["icons"]:
        path = PAGE / icon["src"]
        assert path.exists(), icon
        if icon["type"] == "image/png":
            width, height = _png_size(path)
            assert icon["sizes"] == f"{width}x{height}", icon
            sizes.add(width)
    assert {192, 512} <= sizes  # what the browsers ask for to install
    assert any(i.get("purpose") == "maskable" for i in manifest["icons"])


def test_the_worker_keeps_the_shell_and_nothing_else() -> None:
    worker = (PAGE / "sw.js").read_text()
    shell = re.search(r"const SHELL = \[([^\]]*)\]", worker)
    assert shell, "sw.js lists no shell"
    files = re.findall(r'"([^"]+)"', shell.group(1))
    for name in files:
        assert name == "./" or (PAGE / name).is_file(), name
        assert "api" not in name
    # Every file of the page is in it (a page that opens without its catalog is no page).
    on_disk = {
        str(p.relative_to(PAGE)) for p in PAGE.rglob("*") if p.is_file() and p.name != "sw.js"
    }
    assert on_disk <= set(files), on_disk - set(files)
    # It keeps only what it matched against that list, and only GET.
    assert "shellUrls.has(url.href)" in worker and 'request.method !== "GET"' in worker


async def test_the_page_and_its_worker_are_served_under_staff_with_the_policy(
    sqlite_cloud: RunningCloud,
) -> None:
    async with sqlite_cloud.client() as http:
        bare = await http.get("/staff")
        assert bare.status_code in (307, 308) and bare.headers["location"].endswith("/staff/")
        page = await http.get("/staff/")
        worker = await http.get("/staff/sw.js")
        manifest = await http.get("/staff/manifest.webmanifest")
        icon = await http.get("/staff/icon-192.png")
        missing = await http.get("/staff/no-such-file.js")
    assert page.status_code == 200 and 'rel="manifest"' in page.text
    assert worker.status_code == 200
    assert worker.headers["content-type"].startswith("text/javascript")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    assert icon.headers["content-type"] == "image/png"
    assert missing.status_code == 404
    for response in (page, worker, manifest):
        policy = response.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        # What the page needs: its own scripts, worker and manifest; nothing from elsewhere.
        for name in ("script-src", "worker-src", "manifest-src", "connect-src", "media-src"):
            assert directives[name] == "'self'", (name, policy)
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["x-frame-options"] == "DENY"


# -- the browser ---------------------------------------------------------------------------


# The page asks /api/v1/me whether its cookie still signs someone in: a 401 there, before
# signing in, is the answer "no" (and Chromium logs it as a failed load).
def _failed(response: Response) -> bool:
    probe = response.status == 401 and response.url.endswith("/api/v1/me")
    return response.status >= 400 and not probe


def _unexpected_console(message: ConsoleMessage) -> bool:
    probe = message.text.endswith("the server responded with a status of 401 (Unauthorized)")
    return message.type == "error" and not probe


def _watched(page: Page) -> Page:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if _unexpected_console(m) else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if _failed(r) else None)
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def _phone(
    browser: Browser, locale: str = "en-GB", **options: Any
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(locale=locale, **PHONE, **options)
    return context, _watched(await context.new_page())


@contextlib.asynccontextmanager
async def _own_phone(profile: Path, locale: str) -> AsyncIterator[tuple[BrowserContext, Page]]:
    """A phone with a profile of its own: a browser context that is not incognito, the
    only kind in which Chromium considers installing a web app."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: scripts/test.sh installs it")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, locale=locale, **PHONE
        )
        try:
            yield context, _watched(await context.new_page())
        finally:
            await context.close()


async def _sign_in(page: Page, url: str, username: str, password: str, sv: bool = False) -> None:
    await page.goto(f"{url}/staff/")
    await page.get_by_label("Användarnamn" if sv else "Username").fill(username)
    await page.get_by_label("Lösenord" if sv else "Password").fill(password)
    await page.get_by_role("button", name="Logga in" if sv else "Sign in").click()


async def _missing(page: Page) -> list[str]:
    missing: list[str] = await page.evaluate("[...window.trygg.missing]")
    return missing


async def _both_themes_pass_axe(page: Page, name: str | None = None) -> None:
    """axe-core on the view as it is, in the light theme and the dark; a screenshot of each."""
    for scheme in ("light", "dark"):
        await page.emulate_media(color_scheme=scheme)
        assert await axe_violations(page) == [], scheme
        if name:
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SHOTS / f"staff-{name}-{scheme}.png"))
    await page.emulate_media(color_scheme="light")


async def _worker_active(page: Page) -> bool:
    state = await page.evaluate(
        "navigator.serviceWorker.getRegistration().then(r => r && r.active && r.active.state)"
    )
    return bool(state == "activated")


async def test_a_swedish_phone_gets_the_page_in_swedish_and_can_install_it(
    sqlite_cloud: RunningCloud, tmp_path: Path
) -> None:
    async with _own_phone(tmp_path / "profile", "sv-SE") as (context, page):
        await _swedish_phone(sqlite_cloud, context, page)


async def _swedish_phone(cloud: RunningCloud, context: BrowserContext, page: Page) -> None:
    sqlite_cloud = cloud
    await page.goto(f"{sqlite_cloud.url}/staff/")
    await expect(page.get_by_role("button", name="Logga in")).to_be_visible()
    await expect(page.locator("html")).to_have_attribute("lang", "sv")
    await expect(page).to_have_title("Trygg — hemtjänst")
    await _both_themes_pass_axe(page, "sign-in-sv")

    # Installable: the browser finds the manifest, its icons and a worker for the page.
    await wait_until(lambda: _worker_active(page), 10)
    cdp = await context.new_cdp_session(page)
    manifest = await cdp.send("Page.getAppManifest")
    assert manifest["url"].endswith("/staff/manifest.webmanifest")
    assert not manifest.get("errors"), manifest["errors"]
    installability = await cdp.send("Page.getInstallabilityErrors")
    assert installability["installabilityErrors"] == []

    # Every button, field and tab is big enough for a thumb.
    await _sign_in(page, sqlite_cloud.url, "sara", "sara-pass", sv=True)
    await expect(page.get_by_role("heading", name="Mina larm")).to_be_visible(timeout=10_000)
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await _targets_are_large(page)
    await _both_themes_pass_axe(page, "alarms-empty-sv")
    await page.get_by_role("link", name="Inställningar").click()
    await expect(page.get_by_role("heading", name="Inställningar")).to_be_focused()
    await _targets_are_large(page)
    await _both_themes_pass_axe(page, "settings-sv")

    # The switch: English, kept over a reload; the dark theme chosen by hand, kept too.
    await page.get_by_role("button", name="In English").click()
    await expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    await page.get_by_label("Theme").select_option("dark")
    await page.reload()
    await expect(page.get_by_role("heading", name="Settings")).to_be_visible(timeout=10_000)
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    assert await axe_violations(page) == []

    # The worker kept the shell, and nothing the API said.
    kept: list[str] = await page.evaluate(
        "caches.keys().then(ns => Promise.all(ns.map(n => caches.open(n)"
        ".then(c => c.keys()).then(rs => rs.map(r => r.url))))).then(l => l.flat())"
    )
    assert f"{sqlite_cloud.url}/staff/app.js" in kept
    assert f"{sqlite_cloud.url}/staff/i18n/sv.json" in kept
    assert not [u for u in kept if "/api/" in u], kept
    assert await _missing(page) == []
    assert page.errors == []  # type: ignore[attr-defined]


async def _targets_are_large(page: Page) -> None:
    """Every visible button, link, field and switch is at least 48 x 48 px (a link inside
    a sentence, by its height)."""
    sizes: list[dict[str, Any]] = await page.evaluate(
        """[...document.querySelectorAll('button, a[href], input, select, textarea')]
        .filter(e => e.offsetParent !== null)
        .map(e => {
          const target = e.matches('input[type=checkbox]') ? e.closest('label') : e;
          const r = target.getBoundingClientRect();
          return {what: e.outerHTML.slice(0, 60), w: r.width, h: r.height};
        })"""
    )
    assert sizes
    small = [s for s in sizes if s["h"] < 48 or s["w"] < 48]
    assert small == []


# -- the night's story ------------------------------------------------------------------------

# The signed-commands rig's front doors (one obeys, one over BLE, one jams), Ingrid's
# pendant, and a lock that takes a command and does nothing.
NIGHT = (
    SCENARIO
    + """
[[device]]
id = "pendant-12"
type = "alarm_button"
transport = "zigbee2mqtt"
address = "flat-12/pendant"
home = "home-12"
resident = "res-12"
[[device]]
id = "quiet-lock"
type = "digital_lock"
transport = "zigbee2mqtt"
address = "quiet_lock"
home = "home-12"
lock = "silent"
"""
)
PRESS = "zigbee2mqtt/flat-12/pendant"


async def _played(page: Page) -> list[str]:
    played: list[str] = await page.evaluate("window.__played")
    return played


async def _vibrated(page: Page) -> list[Any]:
    vibrated: list[Any] = await page.evaluate("window.__vibrated")
    return vibrated


async def _press(port: int, n: int = 0) -> None:
    """Ingrid presses her pendant (home-12); a gateway drops a frame it has just had, so
    each press differs."""
    await publish(port, PRESS, json.dumps({"action": "sos", "linkquality": 40 + n}))


async def _consent_to_locks(cloud: RunningCloud) -> None:
    async with await cloud.authed("stina") as http:  # a supervisor records it
        res = await http.post(
            "/api/v1/residents/res-12/consents",
            json={"service": "lock", "given_by": "resident"},
        )
        assert res.status_code in (200, 201), res.text


async def _operator_console(browser: Browser, cloud: RunningCloud) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(locale="en-GB", timezone_id="Europe/Stockholm")
    page = _watched(await context.new_page())
    await sign_in(page, f"{cloud.url}/console/", "anna", "anna-pass")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    return context, page


async def _shot(page: Page, name: str, full: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"staff-{name}.png"), full_page=full)


async def test_the_night_patrol_gets_the_alarm_opens_the_door_and_resolves_it(
    mosquitto: Mosquitto, tmp_path: Path, browser: Browser
) -> None:
    async with centre(tmp_path, mosquitto, NIGHT) as c:
        operator_context, console = await _operator_console(browser, c.cloud)
        context, phone = await _phone(browser)
        await context.add_init_script(OBSERVE)
        await _sign_in(phone, c.cloud.url, "sara", "sara-pass")
        await expect(phone.get_by_role("heading", name="My alarms")).to_be_visible(timeout=10_000)
        await expect(phone.locator("#status")).to_have_text("live", timeout=10_000)
        await expect(phone.locator("#alarms-empty")).to_be_visible()

        # The operator takes the press and sends Sara.
        await _press(mosquitto.port)
        row = console.locator("#alarms tr", has_text="Alarm button pressed")
        await expect(row).to_be_visible(timeout=10_000)
        # Each step once the row shows the one before: a click on a row being drawn
        # again lands on the old one and does nothing.
        await row.get_by_role("button", name="Claim").click()
        await expect(row).to_contain_text("claimed by anna", timeout=10_000)
        await row.get_by_role("button", name="Acknowledge").click()
        await expect(row).to_contain_text("acknowledged", timeout=10_000)
        await row.get_by_role("button", name="Assign…").click()
        await row.get_by_label("Staff member").select_option("sara")
        await row.get_by_role("button", name="Send").click()
        await expect(row).to_contain_text("assigned to sara", timeout=10_000)
        await _shot(console, "operator-assigned")

        # On her phone, live: the alarm, a sound and a buzz.
        card = phone.locator("#alarm-list a.card")
        await expect(card).to_have_count(1, timeout=10_000)
        await expect(card).to_contain_text("Alarm button pressed")
        await expect(card).to_contain_text("Storgatan 12, Malmö")
        await expect(card.locator(".waiting")).to_have_text(re.compile(r"^\d+:\d\d$"))
        await expect(phone.locator("#banner")).to_contain_text("New alarm for you")
        await wait_until(lambda: _played(phone), 10)
        assert await _played(phone) == ["chime"]
        assert len(await _vibrated(phone)) == 1
        await expect(phone).to_have_title("(1) Trygg — home care")
        await _both_themes_pass_axe(phone, "assigned")

        # The card: who, where (a link for the maps app), the key safe, whom to call.
        await card.click()
        view = phone.locator("#view-alarm")
        await expect(view.locator(".resident h3")).to_have_text("Ingrid, 90 years", timeout=10_000)
        maps = view.get_by_role("link", name=re.compile("Storgatan 12, Malmö: open in the maps"))
        await expect(maps).to_have_attribute("href", re.compile(r"^geo:"))
        await expect(view).to_contain_text("key safe by the door, 4711")
        call = view.get_by_role("link", name=re.compile("Call Lena"))
        await expect(call).to_have_attribute("href", "tel:+46701234567")
        await _targets_are_large(phone)
        await _both_themes_pass_axe(phone, "alarm")
        await _shot(phone, "alarm-full", full=True)

        # Accepted: the doors appear. Without the resident's consent the door stays shut,
        # and the page says why.
        await view.get_by_role("button", name="Accept").click()
        await expect(view.locator(".summary")).to_contain_text("Accepted: on your way")
        async with await c.cloud.authed("anna") as http:  # the operators know she is going
            (going,) = [
                a for a in (await http.get("/api/v1/alarms")).json() if a["kind"] == "alarm_button"
            ]
        assert (going["assigned_to"], going["accepted_at"] is not None) == ("sara", True)
        result = view.locator('.door[data-lock="door-lock"] .door-result')
        await view.get_by_role("button", name="Open door: door-lock").click()
        await expect(result).to_have_text(
            "Refused: the resident has not consented to digital locks", timeout=10_000
        )
        assert c.run.zigbee_state("door-lock")["lock_state"] == "locked"
        _expected_refusals(phone)
        await _consent_to_locks(c.cloud)

        # With it, the lock obeys, and the page says so within a second or two.
        # (How fast is measured by `make bench`: unlock_tap_to_confirmed_ms.)
        await view.get_by_role("button", name="Open door: door-lock").click()
        await expect(result).to_have_text("Door open", timeout=10_000)
        assert c.run.zigbee_state("door-lock")["lock_state"] == "unlocked"
        await expect(result).to_have_class(re.compile(r"\bok\b"))
        await _both_themes_pass_axe(phone, "door-open")

        # A lock that jams: use the key safe, and here is what it says.
        await view.get_by_role("button", name="Open door: stuck-lock").click()
        result = view.locator('.door[data-lock="stuck-lock"] .door-result')
        await expect(result).to_contain_text("Lock jammed: use the key safe", timeout=10_000)
        await expect(result).to_contain_text("Key safe: key safe by the door, 4711")
        await _shot(phone, "door-jammed-light")

        # On site, and the operator sees it.
        await view.get_by_role("button", name="On site").click()
        await expect(view.locator(".summary")).to_contain_text("On site", timeout=10_000)
        await expect(row).to_contain_text("on site", timeout=10_000)
        await _shot(console, "operator-on-site")
        # The door's line still says what the lock confirmed to her.
        door_line = view.locator('.door[data-lock="door-lock"] .lock-name')
        await expect(door_line).to_have_text("door-lock: unlocked")
        await _both_themes_pass_axe(phone, "on-site")

        # A lock that takes the command and does nothing: said as much.
        await view.get_by_role("button", name="Open door: quiet-lock").click()
        result = view.locator('.door[data-lock="quiet-lock"] .door-result')
        await expect(result).to_have_text("No answer from the lock", timeout=15_000)
        await _shot(phone, "door-no-answer-light")

        # Resolved with an outcome and a note: off her list, and out of the queue.
        await view.get_by_role("button", name="Resolve…").click()
        await view.get_by_label("Outcome").select_option("help_given")
        await view.get_by_label("Note (optional)").fill("helped up from the floor, unhurt")
        await _both_themes_pass_axe(phone, "resolve")
        await view.get_by_role("button", name="Resolve", exact=True).click()
        await expect(phone.get_by_role("heading", name="My alarms")).to_be_visible()
        await expect(phone.locator("#banner")).to_have_text("Alarm resolved. Thank you.")
        await expect(phone.locator("#alarms-empty")).to_be_visible()
        await expect(row).to_have_count(0, timeout=10_000)
        await _shot(phone, "resolved-light")
        await _shot(console, "operator-resolved")
        async with await c.cloud.authed("stina") as http:
            (done,) = [
                a
                for a in (await http.get("/api/v1/alarms", params={"state": "resolved"})).json()
                if a["kind"] == "alarm_button"
            ]
        assert (done["outcome"], done["resolution_note"], done["resolved_by"]) == (
            "help_given",
            "helped up from the floor, unhurt",
            "sara",
        )
        assert await _played(phone) == ["chime"]  # her own steps made no sound
        assert await _missing(phone) == []
        assert phone.errors == []  # type: ignore[attr-defined]
        assert console.errors == []  # type: ignore[attr-defined]
        await context.close()
        await operator_context.close()


def _expected_refusals(page: Page) -> None:
    """A refusal (a door, a card outside its window) is a 403 the page asked for and
    explained, and Chromium logs."""
    errors: list[str] = page.errors  # type: ignore[attr-defined]
    expected = r"^403 .*/api/v1/my/(locks|visits)/|status of 403 \(Forbidden\)$"
    assert errors and all(re.search(expected, e) for e in errors), errors
    errors.clear()


async def _assign(cloud: RunningCloud, staff: str = "sara") -> int:
    """The operator claims the waiting press and sends ``staff`` (through the API)."""
    async with await cloud.authed("anna") as http:

        async def waiting() -> int | None:
            alarms = (await http.get("/api/v1/alarms", params={"state": "new"})).json()
            return int(alarms[0]["id"]) if alarms else None

        await wait_until(waiting)
        alarm_id = await waiting()
        for step, body in (("claim", None), ("acknowledge", None), ("assign", {"staff": staff})):
            res = await http.post(f"/api/v1/alarms/{alarm_id}/{step}", json=body)
            assert res.status_code == 200, res.text
    assert alarm_id is not None
    return alarm_id


async def _focused(page: Page) -> str:
    text: str = await page.evaluate(
        "(document.activeElement.getAttribute('aria-label')"
        " || document.activeElement.textContent).trim()"
    )
    return text


async def _tab_to(page: Page, name: str, limit: int = 25) -> None:
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if (await _focused(page)).startswith(name):
            return
    raise AssertionError(f"Tab never reached {name!r}")


async def test_the_whole_path_by_keyboard_only_and_a_decline_with_its_reason(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    context, phone = await _phone(browser)
    await _sign_in(phone, sqlite_cloud.url, "sara", "sara-pass")
    await expect(phone.locator("#status")).to_have_text("live", timeout=10_000)
    await _press(mosquitto.port)
    first = await _assign(sqlite_cloud)
    await expect(phone.locator("#alarm-list a.card")).to_have_count(1, timeout=10_000)

    # Declined, with a reason: it goes back to the operators, escalated.
    await phone.locator("body").focus()
    await _tab_to(phone, "Alarm button pressed")
    await phone.keyboard.press("Enter")
    heading = phone.locator("#alarm-heading")
    await expect(heading).to_be_focused(timeout=10_000)
    await expect(phone.locator("#view-alarm .resident")).to_be_visible(timeout=10_000)
    await _tab_to(phone, "Accept")
    await phone.keyboard.press("Tab")
    assert await _focused(phone) == "Decline…"
    await phone.keyboard.press("Enter")
    await expect(phone.get_by_label("Why you cannot go")).to_be_focused()
    await phone.keyboard.type("on another alarm across town")
    await phone.keyboard.press("Enter")
    await expect(phone.locator("#banner")).to_have_text(
        "Alarm declined: it is back with the alarm centre.", timeout=10_000
    )
    await expect(phone.locator("#alarms-empty")).to_be_visible()
    async with await sqlite_cloud.authed("anna") as http:
        declined = (await http.get(f"/api/v1/alarms/{first}")).json()["alarm"]
    assert (declined["state"], declined["assigned_to"], declined["escalation"]) == (
        "acknowledged",
        None,
        "declined",
    )

    # Sent again: accepted, on site and resolved, never touching the screen.
    async with await sqlite_cloud.authed("anna") as http:
        res = await http.post(f"/api/v1/alarms/{first}/assign", json={"staff": "sara"})
        assert res.status_code == 200, res.text
    await expect(phone.locator("#alarm-list a.card")).to_have_count(1, timeout=10_000)
    await phone.locator("body").focus()
    await _tab_to(phone, "Alarm button pressed")
    await phone.keyboard.press("Enter")
    await expect(heading).to_be_focused(timeout=10_000)
    await expect(phone.locator("#view-alarm .resident")).to_be_visible(timeout=10_000)
    await _tab_to(phone, "Accept")
    await phone.keyboard.press("Enter")
    await expect(phone.locator("#view-alarm .summary")).to_contain_text("Accepted")
    # The door first (without the resident's consent it stays shut, and the page says so).
    await expect(phone.get_by_role("button", name="Open door")).to_be_focused()
    await phone.keyboard.press("Enter")
    await expect(phone.locator("#view-alarm .door-result")).to_have_text(
        "Refused: the resident has not consented to digital locks", timeout=10_000
    )
    _expected_refusals(phone)
    await _tab_to(phone, "On site")
    await phone.keyboard.press("Enter")
    await expect(phone.locator("#view-alarm .summary")).to_contain_text("On site")
    await expect(phone.get_by_role("button", name="Open door")).to_be_focused()
    await _tab_to(phone, "Resolve…")
    await phone.keyboard.press("Enter")
    await expect(phone.get_by_label("Outcome")).to_be_focused()
    await phone.keyboard.press("Tab")
    await phone.keyboard.type("helped to bed")
    await phone.keyboard.press("Tab")
    assert await _focused(phone) == "Resolve"
    await phone.keyboard.press("Enter")
    await expect(phone.locator("#alarms-heading")).to_be_focused(timeout=10_000)
    await expect(phone.locator("#alarms-empty")).to_be_visible()
    async with await sqlite_cloud.authed("anna") as http:
        done = (await http.get(f"/api/v1/alarms/{first}")).json()["alarm"]
    assert (done["state"], done["outcome"], done["resolution_note"]) == (
        "resolved",
        "help_given",
        "helped to bed",
    )
    # The tabs, by keyboard too.
    await _tab_to(phone, "My day")
    await phone.keyboard.press("Enter")
    await expect(phone.locator("#day-heading")).to_be_focused()
    assert await _missing(phone) == []
    assert phone.errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_a_push_message_shows_a_notification_in_the_pages_language_naming_no_resident(
    sqlite_cloud: RunningCloud, browser: Browser
) -> None:
    context, page = await _phone(browser, "sv-SE")
    await context.grant_permissions(["notifications"])
    cdp = await context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(e["registrations"]),
    )
    await cdp.send("ServiceWorker.enable")
    await page.goto(f"{sqlite_cloud.url}/staff/")
    await wait_until(lambda: _worker_active(page), 10)
    (registration,) = {r["registrationId"] for r in registrations if not r["isDeleted"]}
    # What the dispatch service pushes (docs/staff.md, "Web Push"), as the browser's push
    # service would hand it to the worker.
    payload = {"type": "assigned", "alarm_id": 41, "kind": "fall", "priority": "critical"}
    payload["at"] = "2026-12-03T01:13:00Z"
    shown = (
        "navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns => ns.map("
        "n => ({title: n.title, body: n.body, tag: n.tag, data: n.data})))"
    )

    async def notified() -> list[dict[str, Any]]:
        notes: list[dict[str, Any]] = await page.evaluate(shown)
        return notes

    async def deliver(pushes: list[str], arrived: Any) -> None:
        """Hand the pushes to the worker until what they should show is shown. DevTools'
        delivery is fire and forget: on a busy machine Chromium can drop one while its
        worker starts, where a real push service would hand it again. Each push repeats
        the tag of its notification, so handing one twice still shows it once."""
        for _ in range(4):
            for data in pushes:
                message = {"origin": sqlite_cloud.url, "registrationId": registration}
                await cdp.send("ServiceWorker.deliverPushMessage", message | {"data": data})
            with contextlib.suppress(TimeoutError):
                await wait_until(arrived, 5)
                return
        raise AssertionError(f"the worker showed {await notified()} for {pushes}")

    await deliver([json.dumps(payload)], notified)
    assert await notified() == [
        {
            "title": "kritiskt: Fall upptäckt",
            "body": "Tilldelat dig 02:13. Tryck för att öppna.",
            "tag": "alarm-41",
            "data": {"alarm_id": 41},
        }
    ]
    # Garbage pushed still shows something plain (the browser insists), and nothing breaks.
    junk = ["not json", "null", "[]", json.dumps({"type": "assigned", "alarm_id": "x"})]
    junk.append(json.dumps(payload | {"alarm_id": 42, "at": "yesterday", "kind": 7}))
    # A good push after the garbage; every piece of garbage shares the one plain tag, so
    # three notifications remain whatever order the worker finishes them in.
    junk.append(json.dumps(payload | {"alarm_id": 43}))

    async def all_shown() -> bool:
        return {n["tag"] for n in await notified()} >= {"alarm-41", "alarm-43", "trygg"}

    await deliver(junk, all_shown)
    assert sorted(n["tag"] for n in await notified()) == ["alarm-41", "alarm-43", "trygg"]
    plain = [n for n in await notified() if n["tag"] == "trygg"]
    assert plain == [
        {"title": "Trygg", "body": "Något nytt till dig: öppna Trygg.", "tag": "trygg", "data": {}}
    ]
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()


async def _organisation(cloud: RunningCloud, **values: Any) -> None:
    async with admin_session(cloud.settings) as session:
        await session.execute(
            update(Organisation).where(Organisation.id == "org-a").values(**values)
        )
        await session.commit()


def _midday_zone() -> str:
    """A time zone in which it is about noon now, so that an hour either side is still
    today there, whenever the test runs (the day is the organisation's)."""
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12  # -12 .. 11 hours east of UTC
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


async def _plan(cloud: RunningCloud, start_min: int, end_min: int, note: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = {
        "home_id": "home-12",
        "resident_id": "res-12",
        "staff": "sara",
        "starts_at": (now + timedelta(minutes=start_min)).isoformat(),
        "ends_at": (now + timedelta(minutes=end_min)).isoformat(),
        "note": note,
    }
    async with await cloud.authed("stina") as http:
        res = await http.post("/api/v1/visits", json=body)
    assert res.status_code == 201, res.text
    visit: dict[str, Any] = res.json()
    return visit


async def test_my_day_lists_the_visits_and_offers_the_door_only_inside_a_visits_window(
    sqlite_cloud: RunningCloud, gateway: Gateway, browser: Browser
) -> None:
    zone = _midday_zone()
    await _organisation(sqlite_cloud, time_zone=zone, visit_margin_s=900)
    done = await _plan(sqlite_cloud, -70, -40, "shopping")
    now = await _plan(sqlite_cloud, -10, 20, "medicine and breakfast")
    later = await _plan(sqlite_cloud, 40, 70, "shower")
    async with await sqlite_cloud.authed("tove") as http:

        async def lock_reported() -> bool:
            devices = (await http.get("/api/v1/devices")).json()
            return "lock-1" in {d["id"] for d in devices}

        await wait_until(lock_reported)

    context, phone = await _phone(browser)
    await _sign_in(phone, sqlite_cloud.url, "sara", "sara-pass")
    await expect(phone.locator("#status")).to_have_text("live", timeout=10_000)
    await phone.get_by_role("link", name="My day").click()
    await expect(phone.locator("#day-heading")).to_be_focused()
    cards = phone.locator("#visit-list .card")
    await expect(cards).to_have_count(3, timeout=10_000)
    local = ZoneInfo(zone)

    def hhmm(iso: str) -> str:
        return datetime.fromisoformat(iso).astimezone(local).strftime("%H:%M")

    first, second, third = (cards.nth(i) for i in range(3))
    await expect(first).to_contain_text(f"{hhmm(done['starts_at'])}\u2013{hhmm(done['ends_at'])}")
    await expect(first).to_contain_text("Visit over")
    await expect(second).to_contain_text("medicine and breakfast")
    until = datetime.fromisoformat(now["ends_at"]) + timedelta(minutes=15)
    await expect(second).to_contain_text(f"Door can be opened until {hhmm(until.isoformat())}")
    opens = datetime.fromisoformat(later["starts_at"]) - timedelta(minutes=15)
    await expect(third).to_contain_text(f"Door can be opened from {hhmm(opens.isoformat())}")
    # The door only inside the window; the others have none, and no card to open.
    await expect(second.get_by_role("button", name="Open door")).to_be_visible()
    for closed in (first, third):
        await expect(closed.get_by_role("button")).to_have_count(0)
        await expect(closed.get_by_role("link")).to_have_count(0)
    await _targets_are_large(phone)
    await _both_themes_pass_axe(phone, "day")

    # Without the resident's consent, the door of the visit stays shut: said in words.
    await second.get_by_role("button", name="Open door").click()
    await expect(second.locator(".door-result")).to_have_text(
        "Refused: the resident has not consented to digital locks", timeout=10_000
    )
    _expected_refusals(phone)
    await _shot(phone, "day-refused-light")

    # The visit's card, inside its window: the resident, the key safe.
    await second.get_by_role("link", name=re.compile("Storgatan 12, Malmö: the visit")).click()
    view = phone.locator("#view-visit")
    await expect(view.locator("#visit-heading")).to_be_focused(timeout=10_000)
    await expect(view.locator(".resident h3")).to_have_text("Ingrid, 90 years")
    await expect(view).to_contain_text("key safe by the door, 4711")
    await expect(view.get_by_role("button", name="Open door")).to_be_visible()
    await _both_themes_pass_axe(phone, "visit")
    # She is packing for a week at her daughter's: away, so no inactivity alarm.
    await expect(view.locator(".away")).to_contain_text("The resident is at home.")
    await view.get_by_role("button", name="Set away").click()
    await expect(phone.locator("#banner")).to_have_text("Away mode set; the gateway is told.")
    await expect(view.locator(".away")).to_contain_text("The resident is away")
    await expect(view.get_by_role("button", name="Back home")).to_be_visible()
    async with admin_session(sqlite_cloud.settings) as session:
        home = await session.get(Home, ("org-a", "home-12"))
        assert home is not None and home.away and home.away_by == "sara"
    await _shot(phone, "visit-away-light")
    # A card outside its window is not shown, and the page says why.
    await phone.goto(f"{sqlite_cloud.url}/staff/#visit/{later['id']}")
    await expect(view).to_contain_text("opens only during its time", timeout=10_000)
    await expect(view.locator(".resident")).to_have_count(0)
    _expected_refusals(phone)
    assert await _missing(phone) == []
    assert phone.errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_the_night_patrol_takes_its_teams_alarm_quietly_and_goes(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    async with await sqlite_cloud.authed("adam") as http:
        team = (await http.post("/api/v1/teams", json={"name": "Night patrol"})).json()
        home = {"address": "Storgatan 12, Malmö", "key_safe": "key safe by the door, 4711"}
        res = await http.put("/api/v1/homes/home-12", json=home | {"team_id": team["id"]})
        assert res.status_code == 200, res.text
    async with admin_session(sqlite_cloud.settings) as session:
        await session.execute(
            update(User).where(User.username == "sara").values(team_id=team["id"])
        )
        await session.commit()
    await _organisation(sqlite_cloud, staff_may_take=True)

    context, phone = await _phone(browser)
    await context.add_init_script(OBSERVE)
    await _sign_in(phone, sqlite_cloud.url, "sara", "sara-pass")
    await expect(phone.locator("#status")).to_have_text("live", timeout=10_000)
    await _press(mosquitto.port)
    take = phone.get_by_role("button", name="Take: Alarm button pressed, Storgatan 12, Malmö")
    await expect(take).to_be_visible(timeout=10_000)
    await expect(phone.locator("#takeable-heading")).to_be_visible()
    await expect(phone.locator("#takeable-list")).to_contain_text("Nobody has it yet")
    await _both_themes_pass_axe(phone, "takeable")
    await take.click()
    # Hers now, accepted on the way: the card, and no alarm sounded for her own step.
    view = phone.locator("#view-alarm")
    await expect(view.locator(".summary")).to_contain_text("Accepted", timeout=10_000)
    await expect(view.locator(".resident h3")).to_have_text("Ingrid, 90 years")
    await expect(phone.locator("#alarm-list a.card")).to_have_count(1)
    await expect(phone.locator("#takeable-list li")).to_have_count(0)
    assert await _played(phone) == []
    async with await sqlite_cloud.authed("anna") as http:  # the operators see who went
        (alarm,) = (await http.get("/api/v1/alarms")).json()
    assert (alarm["state"], alarm["assigned_to"]) == ("assigned", "sara")
    assert await _missing(phone) == []
    assert phone.errors == []  # type: ignore[attr-defined]
    await context.close()
