"""Escalation with a controllable clock, on SQLite and PostgreSQL: each overdue alarm is
flagged once per reason even with two replicas sweeping, supervisors' streams are told,
and the outgoing webhook is called once (and retried when it fails)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.alarms import record_event
from cloud.escalation import Escalator, Limits, Reason
from cloud.lifecycle import (
    ESCALATION_WAITS_IN,
    OPEN_STATES,
    Action,
    Actor,
    Outcome,
    apply,
    history,
)
from cloud.security import Role
from devices import Priority

from .conftest import GATEWAY_ID, RunningCloud, make_event
from .servers import wait_until

pytestmark = pytest.mark.integration

LIMITS = Limits(
    unclaimed={Priority.CRITICAL: timedelta(seconds=30), Priority.HIGH: timedelta(seconds=120)},
    unassigned=timedelta(seconds=300),
    not_on_site=timedelta(seconds=1800),
)
ANNA = Actor("anna", Role.OPERATOR)
KINDS = {Priority.CRITICAL: "alarm_button", Priority.HIGH: "geofence_exit"}


class Clock:
    def __init__(self) -> None:
        self.start = datetime.now(UTC)
        self.now = self.start

    async def __call__(self, session: AsyncSession) -> datetime:
        return self.now

    def at(self, seconds: float) -> None:
        self.now = self.start + timedelta(seconds=seconds)


class Webhook:
    """A receiver of outgoing webhooks on loopback, answering with ``status``."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.received.append(json.loads(self.rfile.read(length)))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/escalation"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def escalator(cloud: RunningCloud, clock: Clock, url: str | None = None) -> Escalator:
    services = cloud.app.state.services
    return Escalator(services.sessions, services.hub, LIMITS, url, clock, webhook_backoff_s=0.01)


async def new_alarm(cloud: RunningCloud, n: int, priority: Priority = Priority.CRITICAL) -> int:
    event = make_event("escalation", n, priority, KINDS.get(priority, "battery_low"), f"device-{n}")
    async with cloud.app.state.services.sessions() as session:
        intake = await record_event(session, "org-a", GATEWAY_ID, event)
        await session.commit()
    assert intake.alarm is not None
    return intake.alarm.id


async def act(cloud: RunningCloud, alarm_id: int, action: Action, **kw: Any) -> None:
    async with cloud.app.state.services.sessions() as session:
        assert await apply(session, "org-a", alarm_id, action, ANNA, **kw) is not None
        await session.commit()


async def test_an_unclaimed_critical_alarm_escalates_once_after_30_s_and_the_stream_hears_it(
    cloud: RunningCloud,
) -> None:
    clock = Clock()
    esc = escalator(cloud, clock)
    alarm_id = await new_alarm(cloud, 1)
    async with cloud.app.state.services.hub.subscribe("org-a") as stream:
        clock.at(29)
        assert await esc.sweep() == []
        clock.at(31)
        assert await esc.sweep() == [(alarm_id, Reason.UNCLAIMED)]
        clock.at(90)
        assert await esc.sweep() == []
        change = await asyncio.wait_for(stream.get(), 5)
    assert change is not None and change.type == "escalated"
    assert (change.alarm.id, change.alarm.escalation, change.alarm.escalation_level) == (
        alarm_id,
        "unclaimed",
        1,
    )
    async with await cloud.authed("anna") as http:
        (alarm,) = (await http.get("/api/v1/alarms")).json()
        assert alarm["escalation"] == "unclaimed" and alarm["escalated_at"]
        assert alarm["escalation_waiting"] is True
        # The flag does not stand in an operator's way: claiming still works, and answers
        # it (the record of the escalation stays).
        claimed = await http.post(f"/api/v1/alarms/{alarm_id}/claim")
        assert claimed.status_code == 200
        assert claimed.json()["escalation"] == "unclaimed"
        assert claimed.json()["escalation_waiting"] is False
    async with cloud.app.state.services.sessions() as session:
        steps = [(t.action, t.by, t.detail) for t in await history(session, alarm_id)]
    # (the escalation is stamped by the test's clock, half a minute ahead of the claim)
    assert sorted(steps) == [("claim", "anna", {}), ("escalate", "system", {"reason": "unclaimed"})]


async def test_each_priority_waits_its_own_limit_and_technical_alarms_do_not_escalate(
    sqlite_cloud: RunningCloud,
) -> None:
    clock = Clock()
    esc = escalator(sqlite_cloud, clock)
    critical = await new_alarm(sqlite_cloud, 1)
    high = await new_alarm(sqlite_cloud, 2, Priority.HIGH)
    await new_alarm(sqlite_cloud, 3, Priority.NORMAL)
    clock.at(60)
    assert await esc.sweep() == [(critical, Reason.UNCLAIMED)]
    clock.at(121)
    assert await esc.sweep() == [(high, Reason.UNCLAIMED)]
    clock.at(86_400)
    assert await esc.sweep() == []


async def test_each_later_stage_escalates_when_it_waits_too_long(cloud: RunningCloud) -> None:
    claimed = await new_alarm(cloud, 1)
    acknowledged = await new_alarm(cloud, 2)
    assigned = await new_alarm(cloud, 3)
    on_site = await new_alarm(cloud, 4)
    resolved = await new_alarm(cloud, 5)
    await act(cloud, claimed, Action.CLAIM)
    for alarm_id in (acknowledged, assigned, on_site, resolved):
        await act(cloud, alarm_id, Action.ACKNOWLEDGE)
    for alarm_id in (assigned, on_site):
        await act(cloud, alarm_id, Action.ASSIGN, assignee="sara")
    await act(cloud, on_site, Action.ON_SITE)
    await act(cloud, resolved, Action.RESOLVE, outcome=Outcome.FALSE_ALARM)
    # The clock starts once every step is taken (on a busy machine they take a while).
    clock = Clock()
    esc = escalator(cloud, clock)
    clock.at(301)
    assert await esc.sweep() == [(acknowledged, Reason.UNASSIGNED)]
    clock.at(1801)
    assert await esc.sweep() == [(assigned, Reason.NOT_ON_SITE)]
    clock.at(86_400)
    assert await esc.sweep() == []  # claimed, on site and resolved alarms are in hand


async def test_two_replicas_escalate_an_alarm_once_and_call_the_webhook_once(
    cloud: RunningCloud, webhook: Webhook
) -> None:
    clock = Clock()
    first, second = escalator(cloud, clock, webhook.url), escalator(cloud, clock, webhook.url)
    alarm_ids = [await new_alarm(cloud, n) for n in range(5)]
    clock.at(31)
    found = await asyncio.gather(first.sweep(), second.sweep())
    assert sorted(a for a, _ in found[0] + found[1]) == alarm_ids
    senders = [asyncio.create_task(e.deliver_webhooks()) for e in (first, second)]
    try:
        await wait_until(lambda: len(webhook.received) >= 5)
        await asyncio.sleep(0.3)  # and nothing more arrives
    finally:
        for task in senders:
            task.cancel()
    assert sorted(body["alarm"]["id"] for body in webhook.received) == alarm_ids
    body = webhook.received[0]
    assert (body["type"], body["reason"], body["organisation"]) == (
        "alarm.escalated",
        "unclaimed",
        "org-a",
    )
    assert first.escalated + second.escalated == 5


async def test_a_failing_webhook_is_retried_then_counted(sqlite_cloud: RunningCloud) -> None:
    hook = Webhook(status=503)
    try:
        clock = Clock()
        esc = escalator(sqlite_cloud, clock, hook.url)
        await new_alarm(sqlite_cloud, 1)
        clock.at(31)
        await esc.sweep()
        sender = asyncio.create_task(esc.deliver_webhooks())
        await wait_until(lambda: esc.webhook_failed > 0)
        sender.cancel()
    finally:
        hook.close()
    assert esc.webhook_failed == 1 and esc.webhook_sent == 0
    assert len(hook.received) == 4  # every attempt reached the receiver


def test_every_escalation_reason_names_the_state_it_waits_in() -> None:
    # Besides the sweep's reasons, staff's decline (cloud/lifecycle.py) escalates too.
    assert set(ESCALATION_WAITS_IN) == {r.value for r in Reason} | {"declined"}
    assert set(ESCALATION_WAITS_IN.values()) <= set(OPEN_STATES)
