"""Home rules with controllable clocks: out of bed at night and not back is one alarm,
back in bed restores it; a door opened at night is one; by day neither; rules are off
unless configured. Driven through the real Zigbee2MQTT message path of the pipeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from devices import Event
from gateway import ConfigError, GatewayConfig, InputCounters, Pipeline, Registry, Store
from gateway.config import parse_config
from gateway.rules import HomeRules, is_night
from gateway.transports import Zigbee2MqttInput

DEVICES = [
    {"id": "bed-1", "type": "bed_sensor", "address": "h1/bed", "home": "h1", "resident": "r1"},
    {"id": "door-1", "type": "door_contact", "address": "h1/door", "home": "h1"},
    {"id": "bed-2", "type": "bed_sensor", "address": "h2/bed", "home": "h2"},
]
HOMES = [
    {
        "id": "h1",
        "night": "22:00-07:00",
        "timezone": "Europe/Stockholm",
        "bed_exit_return_s": 900,
        "door_open_at_night": True,
    }
]  # h2 has no rules


class Clocks:
    def __init__(self) -> None:
        self.wall = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)  # 02:30 in Stockholm
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def pipeline(store: Store, clocks: Clocks) -> Pipeline:
    config = GatewayConfig.model_validate(
        {"gateway": {"id": "gw-1"}, "devices": DEVICES, "homes": HOMES}
    )
    rules = HomeRules(config.homes, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    # The pipeline's own clocks too: its duplicate window must see the minutes pass.
    return Pipeline(
        "gw-1",
        Registry(config.devices),
        store,
        InputCounters(),
        rules=rules,
        clock=lambda: clocks.mono,
        monotonic=lambda: clocks.mono,
    )


async def say(pipeline: Pipeline, address: str, **state: object) -> None:
    await Zigbee2MqttInput(pipeline).handle(f"zigbee2mqtt/{address}", json.dumps(state).encode())


async def events(store: Store) -> list[Event]:
    return [p.event for p in await store.pending(100)]


def kinds(found: list[Event]) -> list[tuple[str, str, bool]]:
    return [(e.kind, e.device_id, e.restore) for e in found]


async def test_out_of_bed_at_night_and_not_back_is_one_alarm_and_back_in_bed_restores(
    pipeline: Pipeline, clocks: Clocks, store: Store
) -> None:
    await say(pipeline, "h1/bed", occupancy=True)
    await say(pipeline, "h1/bed", occupancy=False)  # 02:30: up
    clocks.advance(899)
    await pipeline.tick_rules()
    assert await events(store) == []
    clocks.advance(2)
    await pipeline.tick_rules()
    await pipeline.tick_rules()  # once, however often it ticks
    (alarm,) = await events(store)
    assert (alarm.kind, alarm.priority.value, alarm.device_id, alarm.resident_id) == (
        "bed_exit_no_return",
        "high",
        "bed-1",
        "r1",
    )
    assert alarm.detail == {"out_of_bed_for_s": 901.0}
    await say(pipeline, "h1/bed", occupancy=True)
    assert kinds(await events(store))[-1] == ("bed_exit_no_return", "bed-1", True)


async def test_back_in_bed_in_time_raises_nothing(
    pipeline: Pipeline, clocks: Clocks, store: Store
) -> None:
    await say(pipeline, "h1/bed", occupancy=True)
    await say(pipeline, "h1/bed", occupancy=False)
    clocks.advance(600)  # a visit to the bathroom
    await say(pipeline, "h1/bed", occupancy=True)
    clocks.advance(3600)
    await pipeline.tick_rules()
    assert await events(store) == []


async def test_by_day_and_in_a_home_without_rules_nothing_is_raised(
    pipeline: Pipeline, clocks: Clocks, store: Store
) -> None:
    clocks.wall = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm
    await say(pipeline, "h1/bed", occupancy=True)
    await say(pipeline, "h1/bed", occupancy=False)
    await say(pipeline, "h1/door", contact=True)
    await say(pipeline, "h1/door", contact=False)
    await say(pipeline, "h2/bed", occupancy=True)
    await say(pipeline, "h2/bed", occupancy=False)
    clocks.advance(7200)
    await pipeline.tick_rules()
    assert await events(store) == []


async def test_a_door_opened_at_night_is_an_alarm_and_its_closing_restores_it(
    pipeline: Pipeline, clocks: Clocks, store: Store
) -> None:
    await say(pipeline, "h1/door", contact=True)
    await say(pipeline, "h1/door", contact=False)
    await say(pipeline, "h1/door", contact=False, linkquality=80)  # still open: nothing new
    clocks.advance(60)
    await say(pipeline, "h1/door", contact=True)
    assert kinds(await events(store)) == [
        ("door_open_night", "door-1", False),
        ("door_open_night", "door-1", True),
    ]
    assert (await events(store))[0].priority.value == "high"


@pytest.mark.parametrize(
    ("window", "hour", "minute", "night"),
    [
        ("22:00-07:00", 23, 0, True),
        ("22:00-07:00", 6, 59, True),
        ("22:00-07:00", 7, 0, False),
        ("22:00-07:00", 21, 59, False),
        ("01:00-05:00", 3, 0, True),
        ("01:00-05:00", 5, 0, False),
        ("00:00-00:00", 12, 0, True),  # start == end: the whole day
    ],
)
def test_night_windows(window: str, hour: int, minute: int, night: bool) -> None:
    assert is_night(window, datetime(2026, 1, 1, hour, minute)) is night


@pytest.mark.parametrize(
    ("homes", "message"),
    [
        ('[[homes]]\nid = "h1"\ntimezone = "Mars/Olympus"', "unknown time zone"),
        ('[[homes]]\nid = "h1"\nnight = "10pm-7am"', "night"),
        ('[[homes]]\nid = "h1"\nnight = "25:00-07:00"', "night"),
        ('[[homes]]\nid = "h1"\nbed_exit_return_s = -5', "bed_exit_return_s"),
        ('[[homes]]\nid = "h1"\n[[homes]]\nid = "h1"', "same id"),
    ],
)
def test_bad_home_rules_are_refused_with_the_reason(homes: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f'[gateway]\nid = "gw-1"\n{homes}\n', "gateway.toml")
