"""A message the broker hands over again (it was taken but not acked when the gateway
died) is known for a duplicate however long the restart took; a new, identical message
long after is not. Against a real mosquitto: its DUP flag is what tells them apart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway import Pipeline, Store
from gateway.config import Zigbee2MqttSection
from gateway.counters import DropReason, InputCounters
from gateway.registry import Registry
from gateway.transports import Zigbee2MqttInput, Zigbee2MqttTransport

from .conftest import GATEWAY_ID
from .servers import Mosquitto, login, paho_login, wait_until
from .test_overload import DEVICES

PRESS = json.dumps({"action": "single"}).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_resent_message_is_a_duplicate_after_any_restart_and_a_new_one_is_not(
    tmp_path: Path,
) -> None:
    clock = Clock()
    store = Store(tmp_path / "gw.db")
    await store.open()
    try:
        first = Pipeline(GATEWAY_ID, Registry(DEVICES), store, InputCounters(), clock=clock)
        await Zigbee2MqttInput(first).handle("zigbee2mqtt/flat-12/pendant", PRESS)
        clock.now += 3600  # the gateway was down an hour; the broker kept the message
        again = Pipeline(GATEWAY_ID, Registry(DEVICES), store, InputCounters(), clock=clock)
        await again.load()
        await Zigbee2MqttInput(again).handle("zigbee2mqtt/flat-12/pendant", PRESS, resent=True)
        assert again.counters.dropped[DropReason.DUPLICATE] == 1
        clock.now += 11
        await Zigbee2MqttInput(again).handle("zigbee2mqtt/flat-12/pendant", PRESS)  # pressed again
        assert again.counters.dropped[DropReason.DUPLICATE] == 1
        assert len(await store.pending(10)) == 2
    finally:
        await store.close()


async def test_the_transport_knows_a_message_the_broker_sends_again(mosquitto: Mosquitto) -> None:
    settings = Zigbee2MqttSection.model_validate(
        {"host": "127.0.0.1", "port": mosquitto.port, **login(GATEWAY_ID)}
    )
    client_id = f"trygg-gw-{GATEWAY_ID}-z2m"
    # A first life of the gateway: it takes the message and dies before acking it.
    taken, subscribed = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    first = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    first.manual_ack_set(True)
    paho_login(first, GATEWAY_ID)

    def on_connect(client: paho.Client, *_: object) -> None:
        client.subscribe("zigbee2mqtt/#", qos=1)

    def on_subscribe(*_: object) -> None:
        loop.call_soon_threadsafe(subscribed.set)

    def on_message(*_: object) -> None:
        loop.call_soon_threadsafe(taken.set)  # and never acked

    first.on_connect = on_connect
    first.on_subscribe = on_subscribe
    first.on_message = on_message
    first.connect("127.0.0.1", mosquitto.port)
    first.loop_start()
    publisher = paho_login(paho.Client(CallbackAPIVersion.VERSION2, client_id="device-side"))
    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        publisher.connect("127.0.0.1", mosquitto.port)
        publisher.loop_start()
        publisher.publish("zigbee2mqtt/flat-12/pendant", PRESS, qos=1).wait_for_publish(10)
        await asyncio.wait_for(taken.wait(), 10)
    finally:
        first.loop_stop()
        first._sock_close()  # as a kill -9 would leave it: no ack, no goodbye
        publisher.loop_stop()
        publisher.disconnect()
    got: list[tuple[str, bool]] = []

    async def handler(topic: str, _payload: bytes, resent: bool) -> None:
        got.append((topic, resent))

    transport = Zigbee2MqttTransport(settings, GATEWAY_ID, handler)
    task = asyncio.create_task(transport.run())
    try:
        await wait_until(lambda: got, 20)
    finally:
        task.cancel()
    assert got == [("zigbee2mqtt/flat-12/pendant", True)]
