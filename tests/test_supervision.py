"""Supervision with a controllable clock: silent past the check-in interval is a
technical event, speaking again is its restore; nothing is raised twice."""

from __future__ import annotations

import json

import pytest

from devices import Event, Priority
from gateway import GatewayConfig, InputCounters, Pipeline, Registry, Store
from gateway.supervision import Supervisor
from gateway.transports import Zigbee2MqttInput


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


DEVICES = [
    {"id": "pendant-1", "type": "alarm_button", "address": "pendant", "home": "h1"},
    {"id": "door-1", "type": "door_contact", "address": "door", "home": "h1"},
    {
        "id": "lock-1",
        "type": "digital_lock",
        "address": "lock",
        "home": "h1",
        "checkin_s": 120,  # this installation wants the lock heard every two minutes
    },
]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rig(store: Store, clock: Clock) -> tuple[Pipeline, Supervisor]:
    config = GatewayConfig.model_validate({"gateway": {"id": "gw-1"}, "devices": DEVICES})
    registry = Registry(config.devices, clock=clock)
    pipeline = Pipeline("gw-1", registry, store, InputCounters(), monotonic=clock)
    return pipeline, Supervisor(registry, pipeline, clock=clock)


async def events(store: Store) -> list[Event]:
    return [p.event for p in await store.pending(100)]


async def test_a_device_gets_its_full_interval_from_the_start(
    rig: tuple[Pipeline, Supervisor], clock: Clock, store: Store
) -> None:
    _, supervisor = rig
    assert await supervisor.check() == 0
    clock.now += 119
    assert await supervisor.check() == 0
    assert await events(store) == []


async def test_silence_past_the_interval_is_one_technical_event_and_return_restores(
    rig: tuple[Pipeline, Supervisor], clock: Clock, store: Store
) -> None:
    pipeline, supervisor = rig
    clock.now += 121  # the lock's two minutes are up; the pendant has an hour
    assert await supervisor.check() == 1
    (event,) = await events(store)
    assert (event.kind, event.priority, event.device_id, event.restore) == (
        "device_silent",
        Priority.NORMAL,
        "lock-1",
        False,
    )
    assert event.detail == {"silent_for_s": 121, "checkin_s": 120}
    clock.now += 600
    assert await supervisor.check() == 0  # still silent: nothing new
    assert len(await events(store)) == 1
    battery = json.dumps({"battery": 70}).encode()
    await Zigbee2MqttInput(pipeline).handle("zigbee2mqtt/lock", battery)
    assert await supervisor.check() == 1
    restore = (await events(store))[-1]
    assert (restore.kind, restore.device_id, restore.restore) == ("device_silent", "lock-1", True)


async def test_each_type_has_its_catalog_interval(
    rig: tuple[Pipeline, Supervisor], clock: Clock, store: Store
) -> None:
    pipeline, supervisor = rig
    # Keep the lock talking, so only the catalog intervals are in play.
    for _ in range(11):  # 110 min: past the pendant's hour, short of the door's two
        clock.now += 600
        await Zigbee2MqttInput(pipeline).handle("zigbee2mqtt/lock", b'{"battery": 70}')
        await supervisor.check()
    assert [e.device_id for e in await events(store)] == ["pendant-1"]
    for _ in range(2):  # 130 min
        clock.now += 600
        await Zigbee2MqttInput(pipeline).handle("zigbee2mqtt/lock", b'{"battery": 70}')
        await supervisor.check()
    assert [e.device_id for e in await events(store)] == ["pendant-1", "door-1"]


async def test_a_device_that_repeats_itself_is_alive(
    rig: tuple[Pipeline, Supervisor], clock: Clock, store: Store
) -> None:
    pipeline, supervisor = rig
    # The same message again is dropped as a duplicate, but the device did speak.
    for _ in range(3):
        clock.now += 100
        await Zigbee2MqttInput(pipeline).handle("zigbee2mqtt/lock", b'{"battery": 70}')
        await supervisor.check()
    assert await events(store) == []
