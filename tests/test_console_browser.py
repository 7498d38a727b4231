"""The operator console in a real browser (Debian's Chromium, driven by Playwright):
sign in, see a press appear at the top of the queue without a reload, acknowledge it;
the dispatch service stopped under a connected console exits at once, the console says
it lost the connection, and it is live again when the service is back on its port."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from cloud import CloudSettings
from gateway import Gateway

from .browser import sign_in
from .conftest import RunningCloud, publish, seed_cloud
from .servers import DispatchProcess, Mosquitto, cloud_broker, cloud_env

pytestmark = pytest.mark.e2e


async def test_console_shows_alarms_live_most_urgent_first_and_acknowledges(
    sqlite_cloud: RunningCloud,
    gateway: Gateway,
    mosquitto: Mosquitto,
    browser: Browser,
    tmp_path: Path,
) -> None:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(page, sqlite_cloud.url, "anna", "anna-pass")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await expect(page.locator("#login")).to_be_hidden()
    await expect(page.locator("#empty")).to_be_visible()

    await publish(
        mosquitto.port,
        "zigbee2mqtt/front_door_lock",
        json.dumps({"lock_state": "not_fully_locked"}),
    )
    await expect(page.locator("#alarms tr")).to_have_count(1, timeout=10_000)
    await publish(
        mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "emergency"})
    )
    rows = page.locator("#alarms tr")
    await expect(rows).to_have_count(2, timeout=10_000)
    # The later but critical press is on top of the earlier technical alarm.
    await expect(rows.nth(0)).to_contain_text("Alarm button pressed")
    await expect(rows.nth(0)).to_contain_text("critical")
    await expect(rows.nth(0)).to_contain_text("home-12 / res-12")
    await expect(rows.nth(1)).to_contain_text("Lock jammed")
    await page.screenshot(path=str(tmp_path / "queue.png"))

    await page.reload()  # the session survives a reload, and the queue is reloaded
    await expect(rows).to_have_count(2, timeout=10_000)
    await rows.nth(0).get_by_role("button", name="Acknowledge").click()
    await expect(rows.nth(0)).to_contain_text("acknowledged by anna", timeout=10_000)
    await expect(rows.nth(0).get_by_role("button", name="Acknowledge")).to_have_count(0)
    assert errors == []


async def test_console_refuses_a_wrong_password(
    sqlite_cloud: RunningCloud, browser: Browser
) -> None:
    page = await browser.new_page()
    await sign_in(page, sqlite_cloud.url, "anna", "not-her-password")
    await expect(page.locator("#login-error")).to_have_text("Wrong username or password")
    await expect(page.locator("#queue")).to_be_hidden()


async def test_a_technician_cannot_open_the_queue(
    sqlite_cloud: RunningCloud, browser: Browser
) -> None:
    page = await browser.new_page()
    await sign_in(page, sqlite_cloud.url, "tove", "tove-pass")
    await expect(page.locator("#login-error")).to_contain_text("cannot open the alarm queue")
    await expect(page.locator("#queue")).to_be_hidden()
    await expect(page.locator("#status")).to_have_text("signed out")


async def test_an_operator_takes_an_alarm_from_claim_to_resolved_and_a_colleague_sees_it(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, browser: Browser
) -> None:
    anna, bert = await browser.new_page(), await browser.new_page()
    errors: list[str] = []
    for page in (anna, bert):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(anna, sqlite_cloud.url, "anna", "anna-pass")
    await sign_in(bert, sqlite_cloud.url, "bert", "bert-pass")
    for page in (anna, bert):
        await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", json.dumps({"action": "sos"}))
    row = anna.locator("#alarms tr").first
    await expect(row).to_contain_text("new", timeout=10_000)

    await row.get_by_role("button", name="Claim").click()
    await expect(row).to_contain_text("claimed by anna", timeout=10_000)
    # Bert's queue shows who has it, live; if he tries anyway he is told.
    bert_row = bert.locator("#alarms tr").first
    await expect(bert_row).to_contain_text("claimed by anna", timeout=10_000)
    await expect(bert_row).to_contain_text("anna has it")
    await expect(bert_row).to_have_class(re.compile(r"\btheirs\b"))
    await expect(row).not_to_have_class(re.compile(r"\btheirs\b"))
    await bert_row.get_by_role("button", name="Acknowledge").click()
    await expect(bert.locator("#status")).to_contain_text("claimed by anna")

    # The details: who lives there and how to get in.
    await row.get_by_role("cell", name="Alarm button pressed").click()
    detail = anna.locator("#detail")
    await expect(detail).to_contain_text("Ingrid", timeout=10_000)
    await expect(detail).to_contain_text("Storgatan 12, Malmö")
    await expect(detail).to_contain_text("key safe by the door, 4711")
    await expect(detail).to_contain_text("Lena (daughter), +46 70 123 45 67")
    await expect(detail).to_contain_text("claimed by anna")

    await row.get_by_role("button", name="Acknowledge").click()
    await expect(row).to_contain_text("acknowledged by anna", timeout=10_000)
    await row.get_by_role("button", name="Assign…").click()
    await row.get_by_label("Staff member").select_option("sara")
    await row.get_by_role("button", name="Send").click()
    await expect(row).to_contain_text("assigned to sara", timeout=10_000)
    await expect(detail).to_contain_text("assigned by anna (sara)")
    await row.get_by_role("button", name="Resolve…").click()
    await row.get_by_label("Outcome").select_option("false_alarm")
    await row.get_by_label("Note").fill("pressed while dressing")
    await row.get_by_role("button", name="Resolve", exact=True).click()
    await expect(anna.locator("#alarms tr")).to_have_count(0, timeout=10_000)
    await expect(anna.locator("#empty")).to_be_visible()
    await expect(bert.locator("#alarms tr")).to_have_count(0, timeout=10_000)
    await expect(detail).to_contain_text("resolved by anna (false alarm, pressed while dressing)")
    assert errors == []


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_the_service_stops_at_once_under_a_live_console_which_says_so_and_comes_back(
    stop: signal.Signals, mosquitto: Mosquitto, browser: Browser, tmp_path: Path
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    await seed_cloud(CloudSettings(database_url=database, **cloud_broker(mosquitto.port)))
    env = {
        "TRYGG_DATABASE_URL": database,
        **cloud_env(mosquitto.port),
        "TRYGG_MQTT_CLIENT_ID": f"dispatch-{tmp_path.name}",
    }
    dispatch = DispatchProcess(tmp_path, env)
    dispatch.start()
    try:
        await dispatch.ready()
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in(page, dispatch.url, "anna", "anna-pass")
        status, queue = page.locator("#status"), page.locator("#queue")
        await expect(status).to_have_text("live", timeout=10_000)  # its stream is open

        os.kill(dispatch.pid, stop)
        took = await dispatch.exited_within(2.0)
        assert dispatch.returncode() == 0, dispatch.text()
        await expect(status).to_have_text("connection lost, reconnecting…", timeout=5_000)
        await expect(queue).to_have_class(re.compile(r"\bstale\b"))
        await page.screenshot(path=str(tmp_path / f"lost-{stop.name}.png"))

        dispatch.start()  # on the same port, at once
        await dispatch.ready()
        await expect(status).to_have_text("live", timeout=15_000)
        await expect(queue).not_to_have_class(re.compile(r"\bstale\b"))
        await page.screenshot(path=str(tmp_path / f"back-{stop.name}.png"))
        assert errors == []
    finally:
        dispatch.stop()
    log = dispatch.text()
    assert "Traceback" not in log and "address already in use" not in log, log
    assert took < 2.0
