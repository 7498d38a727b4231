"""Asking the dispatch service whether a scenario's alarms arrived, and only those."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from .scenario import Scenario, compare


class CheckError(Exception):
    """The dispatch service could not be asked (unreachable, or the login was refused)."""


async def login(http: httpx.AsyncClient, username: str, password: str) -> None:
    try:
        res = await http.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )
    except httpx.HTTPError as exc:
        raise CheckError(f"cannot reach the dispatch service at {http.base_url}: {exc}") from exc
    if res.status_code != 200:
        raise CheckError(f"login as {username} refused ({res.status_code})")
    http.headers["Authorization"] = f"Bearer {res.json()['access_token']}"


async def scenario_alarms(
    http: httpx.AsyncClient, scenario: Scenario, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The service's alarms from the scenario's devices (received since ``since``)."""
    try:
        res = await http.get("/api/v1/alarms", params={"limit": 1000})
        res.raise_for_status()
    except httpx.HTTPError as exc:
        raise CheckError(f"cannot list alarms: {exc}") from exc
    ours = {d.id for d in scenario.device}
    found = []
    for alarm in res.json():
        if alarm["device_id"] not in ours:
            continue
        received = datetime.fromisoformat(alarm["received_at"])
        if received.tzinfo is None:
            received = received.replace(tzinfo=UTC)
        if since is not None and received < since:
            continue
        found.append(alarm)
    return found


async def check_cloud(
    url: str,
    username: str,
    password: str,
    scenario: Scenario,
    *,
    since: datetime | None = None,
    settle_s: float = 15.0,
) -> list[str]:
    """What differs from the scenario's expectations, waiting up to ``settle_s`` for the
    alarms to arrive (an empty list: exactly the expected alarms are there)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        await login(http, username, password)
        deadline = time.monotonic() + settle_s
        while True:
            problems = compare(scenario.expected(), await scenario_alarms(http, scenario, since))
            if not problems or time.monotonic() >= deadline:
                return problems
            await asyncio.sleep(0.5)
