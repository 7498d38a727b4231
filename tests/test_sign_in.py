"""Signing in as an alarm centre needs it: a throttle that slows an attacker down per name
and address without ever locking the operators on duty out, shared by every replica;
sessions that end when signed out (everywhere) or when a user is disabled, live streams
included; the consoles' HttpOnly cookie, refused cross-site; and TOTP with recovery
codes, each code good once, asked of the roles that need it."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import update

from cloud import CloudSettings
from cloud.db import Organisation, SignInThrottle
from cloud.signin import RULES

from .browser import axe_violations, sign_in
from .conftest import USERS, RunningCloud, run_cloud
from .servers import Mosquitto, cloud_broker, wait_until

pytestmark = pytest.mark.integration

DEFAULT_ROLES = CloudSettings.model_fields["second_factor_roles"].default


def form(username: str, password: str | None = None, code: str | None = None) -> dict[str, str]:
    body = {"username": username, "password": password or USERS[username][1]}
    return body | ({"code": code} if code else {})


async def _sign_in(http: httpx.AsyncClient, username: str, **kw: str) -> httpx.Response:
    return await http.post("/api/v1/auth/token", data=form(username, **kw))


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@contextlib.asynccontextmanager
async def cloud_with(
    mosquitto: Mosquitto, tmp_path: Path, name: str = "a", **settings: object
) -> AsyncIterator[RunningCloud]:
    """A dispatch service (a replica, given another ``name``) on one shared database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    config = CloudSettings(
        database_url=url,
        **cloud_broker(mosquitto.port) | {"mqtt_client_id": f"sign-in-{name}"},
        **settings,  # type: ignore[arg-type]
    )
    async with run_cloud(config) as running:
        yield running


# -- the throttle -------------------------------------------------------------------------


async def test_wrong_passwords_slow_a_name_down_more_and_more_but_never_its_colleagues(
    sqlite_cloud: RunningCloud,
) -> None:
    cloud = sqlite_cloud
    free = RULES["pair"].free
    async with cloud.client() as http:
        for _ in range(free):
            assert (await _sign_in(http, "anna", password="guess")).status_code == 401
        assert (await _sign_in(http, "anna", password="guess")).status_code == 401
        # Now the name is told it waits, and for how long, even with the right password.
        refused = await _sign_in(http, "anna")
        assert refused.status_code == 429
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= RULES["pair"].first_delay_s
        assert refused.json()["detail"] == (
            f"Too many failed sign-ins for this name: try again in {wait} s"
        )
        # A colleague at the same address signs in as ever.
        assert (await _sign_in(http, "bert")).status_code == 200

        # Each further failure doubles the wait (the test moves the block's end instead
        # of waiting for it).
        async def unblock() -> None:
            async with cloud.app.state.services.sessions() as db:
                await db.execute(
                    update(SignInThrottle).values(blocked_until=datetime.now(UTC) - timedelta(1))
                )
                await db.commit()

        waits = []
        for _ in range(3):
            await unblock()
            assert (await _sign_in(http, "anna", password="guess")).status_code == 401
            waits.append(int((await _sign_in(http, "anna")).headers["Retry-After"]))
        assert waits == [4, 8, 16]
        # Once the wait is over, the right password works and clears the name's count.
        await unblock()
        assert (await _sign_in(http, "anna")).status_code == 200
        assert (await _sign_in(http, "anna", password="guess")).status_code == 401
        assert (await _sign_in(http, "anna")).status_code == 200


async def test_fifty_wrong_passwords_from_one_address_leave_every_other_name_free(
    sqlite_cloud: RunningCloud,
) -> None:
    async with sqlite_cloud.client() as http:
        for n in range(50):
            guess = await _sign_in(http, f"user-{n}", password="guess")
            assert guess.status_code == 401
        for username in ("anna", "bert", "stina"):
            assert (await _sign_in(http, username)).status_code == 200, username


async def test_the_throttle_holds_across_two_replicas(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with (
        cloud_with(mosquitto, tmp_path, "a") as a,
        cloud_with(mosquitto, tmp_path, "b") as b,
        a.client() as http_a,
        b.client() as http_b,
    ):
        for n in range(RULES["pair"].free + 1):
            http = http_a if n % 2 else http_b
            assert (await _sign_in(http, "anna", password="guess")).status_code == 401
        assert (await _sign_in(http_a, "anna")).status_code == 429
        assert (await _sign_in(http_b, "anna")).status_code == 429


# -- sessions -----------------------------------------------------------------------------


async def test_signing_out_ends_the_session_and_everywhere_ends_them_all(
    sqlite_cloud: RunningCloud,
) -> None:
    async with sqlite_cloud.client() as http:
        first = bearer(await _sign_in(http, "anna"))
        second = bearer(await _sign_in(http, "anna"))
        third = bearer(await _sign_in(http, "anna"))
        other = bearer(await _sign_in(http, "bert"))
        assert (await http.post("/api/v1/auth/logout", headers=first)).status_code == 204
        assert (await http.get("/api/v1/me", headers=first)).status_code == 401
        assert (await http.get("/api/v1/me", headers=second)).status_code == 200
        everywhere = await http.post("/api/v1/auth/logout?everywhere=true", headers=second)
        assert everywhere.status_code == 204
        for ended in (second, third):
            assert (await http.get("/api/v1/me", headers=ended)).status_code == 401
        assert (await http.get("/api/v1/me", headers=other)).status_code == 200


async def test_a_disabled_user_is_signed_out_and_their_live_stream_ends_within_seconds(
    sqlite_cloud: RunningCloud,
) -> None:
    async with sqlite_cloud.client() as http:
        anna = bearer(await _sign_in(http, "anna"))
        ended = asyncio.Event()

        async def watch() -> None:
            async with http.stream("GET", "/api/v1/alarms/stream", headers=anna) as live:
                assert live.status_code == 200
                async for _line in live.aiter_lines():
                    pass
            ended.set()

        watcher = asyncio.create_task(watch())
        await wait_until(lambda: sqlite_cloud.app.state.services.hub.subscriber_count == 1)
        async with await sqlite_cloud.authed("adam") as admin:
            res = await admin.post("/api/v1/users/anna/disable")
            assert res.status_code == 200 and res.json()["disabled_at"]
            assert (await admin.post("/api/v1/users/adam/disable")).status_code == 409
            assert (await admin.post("/api/v1/users/olle/disable")).status_code == 404
        await asyncio.wait_for(ended.wait(), 10)
        await watcher
        assert (await http.get("/api/v1/me", headers=anna)).status_code == 401
        refused = await _sign_in(http, "anna")
        assert refused.status_code == 401
        assert refused.json()["detail"] == "Wrong username or password"
        async with await sqlite_cloud.authed("adam") as admin:
            assert (await admin.post("/api/v1/users/anna/enable")).status_code == 200
            log = (await admin.get("/api/v1/audit", params={"action": "user"})).json()
        assert [e["action"] for e in log] == ["user.enable", "user.disable"]
        assert log[1]["detail"] == {"sessions": 1}
        assert (await _sign_in(http, "anna")).status_code == 200


async def test_the_consoles_cookie_is_out_of_scripts_reach_and_refused_cross_site(
    sqlite_cloud: RunningCloud,
) -> None:
    async with sqlite_cloud.client() as http:
        res = await http.post("/api/v1/auth/session", data=form("anna"))
        assert res.status_code == 200, res.text
        assert res.json() == {"username": "anna", "role": "operator", "enrol_second_factor": False}
        assert "token" not in res.text
        cookie = res.headers["set-cookie"]
        assert cookie.startswith("trygg_session=")
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/api/"):
            assert attribute.lower() in cookie.lower(), cookie
        assert (await http.get("/api/v1/me")).json()["username"] == "anna"
        # A page elsewhere cannot make the browser act with it.
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            refused = await http.post("/api/v1/alarms/1/claim", headers=headers)
            assert refused.status_code == 403, headers
            assert refused.json()["detail"] == "Cross-site request refused"
        same = {"Origin": sqlite_cloud.url, "Sec-Fetch-Site": "same-origin"}
        assert (await http.post("/api/v1/alarms/1/claim", headers=same)).status_code == 404
        assert (await http.post("/api/v1/auth/logout")).status_code == 204
        assert (await http.get("/api/v1/me")).status_code == 401


# -- the second factor --------------------------------------------------------------------


async def _enrol(http: httpx.AsyncClient, headers: dict[str, str]) -> tuple[pyotp.TOTP, list[str]]:
    res = await http.post("/api/v1/auth/second-factor", headers=headers)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["uri"].startswith("otpauth://totp/Trygg:")
    assert body["qr_svg"].lstrip().startswith("<svg")
    codes: list[str] = body["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    return pyotp.TOTP(body["secret"]), codes


def code_at(totp: pyotp.TOTP, steps_ahead: int) -> str:
    return totp.at(datetime.now(UTC) + timedelta(seconds=30 * steps_ahead))


async def test_totp_enrolment_then_every_sign_in_asks_a_code_that_works_once(
    sqlite_cloud: RunningCloud,
) -> None:
    async with sqlite_cloud.client() as http:
        anna = bearer(await _sign_in(http, "anna"))
        totp, recovery = await _enrol(http, anna)
        wrong = await http.post(
            "/api/v1/auth/second-factor/confirm", headers=anna, json={"code": "000000"}
        )
        assert wrong.status_code == 422
        first = code_at(totp, 0)
        confirm = await http.post(
            "/api/v1/auth/second-factor/confirm", headers=anna, json={"code": first}
        )
        assert confirm.status_code == 200, confirm.text
        # The session it was confirmed in goes on; a new sign-in needs a code.
        assert (await http.get("/api/v1/alarms", headers=anna)).status_code == 200
        asked = await _sign_in(http, "anna")
        assert asked.status_code == 401 and asked.headers["X-Trygg-Second-Factor"] == "code"
        reused = await _sign_in(http, "anna", code=first)
        assert reused.status_code == 401
        assert reused.json()["detail"] == "Wrong or already used code"
        bearer(await _sign_in(http, "anna", code=code_at(totp, 1)))
        assert (await _sign_in(http, "anna", code=code_at(totp, 1))).status_code == 401
        # A recovery code works once.
        bearer(await _sign_in(http, "anna", code=recovery[3]))
        assert (await _sign_in(http, "anna", code=recovery[3])).status_code == 401
        assert (await _sign_in(http, "anna", password="guess", code=recovery[4])).status_code == 401
        bearer(await _sign_in(http, "anna", code=recovery[4]))
    async with await sqlite_cloud.authed("adam") as admin:
        (entry,) = [u for u in (await admin.get("/api/v1/users")).json() if u["username"] == "anna"]
        assert entry["second_factor"] is True


async def test_supervisors_admins_and_staff_must_set_one_up_and_an_organisation_can_ask_all(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    assert DEFAULT_ROLES == "admin,supervisor,staff"
    async with (
        cloud_with(mosquitto, tmp_path, second_factor_roles=DEFAULT_ROLES) as cloud,
        cloud.client() as http,
    ):
        assert (await _sign_in(http, "anna")).status_code == 200  # an operator: not asked
        for username in ("stina", "adam", "sara"):
            pending = bearer(await _sign_in(http, username))
            refused = await http.get("/api/v1/me", headers=pending)
            assert refused.status_code == 403, username
            assert refused.headers["X-Trygg-Second-Factor"] == "enrol"
        session = await http.post("/api/v1/auth/session", data=form("stina"))
        assert session.json()["enrol_second_factor"] is True
        stina = bearer(await _sign_in(http, "stina"))
        totp, _codes = await _enrol(http, stina)
        confirm = await http.post(
            "/api/v1/auth/second-factor/confirm", headers=stina, json={"code": code_at(totp, 0)}
        )
        assert confirm.status_code == 200
        assert (await http.get("/api/v1/statistics/today", headers=stina)).status_code == 200
        # The organisation asks it of everyone: its operators too, from their next sign-in.
        async with cloud.app.state.services.sessions() as db:
            await db.execute(
                update(Organisation)
                .where(Organisation.id == "org-a")
                .values(require_second_factor=True)
            )
            await db.commit()
        anna = bearer(await _sign_in(http, "anna"))
        assert (await http.get("/api/v1/alarms", headers=anna)).status_code == 403
        assert (await _sign_in(http, "olle")).status_code == 200  # org-b did not ask


async def test_a_supervisor_sets_up_and_uses_a_second_factor_in_the_console(
    mosquitto: Mosquitto, tmp_path: Path, browser: Browser
) -> None:
    async with cloud_with(mosquitto, tmp_path, second_factor_roles=DEFAULT_ROLES) as cloud:
        context = await browser.new_context(locale="en-GB")
        page = await context.new_page()
        await sign_in(page, cloud.url, "stina", "stina-pass")
        enrol = page.locator("#enrol")
        await expect(enrol.get_by_role("heading")).to_have_text("Set up a second factor")
        await expect(enrol.locator("#enrol-codes li")).to_have_count(10)
        await expect(enrol.get_by_role("img")).to_have_attribute(
            "src", re.compile("^data:image/svg")
        )
        assert await axe_violations(page) == []
        secret = (await enrol.locator("#enrol-secret").text_content() or "").replace(" ", "")
        totp = pyotp.TOTP(secret)
        await enrol.get_by_label("Code").fill("000000")
        await enrol.get_by_role("button", name="Confirm").click()
        await expect(page.locator("#enrol-error")).to_have_text("Wrong or already used code")
        await enrol.get_by_label("Code").fill(code_at(totp, 0))
        await enrol.get_by_role("button", name="Confirm").click()
        await expect(page.locator("#status")).to_have_text("live", timeout=10_000)

        await page.get_by_role("button", name="Sign out", exact=True).click()
        await sign_in(page, cloud.url, "stina", "stina-pass")
        await expect(page.locator("#login-error")).to_contain_text("Enter the code")
        await page.locator("#login").get_by_label("Code").fill(code_at(totp, 1))
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
        # Sign out everywhere: this browser too, and the cookie no longer signs in.
        await page.get_by_role("button", name="Sign out everywhere").click()
        await expect(page.locator("#login-error")).to_have_text("Signed out on every device")
        await page.reload()
        await expect(page.locator("#login")).to_be_visible()
        cookies = await context.cookies()
        assert all(c["httpOnly"] for c in cookies if c["name"] == "trygg_session")
        await context.close()
