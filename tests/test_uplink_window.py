"""The uplink's in-flight window and acks, against a real mosquitto standing in for dispatch.

Findings 4 and 11 of the fault review: an ack may delete only what is in flight, and a
window full of unacked low events must not hold back a critical alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiomqtt

from devices import Priority
from devices.wire import Ack, EventEnvelope, acks_topic, events_topic
from gateway.config import UplinkSection
from gateway.store import Store
from gateway.uplink import DispatchUplink

from .conftest import GATEWAY_ID, make_event
from .servers import DISPATCH, Mosquitto, login, mqtt_client, wait_until


@contextlib.asynccontextmanager
async def running(uplink: DispatchUplink) -> AsyncIterator[None]:
    task = asyncio.create_task(uplink.run())
    try:
        await asyncio.wait_for(uplink.connected.wait(), 10)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def dispatch_side(port: int) -> AsyncIterator[aiomqtt.Client]:
    """A client that hears the gateway's events (subscribed before the uplink starts)."""
    async with mqtt_client(port, DISPATCH) as client:
        await client.subscribe(events_topic(GATEWAY_ID), qos=1)
        yield client


async def next_event_id(client: aiomqtt.Client) -> str:
    async for message in client.messages:
        assert isinstance(message.payload, bytes)
        return EventEnvelope.model_validate_json(message.payload).event.id
    raise AssertionError("the broker connection ended")


def settings(port: int, window: int) -> UplinkSection:
    # An ack timeout far longer than any test: nothing here can arrive as a resend.
    return UplinkSection.model_validate(
        {"port": port, "max_in_flight": window, "ack_timeout_s": 600, **login(GATEWAY_ID)}
    )


async def test_acks_for_ids_not_in_flight_delete_nothing(
    mosquitto: Mosquitto, store: Store
) -> None:
    events = [make_event("window", n, Priority.LOW) for n in range(3)]
    for event in events:
        assert await store.put(event)
    uplink = DispatchUplink(settings(mosquitto.port, window=1), GATEWAY_ID, store)
    async with dispatch_side(mosquitto.port) as dispatch, running(uplink):
        sent = await asyncio.wait_for(next_event_id(dispatch), 10)
        unsent = [e.id for e in events if e.id != sent]
        forged = Ack(event_ids=[*unsent, "never-sent-0000"])
        await dispatch.publish(acks_topic(GATEWAY_ID), forged.model_dump_json(), qos=1)
        # The real ack follows the forged one on the same topic, so once it has been
        # handled the forged one has been too.
        real = Ack(event_ids=[sent])
        await dispatch.publish(acks_topic(GATEWAY_ID), real.model_dump_json(), qos=1)
        await wait_until(lambda: uplink.acked + uplink.acks_ignored >= 4)
    left = [p.event.id for p in await store.pending(10)]
    assert sorted(left) == sorted(unsent)
    assert uplink.acked == 1
    assert uplink.acks_ignored == 3


async def test_a_full_window_of_low_events_does_not_hold_back_a_critical_alarm(
    mosquitto: Mosquitto, store: Store
) -> None:
    for n in range(5):
        assert await store.put(make_event("low", n, Priority.LOW))
    uplink = DispatchUplink(settings(mosquitto.port, window=2), GATEWAY_ID, store)
    async with dispatch_side(mosquitto.port) as dispatch, running(uplink):
        first = {await asyncio.wait_for(next_event_id(dispatch), 10) for _ in range(2)}
        assert len(first) == 2  # the window is full and nothing is acked
        alarm = make_event("press", 1, Priority.CRITICAL)
        assert await store.put(alarm)
        uplink.wake()
        # Without acks the window stays full for the 600 s ack timeout: only the rule
        # that the window counts nothing less urgent than the alarm lets it through now.
        assert await asyncio.wait_for(next_event_id(dispatch), 10) == alarm.id
