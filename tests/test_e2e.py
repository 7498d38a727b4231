"""Button -> Zigbee2MQTT on a real mosquitto -> gateway -> dispatch -> queue and stream.

Runs on SQLite and on PostgreSQL (the ``cloud`` fixture is parametrised)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx
import pytest

from devices import Priority, stable_event_id
from devices.wire import Ack, EventEnvelope, acks_topic, events_topic
from gateway import Gateway

from .conftest import GATEWAY_ID, RunningCloud, envelope, publish, publish_inventory
from .servers import DISPATCH, Mosquitto, mqtt_client, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PRESS = json.dumps({"action": "emergency", "battery": 90, "linkquality": 88}).encode()


async def alarms(http: httpx.AsyncClient, **params: str) -> list[dict[str, object]]:
    res = await http.get("/api/v1/alarms", params=params)
    res.raise_for_status()
    body: list[dict[str, object]] = res.json()
    return body


async def read_stream_event(response: httpx.Response) -> dict[str, object]:
    event = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: ") and event == "alarm":
            data: dict[str, object] = json.loads(line[len("data: ") :])
            return data
    raise AssertionError("stream ended without an alarm")


async def test_a_button_press_reaches_the_queue_and_the_live_stream(
    cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto
) -> None:
    async with await cloud.authed("anna") as http:
        async with http.stream("GET", "/api/v1/alarms/stream") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            await asyncio.sleep(0.2)  # let the subscription register before the press
            started = time.perf_counter()
            await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", PRESS)
            change = await asyncio.wait_for(read_stream_event(stream), 10)
            stream_ms = (time.perf_counter() - started) * 1000
        found = await alarms(http)
        api_ms = (time.perf_counter() - started) * 1000
    assert change["type"] == "created"
    alarm = change["alarm"]
    assert isinstance(alarm, dict)
    assert (alarm["kind"], alarm["priority"], alarm["state"]) == ("alarm_button", "critical", "new")
    assert (alarm["device_id"], alarm["home_id"], alarm["resident_id"]) == (
        "pendant-1",
        "home-12",
        "res-12",
    )
    assert [a["id"] for a in found] == [alarm["id"]]
    print(f"\npublish -> stream {stream_ms:.1f} ms, publish -> stream -> API {api_ms:.1f} ms")
    # The outbox empties only because the cloud acked after its commit.
    await wait_until(lambda: gateway.uplink.acked == 1)
    assert sum((await gateway.store.depth()).values()) == 0


async def test_the_same_message_delivered_twice_yields_one_alarm(
    cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto
) -> None:
    async with mqtt_client(mosquitto.port) as client:
        for _ in range(2):
            await client.publish("zigbee2mqtt/flat-12/pendant", PRESS, qos=1)
    async with await cloud.authed("anna") as http:
        await wait_until(
            lambda: (
                gateway.counters.accepted["message"] + sum(gateway.counters.dropped.values()) >= 2
            )
        )
        await wait_until(lambda: gateway.uplink.acked >= 1)
        found = await alarms(http)
    assert len(found) == 1 and found[0]["event_count"] == 1


def _envelope(
    n: int, priority: Priority = Priority.CRITICAL, kind: str = "alarm_button"
) -> EventEnvelope:
    return envelope("wire-test", n, priority, kind)


async def test_wire_duplicates_are_acked_every_time_but_stored_once(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    """A gateway resends what it did not see acked; the cloud upserts by event id."""
    await publish_inventory(cloud, ["dev-1"])
    envelope = _envelope(1).model_dump_json()
    acked: list[str] = []
    async with mqtt_client(mosquitto.port, GATEWAY_ID) as client:
        await client.subscribe(acks_topic(GATEWAY_ID), qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                acked.extend(Ack.model_validate_json(message.payload).event_ids)

        collector = asyncio.create_task(collect())
        for _ in range(3):
            await client.publish(events_topic(GATEWAY_ID), envelope, qos=1)
        await wait_until(lambda: len(acked) == 3)
        collector.cancel()
    assert set(acked) == {stable_event_id("wire-test", "1")}
    async with await cloud.authed("anna") as http:
        found = await alarms(http)
    assert len(found) == 1 and found[0]["event_count"] == 1


async def test_queue_is_priority_then_age_and_filters_work(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    sent = [
        _envelope(1, Priority.NORMAL, "battery_low"),
        _envelope(2, Priority.CRITICAL),
        _envelope(3, Priority.HIGH, "inactivity"),
        _envelope(4, Priority.CRITICAL, "smoke"),
    ]
    await publish_inventory(cloud, [item.event.device_id for item in sent])
    for item in sent:
        await publish(mosquitto.port, events_topic(GATEWAY_ID), item.model_dump_json())
    async with await cloud.authed("anna") as http:
        await wait_until(lambda: _count(http, 4))
        found = await alarms(http)
        assert [a["kind"] for a in found] == ["alarm_button", "smoke", "inactivity", "battery_low"]
        critical = await alarms(http, priority="critical")
        assert [a["kind"] for a in critical] == ["alarm_button", "smoke"]
        res = await http.post(f"/api/v1/alarms/{found[0]['id']}/acknowledge")
        assert res.status_code == 200 and res.json()["acknowledged_by"] == "anna"
        assert [a["kind"] for a in await alarms(http, state="new")] == [
            "smoke",
            "inactivity",
            "battery_low",
        ]


async def _count(http: httpx.AsyncClient, n: int) -> bool:
    return len(await alarms(http)) == n


async def test_bad_input_is_dropped_and_a_valid_alarm_right_after_still_arrives(
    cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto
) -> None:
    good = _envelope(9).model_dump_json()
    bad_wire = [
        (events_topic(GATEWAY_ID), b"not json"),
        (events_topic(GATEWAY_ID), b'{"v": 1, "gateway_id": 5}'),
        (
            events_topic(GATEWAY_ID),
            good.replace(GATEWAY_ID, "gw-other").encode(),
        ),  # topic/body mismatch
        (events_topic(GATEWAY_ID), b"x" * 70_000),
        (
            f"trygg/v1/gw/{GATEWAY_ID}/status",
            b'{"v": 1, "gateway_id": "gw-other", "state": "online"}',
        ),
        (f"trygg/v1/gw/{GATEWAY_ID}/status", b'{"state": "sideways"}'),
    ]
    bad_device = [
        ("zigbee2mqtt/flat-12/pendant", b"{{{"),
        ("zigbee2mqtt/flat-12/pendant", b'{"action": ["single"]}'),
        ("zigbee2mqtt/flat-12/pendant", b"{" + b" " * 20_000 + b"}"),
        ("zigbee2mqtt/intruder-device", PRESS),
    ]
    async with mqtt_client(mosquitto.port, GATEWAY_ID) as client:
        for topic, payload in bad_wire:
            await client.publish(topic, payload, qos=1)
    async with mqtt_client(mosquitto.port) as client:
        for topic, payload in bad_device:
            await client.publish(topic, payload, qos=1)
        await client.publish("zigbee2mqtt/flat-12/pendant", PRESS, qos=1)
    async with await cloud.authed("anna") as http:
        await wait_until(lambda: _count(http, 1))
        (alarm,) = await alarms(http)
    assert alarm["device_id"] == "pendant-1"
    assert sum(gateway.counters.dropped.values()) == len(bad_device)
    ingest = cloud.ingest
    assert sum(ingest.dropped.values()) == len(bad_wire)
    assert ingest.dropped == {"malformed": 3, "gateway_mismatch": 2, "oversized": 1}


async def test_an_unregistered_gateway_is_not_acked(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    """Not acked means the gateway keeps the event until somebody registers it."""
    stranger = EventEnvelope(
        gateway_id="gw-stranger", sent_at=datetime.now(UTC), event=_envelope(5).event
    )
    acked: list[bytes] = []
    async with mqtt_client(mosquitto.port, "gw-stranger") as client:
        await client.subscribe(acks_topic("gw-stranger"), qos=1)
        await client.publish(events_topic("gw-stranger"), stranger.model_dump_json(), qos=1)
        ingest = cloud.ingest
        await wait_until(lambda: ingest.dropped["unknown_gateway"] == 1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                async for message in client.messages:
                    acked.append(str(message.payload).encode())
    assert acked == []


async def test_gateway_resends_at_once_when_the_dispatch_service_says_it_is_online(
    mosquitto: Mosquitto, tmp_path: object
) -> None:
    """After a broker restart an event may be published before the dispatch service has
    subscribed again; its retained "online" makes the gateway resend without waiting for
    the ack timeout."""
    from pathlib import Path

    from devices.wire import DISPATCH_STATUS_TOPIC, DispatchStatus

    from .conftest import gateway_config

    assert isinstance(tmp_path, Path)
    config = gateway_config(mosquitto, tmp_path / "gw.db", ack_timeout_s=60.0)
    seen: list[float] = []
    async with mqtt_client(mosquitto.port, DISPATCH) as watcher:
        await watcher.subscribe(events_topic(GATEWAY_ID), qos=1)

        async def count() -> None:
            async for _message in watcher.messages:
                seen.append(time.monotonic())

        counter = asyncio.create_task(count())
        async with Gateway(config) as gw:
            # The press must not be published before the gateway listens for it.
            await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
            await asyncio.wait_for(gw.uplink.connected.wait(), 10)
            await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", PRESS)
            await wait_until(lambda: len(seen) == 1)
            online = DispatchStatus(state="online").model_dump_json()
            await publish(mosquitto.port, DISPATCH_STATUS_TOPIC, online, retain=True)
            await wait_until(lambda: len(seen) == 2, 10)  # far sooner than the 60 s timeout
            assert (await gw.store.depth())[Priority.CRITICAL] == 1, "still unacked: kept"
        counter.cancel()
