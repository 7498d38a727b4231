"""An event id is a gateway's own: the same id from another organisation's gateway, or
from another gateway of the same organisation, is another event with its own alarm and
its own ack. On SQLite and PostgreSQL (the ``cloud`` fixture is parametrised)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from datetime import UTC, datetime

import aiomqtt
import pytest
from sqlalchemy import func, select

from cloud.admin import admin_session, ensure_gateway
from cloud.db import EventRecord
from devices.wire import Ack, EventEnvelope, acks_topic, events_topic, split_topic

from .conftest import GATEWAY_ID, RunningCloud, make_event, publish_inventory
from .servers import Mosquitto, mqtt_client, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

# Two gateways of org-a (the fixture's and another) and one of org-b; the same event id.
SENDERS = [(GATEWAY_ID, "pendant-1"), ("gw-test-2", "pendant-2"), ("gw-b-1", "pendant-1")]


def _same_id_from(gateway_id: str, device: str) -> str:
    event = make_event("boot-1", 1, device=device)  # every gateway's first event of a boot
    return EventEnvelope(
        gateway_id=gateway_id, sent_at=datetime.now(UTC), event=event
    ).model_dump_json()


async def test_the_same_event_id_from_other_gateways_makes_their_own_alarms_and_acks(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    async with admin_session(cloud.settings) as session:
        await ensure_gateway(session, "org-a", "gw-test-2", "Second gateway of org-a")
        await ensure_gateway(session, "org-b", "gw-b-1", "Gateway of org-b")
        await session.commit()
    for gateway_id, device in SENDERS:
        await publish_inventory(cloud, [device], gateway_id)
    event_id = make_event("boot-1", 1).id
    acked: dict[str, list[str]] = defaultdict(list)
    async with contextlib.AsyncExitStack() as stack:
        # Each gateway as itself: it may publish only its own events and read its own acks.
        clients = {}
        for gateway_id in {g for g, _ in SENDERS}:
            client = await stack.enter_async_context(mqtt_client(mosquitto.port, gateway_id))
            await client.subscribe(acks_topic(gateway_id), qos=1)
            clients[gateway_id] = client

        async def collect(client: aiomqtt.Client) -> None:
            async for message in client.messages:
                parts = split_topic(message.topic.value)
                assert parts is not None and isinstance(message.payload, bytes)
                acked[parts[0]].extend(Ack.model_validate_json(message.payload).event_ids)

        collectors = [asyncio.create_task(collect(c)) for c in clients.values()]
        for gateway_id, device in SENDERS:
            payload = _same_id_from(gateway_id, device)
            await clients[gateway_id].publish(events_topic(gateway_id), payload, qos=1)
        # A resend from the first gateway is still a duplicate of its own event.
        first = clients[GATEWAY_ID]
        await first.publish(events_topic(GATEWAY_ID), _same_id_from(*SENDERS[0]), qos=1)
        await wait_until(lambda: sum(len(ids) for ids in acked.values()) == 4)
        for collector in collectors:
            collector.cancel()
    assert dict(acked) == {
        GATEWAY_ID: [event_id] * 2,
        "gw-test-2": [event_id],
        "gw-b-1": [event_id],
    }
    assert cloud.ingest.committed == 3 and cloud.ingest.duplicates == 1

    async with await cloud.authed("anna") as http:
        org_a = (await http.get("/api/v1/alarms")).json()
    async with await cloud.authed("olle") as http:
        org_b = (await http.get("/api/v1/alarms")).json()
    seen = sorted((a["gateway_id"], a["device_id"], a["event_count"]) for a in org_a + org_b)
    assert seen == sorted((g, d, 1) for g, d in SENDERS)
    assert [a["gateway_id"] for a in org_b] == ["gw-b-1"]

    async with cloud.app.state.services.sessions() as session:
        rows = (
            await session.execute(
                select(EventRecord.org_id, EventRecord.gateway_id, func.count())
                .where(EventRecord.id == event_id)
                .group_by(EventRecord.org_id, EventRecord.gateway_id)
                .order_by(EventRecord.gateway_id)
            )
        ).all()
        # Each stored event points at its own gateway's alarm, not at another's.
        links = (
            await session.execute(
                select(EventRecord.gateway_id, EventRecord.alarm_id).where(
                    EventRecord.id == event_id
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("org-b", "gw-b-1", 1),
        ("org-a", GATEWAY_ID, 1),
        ("org-a", "gw-test-2", 1),
    ]
    alarm_of = {a["gateway_id"]: a["id"] for a in org_a + org_b}
    assert {g: a for g, a in links} == alarm_of
