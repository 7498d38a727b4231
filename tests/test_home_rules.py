"""Home rules with controllable clocks: out of bed at night and not back is one alarm,
back in bed restores it; a door opened at night is one; by day neither; rules are off
unless configured. Driven through the real Zigbee2MQTT message path of the pipeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices import Event
from devices.codecs import Decoded
from gateway import ConfigError, GatewayConfig, InputCounters, Pipeline, Registry, Store
from gateway.config import parse_config
from gateway.rules import HomeRules, is_night
from gateway.transports import Zigbee2MqttInput

from .servers import Mosquitto

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


def clocked(config: GatewayConfig, store: Store, clocks: Clocks) -> Pipeline:
    """The pipeline and its home rules on the test's clocks (the pipeline's own too: its
    duplicate window must see the minutes pass)."""
    rules = HomeRules(config.homes, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    return Pipeline(
        "gw-1",
        Registry(config.devices),
        store,
        InputCounters(),
        rules=rules,
        clock=lambda: clocks.mono,
        monotonic=lambda: clocks.mono,
    )


@pytest.fixture
def pipeline(store: Store, clocks: Clocks) -> Pipeline:
    config = GatewayConfig.model_validate(
        {"gateway": {"id": "gw-1"}, "devices": DEVICES, "homes": HOMES}
    )
    return clocked(config, store, clocks)


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


# -- inactivity and away mode -------------------------------------------------------------

QUIET_DEVICES = [
    {"id": "motion-1", "type": "motion", "address": "h3/motion", "home": "h3"},
    {"id": "door-3", "type": "door_contact", "address": "h3/door", "home": "h3"},
    {"id": "bed-3", "type": "bed_sensor", "address": "h3/bed", "home": "h3"},
]


def quiet_home(**rules: object) -> dict[str, object]:
    # Eight hours without activity, counted between 07:00 and 22:00 Stockholm time.
    base = {"id": "h3", "timezone": "Europe/Stockholm", "inactivity_s": 8 * 3600}
    return {**base, "inactivity_window": "07:00-22:00", **rules}


def quiet_pipeline(store: Store, clocks: Clocks, home: dict[str, object]) -> Pipeline:
    config = GatewayConfig.model_validate(
        {"gateway": {"id": "gw-1"}, "devices": QUIET_DEVICES, "homes": [home]}
    )
    return clocked(config, store, clocks)


async def pass_time(pipeline: Pipeline, clocks: Clocks, seconds: float, step: float = 60) -> None:
    """Time passing as the gateway sees it: its rule ticks, a minute apart."""
    while seconds > 0:
        clocks.advance(min(step, seconds))
        seconds -= step
        await pipeline.tick_rules()


async def test_no_activity_for_hours_inside_the_window_is_one_alarm_and_movement_restores(
    store: Store, clocks: Clocks
) -> None:
    clocks.wall = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 07:00 in Stockholm
    pipeline = quiet_pipeline(store, clocks, quiet_home())
    await say(pipeline, "h3/bed", occupancy=True)  # in bed: said again, it is no activity
    await say(pipeline, "h3/motion", occupancy=True)  # up and about at 07:00
    await say(pipeline, "h3/motion", occupancy=False)
    for _ in range(8):  # the bed says "occupied" every hour, the door stays shut
        await pass_time(pipeline, clocks, 3600 - 120)
        await say(pipeline, "h3/bed", occupancy=True)
        await say(pipeline, "h3/door", contact=True)
        await pass_time(pipeline, clocks, 120)
    found = await events(store)
    assert kinds(found) == [("inactivity", "motion-1", False)]  # about the last device active
    assert found[0].detail["inactive_for_s"] >= 8 * 3600
    await pass_time(pipeline, clocks, 3600)
    assert len(await events(store)) == 1  # one alarm, not one a minute
    await say(pipeline, "h3/motion", occupancy=True)
    assert kinds(await events(store))[1:] == [("inactivity", "motion-1", True)]


async def test_the_count_waits_outside_the_window(store: Store, clocks: Clocks) -> None:
    clocks.wall = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 17:00 in Stockholm
    pipeline = quiet_pipeline(store, clocks, quiet_home())
    await say(pipeline, "h3/door", contact=False)  # home at 17:00, the door opens, closes
    await say(pipeline, "h3/door", contact=True)
    await pass_time(pipeline, clocks, 12 * 3600)  # to 05:00: only 5 h inside the window
    assert await events(store) == []
    await pass_time(pipeline, clocks, 4 * 3600)  # to 09:00: 7 h
    assert await events(store) == []
    await pass_time(pipeline, clocks, 3600 + 60)  # to 10:01: 8 h
    assert kinds(await events(store)) == [("inactivity", "door-3", False)]


async def test_away_mode_pauses_the_count_and_clears_a_raised_alarm(
    store: Store, clocks: Clocks
) -> None:
    clocks.wall = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    home = quiet_home(inactivity_window="00:00-00:00")
    pipeline = quiet_pipeline(store, clocks, home)
    await say(pipeline, "h3/motion", occupancy=True)
    await pass_time(pipeline, clocks, 8 * 3600 + 60)
    assert kinds(await events(store)) == [("inactivity", "motion-1", False)]
    # The resident went to her daughter's: staff set the home away (a new configuration).
    away = GatewayConfig.model_validate(
        {"gateway": {"id": "gw-1"}, "devices": QUIET_DEVICES, "homes": [{**home, "away": True}]}
    )
    pipeline.rules.replace(away.homes)
    await pass_time(pipeline, clocks, 60)
    restored = (await events(store))[1]
    assert (restored.kind, restored.restore, restored.detail["away"]) == ("inactivity", True, True)
    await pass_time(pipeline, clocks, 48 * 3600, step=600)  # two days away: nothing
    assert len(await events(store)) == 2
    pipeline.rules.replace(
        GatewayConfig.model_validate(
            {"gateway": {"id": "gw-1"}, "devices": QUIET_DEVICES, "homes": [home]}
        ).homes
    )  # back home: counted from now
    await pass_time(pipeline, clocks, 7 * 3600)
    assert len(await events(store)) == 2


async def test_a_home_without_the_rule_raises_no_inactivity(store: Store, clocks: Clocks) -> None:
    pipeline = quiet_pipeline(store, clocks, {"id": "h3"})
    await say(pipeline, "h3/motion", occupancy=True)
    await pass_time(pipeline, clocks, 3 * 86400, step=3600)
    assert await events(store) == []


async def test_a_door_open_at_night_across_a_restart_is_restored_when_it_closes(
    pipeline: Pipeline, clocks: Clocks, store: Store
) -> None:
    await say(pipeline, "h1/door", contact=False)
    assert kinds(await events(store)) == [("door_open_night", "door-1", False)]
    # The gateway restarts: a new pipeline on the same store, its rules from the file.
    config = GatewayConfig.model_validate(
        {"gateway": {"id": "gw-1"}, "devices": DEVICES, "homes": HOMES}
    )
    again = clocked(config, store, clocks)
    await again.load()
    assert again.rules.raised() == [("door-1", "door_open_night")]
    clocks.advance(120)
    await say(again, "h1/door", contact=False)  # still open, said again: no second alarm
    await say(again, "h1/door", contact=True)
    assert kinds(await events(store)) == [
        ("door_open_night", "door-1", False),
        ("door_open_night", "door-1", True),
    ]


# -- safe zones: polygons, several, by the hour -------------------------------------------

# A house in Lund and its garden behind it (a polygon), counted 07:00-21:00 only.
HOUSE = {"latitude": 55.70000, "longitude": 13.19000, "radius_m": 30}
GARDEN = [(55.70020, 13.18980), (55.70020, 13.19080), (55.70070, 13.19080), (55.70070, 13.18980)]
IN_GARDEN = (55.70045, 13.19030)  # some 50 m north of the house, in the garden
OUT_OF_GARDEN = (55.70045, 13.19200)  # east of it, on the road
WELL_INSIDE_HOUSE = (55.70000, 13.19000)


def gps_pipeline(store: Store, clocks: Clocks) -> Pipeline:
    config = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1"},
            "serial": [{"name": "gps1", "path": "/dev/null", "protocol": "nmea"}],
            "devices": [
                {
                    "id": "gps-1",
                    "transport": "nmea",
                    "type": "gps_pendant",
                    "port": "gps1",
                    "home": "h4",
                    "zones": [
                        {"name": "house", "circle": HOUSE},
                        {"name": "garden", "polygon": GARDEN, "hours": "07:00-21:00"},
                    ],
                }
            ],
            "homes": [{"id": "h4", "timezone": "Europe/Stockholm"}],
        }
    )
    return clocked(config, store, clocks)


async def at(pipeline: Pipeline, clocks: Clocks, where: tuple[float, float]) -> None:
    device = pipeline.registry.get("gps-1")
    assert device is not None
    clocks.advance(5)
    readings = (("latitude", where[0]), ("longitude", where[1]))
    await pipeline.accept(device, Decoded(readings=readings))


async def test_the_garden_is_safe_by_day_and_not_at_night(store: Store, clocks: Clocks) -> None:
    clocks.wall = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # 14:00 in Lund
    pipeline = gps_pipeline(store, clocks)
    await at(pipeline, clocks, IN_GARDEN)
    assert await events(store) == []  # by day the garden is a safe zone
    await at(pipeline, clocks, OUT_OF_GARDEN)  # the first fix on the road: out
    (left,) = await events(store)
    assert (left.kind, left.restore, left.detail["zones"]) == (
        "geofence_exit",
        False,
        ["house", "garden"],
    )
    await at(pipeline, clocks, IN_GARDEN)  # back in the garden, well inside it
    assert kinds(await events(store))[1:] == [("geofence_exit", "gps-1", True)]
    clocks.wall = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)  # 22:30: the garden counts no more
    await at(pipeline, clocks, IN_GARDEN)
    assert kinds(await events(store))[2:] == [("geofence_exit", "gps-1", False)]
    await at(pipeline, clocks, WELL_INSIDE_HOUSE)
    assert kinds(await events(store))[3:] == [("geofence_exit", "gps-1", True)]


def test_a_polygon_is_inside_outside_and_well_inside_by_its_margin() -> None:
    from devices.geo import PolygonZone

    garden = PolygonZone(GARDEN)
    assert garden.contains(*IN_GARDEN)
    assert not garden.contains(*OUT_OF_GARDEN)
    edge = (55.70045, 13.18985)  # some 3 m inside the west edge
    assert garden.contains(*edge) and not garden.contains(*edge, margin_m=20)
    assert garden.contains(*IN_GARDEN, margin_m=20)


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ({"name": "z"}, "give a circle or a polygon"),
        ({"name": "z", "circle": HOUSE, "polygon": GARDEN}, "give a circle or a polygon"),
        ({"name": "z", "polygon": GARDEN[:2]}, "at least 3"),
        ({"name": "z", "polygon": [GARDEN[0], GARDEN[2], GARDEN[1], GARDEN[3]]}, "must not cross"),
        ({"name": "z", "polygon": [(95.0, 13.0), *GARDEN[1:]]}, "not on Earth"),
        ({"name": "z", "circle": HOUSE, "hours": "7-21"}, "hours"),
    ],
)
def test_bad_zones_are_refused_with_the_reason(zone: dict[str, object], message: str) -> None:
    body = {
        "gateway": {"id": "gw-1"},
        "serial": [{"name": "gps1", "path": "/dev/null", "protocol": "nmea"}],
        "devices": [
            {"id": "gps-1", "transport": "nmea", "type": "gps_pendant", "port": "gps1",
             "home": "h4", "zones": [zone]}
        ],
    }  # fmt: skip
    with pytest.raises(ValueError, match=message):
        GatewayConfig.model_validate(body)


async def test_positions_are_kept_only_where_the_resident_consented_to_tracking(
    store: Store, clocks: Clocks
) -> None:
    """Without consent a position serves the zones (and goes with the alarm) but is
    never kept as a reading; the fix's quality is."""
    from gateway.readings import ReadingsBuffer

    clocks.wall = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)  # 23:00: the garden counts not
    pipeline = gps_pipeline(store, clocks)
    pipeline._readings = ReadingsBuffer(store)
    device = pipeline.registry.get("gps-1")
    assert device is not None and device.config.tracking is False  # type: ignore[union-attr]
    readings = (("latitude", IN_GARDEN[0]), ("longitude", IN_GARDEN[1]), ("satellites", 8.0))
    await pipeline.accept(device, Decoded(readings=readings))
    await pipeline._readings.flush()
    kept = {r.metric for r in await store.readings(1000)}
    assert kept == {"satellites"}
    (left,) = await events(store)  # in the garden at night: the zone was left, with where
    assert left.detail["latitude"] == IN_GARDEN[0]


# -- the pre-alarm, the away button, wandering ----------------------------------------------


async def in_order(store: Store) -> list[Event]:
    """The events as they were kept (the outbox sends the most urgent first)."""
    return [p.event for p in sorted(await store.pending(100), key=lambda p: p.seq)]


BUTTON = {"id": "away-1", "type": "alarm_button", "address": "h3/away", "home": "h3"}


async def test_the_pre_alarm_comes_first_and_any_activity_cancels_it(
    store: Store, clocks: Clocks
) -> None:
    clocks.wall = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    home = quiet_home(inactivity_window="00:00-00:00", inactivity_pre_alarm_s=60)
    pipeline = quiet_pipeline(store, clocks, home)
    await say(pipeline, "h3/motion", occupancy=True)
    await pass_time(pipeline, clocks, 8 * 3600, step=30)
    # Eight hours: the pre-alarm (logged), not yet the alarm.
    assert kinds(await in_order(store)) == [("inactivity_warning", "motion-1", False)]
    warning = (await in_order(store))[0]
    assert warning.priority.value == "low" and warning.detail["pre_alarm_s"] == 60
    await pass_time(pipeline, clocks, 30, step=30)
    await say(pipeline, "h3/motion", occupancy=True)  # she was only asleep in her chair
    await pass_time(pipeline, clocks, 120, step=30)
    found = await in_order(store)
    assert kinds(found)[1:] == [("inactivity_warning", "motion-1", True)]
    assert found[1].detail["cancelled"] is True
    # Not cancelled this time: after the pre-alarm, the alarm.
    await pass_time(pipeline, clocks, 8 * 3600 + 60, step=30)
    assert kinds(await in_order(store))[2:] == [
        ("inactivity_warning", "motion-1", False),
        ("inactivity_warning", "motion-1", True),
        ("inactivity", "motion-1", False),
    ]
    raised = (await in_order(store))[-1]
    assert raised.priority.value == "high" and raised.detail["pre_alarm_s"] == 60


async def test_the_away_button_sets_away_mode_and_raises_no_alarm(
    store: Store, clocks: Clocks
) -> None:
    clocks.wall = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    home = quiet_home(inactivity_window="00:00-00:00", away_button="away-1")
    config = GatewayConfig.model_validate(
        {"gateway": {"id": "gw-1"}, "devices": [*QUIET_DEVICES, BUTTON], "homes": [home]}
    )
    pipeline = clocked(config, store, clocks)
    await say(pipeline, "h3/motion", occupancy=True)
    await say(pipeline, "h3/away", action="single")  # leaving for the weekend
    await say(pipeline, "h3/away", action="")
    found = await in_order(store)
    assert kinds(found) == [("away_mode", "away-1", False)]  # away now; no alarm_button
    assert found[0].priority.value == "low" and found[0].detail["by"] == "button"
    await pass_time(pipeline, clocks, 48 * 3600, step=600)
    assert len(await in_order(store)) == 1  # two days away: no inactivity
    # Away mode survives a restart of the gateway (kept with the raised rule alarms).
    again = clocked(config, store, clocks)
    await again.load()
    await pass_time(again, clocks, 10 * 3600, step=600)
    assert len(await in_order(store)) == 1
    await say(again, "h3/away", action="double")  # home again
    assert kinds(await in_order(store))[1:] == [("away_mode", "away-1", True)]
    await pass_time(again, clocks, 8 * 3600 + 60, step=600)
    assert kinds(await in_order(store))[2:] == [("inactivity", "away-1", False)]


def test_an_away_button_of_another_home_is_refused() -> None:
    other = {**BUTTON, "home": "h9"}
    with pytest.raises(ValueError, match="away_button 'away-1' is another home's device"):
        GatewayConfig.model_validate(
            {
                "gateway": {"id": "gw-1"},
                "devices": [*QUIET_DEVICES, other],
                "homes": [quiet_home(away_button="away-1")],
            }
        )


async def test_up_at_night_and_the_door_opened_is_wandering_and_back_in_bed_restores(
    store: Store, clocks: Clocks
) -> None:
    home = {"id": "h3", "timezone": "Europe/Stockholm", "wandering_s": 600}
    pipeline = quiet_pipeline(store, clocks, home)  # 02:30 in Stockholm
    await say(pipeline, "h3/bed", occupancy=True)
    await say(pipeline, "h3/door", contact=True)
    await say(pipeline, "h3/bed", occupancy=False)  # up at 02:30
    clocks.advance(240)
    await say(pipeline, "h3/door", contact=False)  # the front door opens 4 min later
    found = await in_order(store)
    assert kinds(found) == [("wandering", "door-3", False)]
    assert found[0].priority.value == "high"
    assert (found[0].detail["bed"], found[0].detail["up_for_s"]) == ("bed-3", 240)
    await say(pipeline, "h3/door", contact=True)
    await say(pipeline, "h3/door", contact=False)  # in and out again: still one alarm
    assert len(await in_order(store)) == 1
    await say(pipeline, "h3/bed", occupancy=True)  # staff brought him back to bed
    assert kinds(await in_order(store))[1:] == [("wandering", "door-3", True)]


async def test_a_door_long_after_getting_up_or_by_day_is_no_wandering(
    store: Store, clocks: Clocks
) -> None:
    home = {"id": "h3", "timezone": "Europe/Stockholm", "wandering_s": 600}
    pipeline = quiet_pipeline(store, clocks, home)
    await say(pipeline, "h3/bed", occupancy=True)
    await say(pipeline, "h3/door", contact=True)
    await say(pipeline, "h3/bed", occupancy=False)
    clocks.advance(601)  # up for ten minutes: the door after that is someone else's doing
    await say(pipeline, "h3/door", contact=False)
    await say(pipeline, "h3/door", contact=True)
    clocks.advance(6 * 3600)  # 08:30: morning
    await say(pipeline, "h3/bed", occupancy=True)
    await say(pipeline, "h3/bed", occupancy=False)
    await say(pipeline, "h3/door", contact=False)
    assert await in_order(store) == []


async def test_the_centres_away_and_the_button_each_say_every_change_and_the_newer_word_wins(
    store: Store, clocks: Clocks
) -> None:
    clocks.wall = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    home = quiet_home(inactivity_window="00:00-00:00", away_button="away-1")
    devices = [*QUIET_DEVICES, BUTTON]

    def homes(**said: object) -> GatewayConfig:
        return GatewayConfig.model_validate(
            {"gateway": {"id": "gw-1"}, "devices": devices, "homes": [{**home, **said}]}
        )

    away_at = {"away": True, "away_set_at": "2026-11-24T06:00:00+00:00"}
    config = homes(**away_at)  # staff set her away from the console
    pipeline = clocked(config, store, clocks)
    rules = pipeline.rules
    assert rules.away(rules.homes["h3"])
    await say(pipeline, "h3/away", action="single")  # she is home early: the button
    assert kinds(await in_order(store)) == [("away_mode", "away-1", True)]  # told: back
    assert not rules.away(rules.homes["h3"])
    # A restart: she is still home, whatever the configuration said before.
    again = clocked(config, store, clocks)
    await again.load()
    assert not again.rules.away(again.rules.homes["h3"])
    await say(again, "h3/motion", occupancy=True)
    await pass_time(again, clocks, 8 * 3600 + 60, step=600)
    assert ("inactivity", "motion-1", False) in kinds(await in_order(store))
    # The centre says away again, later: its newer word wins over the button's.
    again.rules.replace(homes(away=True, away_set_at="2026-11-24T15:00:00+00:00").homes)
    assert again.rules.away(again.rules.homes["h3"])
    await say(again, "h3/away", action="double")  # and the button, after that, ends it
    assert kinds(await in_order(store))[-1] == ("away_mode", "away-1", True)
    assert not again.rules.away(again.rules.homes["h3"])


def test_a_residents_pendant_is_refused_as_the_away_button() -> None:
    pendant = {**BUTTON, "resident": "r3"}
    with pytest.raises(ValueError, match="its press must stay an alarm"):
        GatewayConfig.model_validate(
            {
                "gateway": {"id": "gw-1"},
                "devices": [*QUIET_DEVICES, pendant],
                "homes": [quiet_home(away_button="away-1")],
            }
        )


async def test_the_pre_alarm_sets_off_the_homes_siren_and_activity_stops_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A real gateway on a real broker: the pre-alarm's siren is told through Zigbee2MQTT
    (``/set`` with a ``warning``), and the resident's movement stops it."""
    import asyncio

    from gateway import Gateway

    from .conftest import TEST_DEVICES, gateway_config
    from .servers import mqtt_client

    devices = [
        *TEST_DEVICES,
        {"id": "siren-1", "type": "siren", "address": "h12_siren", "home": "home-12"},
        {"id": "motion-12", "type": "motion", "address": "h12_motion", "home": "home-12"},
    ]
    home = {
        "id": "home-12",
        "inactivity_s": 1,
        "inactivity_pre_alarm_s": 30,
        "pre_alarm_signal": "siren-1",
    }
    config = gateway_config(
        mosquitto, tmp_path / "gw.db", extra={"devices": devices, "homes": [home]}
    )
    async with (
        mqtt_client(mosquitto.port) as z2m,
        Gateway(config) as gw,
    ):
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        await z2m.subscribe("zigbee2mqtt/h12_siren/set", qos=1)
        await z2m.publish("zigbee2mqtt/h12_motion", json.dumps({"occupancy": True}), qos=1)
        said = z2m.messages.__aiter__()
        first = await asyncio.wait_for(anext(said), 30)
        assert json.loads(first.payload)["warning"] == {
            "mode": "emergency",
            "level": "low",
            "strobe": True,
            "duration": 30,
        }
        await z2m.publish("zigbee2mqtt/h12_motion", json.dumps({"occupancy": False}), qos=1)
        moving = {"occupancy": True, "illuminance": 40}  # she gets up from her chair
        await z2m.publish("zigbee2mqtt/h12_motion", json.dumps(moving), qos=1)
        stop = await asyncio.wait_for(anext(said), 30)
        assert json.loads(stop.payload) == {"warning": {"mode": "stop"}}
        warnings = [e for e in await in_order(gw.store) if e.kind == "inactivity_warning"]
        assert [w.restore for w in warnings[:2]] == [False, True]
        assert warnings[1].detail["cancelled"] is True


def test_the_pre_alarm_signal_must_be_a_siren_of_the_home() -> None:
    with pytest.raises(ValueError, match="must be a Zigbee2MQTT siren of this home"):
        GatewayConfig.model_validate(
            {
                "gateway": {"id": "gw-1"},
                "devices": QUIET_DEVICES,
                "homes": [quiet_home(pre_alarm_signal="motion-1")],
            }
        )
