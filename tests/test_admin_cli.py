"""The administrator's commands tell the truth: a name that exists is refused with what it
is, a change says exactly what changed, and changing how someone signs in ends their
sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cloud import CloudSettings, create_app
from trygg.cli import app
from trygg.serve import make_server, wait_started

from .servers import free_port

pytestmark = pytest.mark.integration


def trygg(env: dict[str, str], *args: str, password: str | None = None) -> tuple[int, str]:
    """``trygg ARGS`` in this process; ``password`` is typed twice at the prompt."""
    typed = f"{password}\n{password}\n" if password is not None else None
    result = CliRunner().invoke(app, list(args), env=env, input=typed)
    return result.exit_code, result.output


async def run(env: dict[str, str], *args: str, password: str | None = None) -> tuple[int, str]:
    return await asyncio.to_thread(trygg, env, *args, password=password)


async def test_users_are_created_once_and_every_change_says_what_it_did(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    env = {"TRYGG_DATABASE_URL": database, "TRYGG_ENVIRONMENT": "development"}
    code, out = await run(
        env, "cloud", "add-user", "malmo", "anna", "--role", "operator", password="anna-password"
    )
    assert code == 0, out
    assert "organisation malmo created" in out and "user anna created: operator in malmo" in out
    code, out = await run(
        env, "cloud", "add-user", "malmo", "anna", "--role", "admin", password="other-password"
    )
    assert code == 1
    assert "user anna exists: operator in malmo; nothing changed" in out
    # A setup script that runs again: the same user is fine, and it says nothing changed.
    again = ("cloud", "add-user", "malmo", "anna", "--role", "operator", "--exists-ok")
    code, out = await run(env, *again, password="other-password")
    assert (code, out.strip().splitlines()[-1]) == (
        0,
        "user anna exists: operator in malmo; nothing changed",
    )
    code, out = await run(
        env, "cloud", "add-user", "lund", "anna", "--role", "operator", password="other-password"
    )
    assert code == 1 and "(another organisation)" in out
    code, out = await run(
        env, "cloud", "add-user", "malmo", "bo", "--role", "boss", password="bo-password-1"
    )
    assert code == 2 and "--role must be one of" in out
    code, out = await run(
        env, "cloud", "add-user", "malmo", "bo", "--role", "staff", password="short"
    )
    assert code == 2 and "at least 10 characters" in out

    # Signed in in a running service: each change that touches signing in ends the session.
    settings = CloudSettings(database_url=database, mqtt_port=free_port())
    server = make_server(create_app(settings, run_ingest=False), "127.0.0.1", free_port())
    task = asyncio.create_task(server.serve())
    await wait_started(server, task)
    url = f"http://127.0.0.1:{server.config.port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:

            async def sign_in(password: str) -> dict[str, str]:
                res = await http.post(
                    "/api/v1/auth/token", data={"username": "anna", "password": password}
                )
                assert res.status_code == 200, res.text
                return {"Authorization": f"Bearer {res.json()['access_token']}"}

            async def me(headers: dict[str, str]) -> int:
                return (await http.get("/api/v1/me", headers=headers)).status_code

            first = await sign_in("anna-password")
            code, out = await run(env, "cloud", "set-password", "anna", password="new-password-1")
            assert (code, out.strip().splitlines()[-1]) == (
                0,
                "anna: new password; 1 session(s) ended",
            )
            assert await me(first) == 401
            second = await sign_in("new-password-1")
            code, out = await run(env, "cloud", "set-role", "anna", "--role", "supervisor")
            assert (code, out.strip()) == (0, "anna: operator -> supervisor; 1 session(s) ended")
            assert await me(second) == 401
            code, out = await run(env, "cloud", "set-role", "anna", "--role", "supervisor")
            assert out.strip() == "anna is supervisor already: nothing changed"
            third = await sign_in("new-password-1")
            code, out = await run(env, "cloud", "disable-user", "anna")
            assert (code, out.strip()) == (0, "anna: disabled; 1 session(s) ended")
            assert await me(third) == 401
            refused = await http.post(
                "/api/v1/auth/token", data={"username": "anna", "password": "new-password-1"}
            )
            assert refused.status_code == 401
            assert (await run(env, "cloud", "disable-user", "anna"))[1].strip() == (
                "anna is disabled already: nothing changed"
            )
            assert (await run(env, "cloud", "enable-user", "anna"))[1].strip() == "anna: enabled"
            await sign_in("new-password-1")
            code, out = await run(env, "cloud", "set-role", "nobody", "--role", "staff")
            assert code == 1 and "no user nobody" in out
    finally:
        server.should_exit = True
        await task


async def test_add_gateway_says_whether_it_registered_renamed_or_changed_nothing(
    tmp_path: Path,
) -> None:
    env = {
        "TRYGG_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}",
        "TRYGG_ENVIRONMENT": "development",
    }
    code, out = await run(env, "cloud", "add-gateway", "malmo", "gw-1", "--name", "Rosengård")
    assert code == 0
    assert out.splitlines()[:2] == [
        "organisation malmo created",
        "gateway gw-1 registered in malmo (Rosengård)",
    ]
    code, out = await run(env, "cloud", "add-gateway", "malmo", "gw-1")
    assert (code, out.strip()) == (0, "gateway gw-1 is registered in malmo: nothing changed")
    code, out = await run(env, "cloud", "add-gateway", "malmo", "gw-1", "--name", "Rosengård 12")
    assert out.strip() == "gateway gw-1 renamed: 'Rosengård' -> 'Rosengård 12'"
    code, out = await run(env, "cloud", "add-gateway", "lund", "gw-1")
    assert code == 2 and "belongs to another organisation; nothing changed" in out
