"""The pipeline on a real store: raw Zigbee2MQTT messages in, durable events out."""

from __future__ import annotations

import json

import pytest

from devices import Event, Priority
from gateway import DropReason, GatewayConfig, InputCounters, Pipeline, Registry, Store
from gateway.transports import Zigbee2MqttInput

from .conftest import TEST_DEVICES


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pipeline(store: Store, clock: Clock) -> Pipeline:
    config = GatewayConfig.model_validate({"gateway": {"id": "gw-1"}, "devices": TEST_DEVICES})
    return Pipeline(
        "gw-1",
        Registry(config.devices),
        store,
        InputCounters(),
        clock=clock,
        monotonic=clock,
    )


def zigbee2mqtt(pipeline: Pipeline, max_payload_bytes: int = 16 * 1024) -> Zigbee2MqttInput:
    """The Zigbee2MQTT transport's topic handling, feeding this pipeline."""
    return Zigbee2MqttInput(pipeline, max_payload_bytes=max_payload_bytes)


async def events(store: Store) -> list[Event]:
    return [p.event for p in await store.pending(100)]


PRESS = json.dumps({"action": "single", "battery": 90}).encode()


async def test_a_press_becomes_a_durable_critical_event(pipeline: Pipeline, store: Store) -> None:
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/flat-12/pendant", PRESS)
    (event,) = await events(store)
    assert (event.kind, event.priority, event.device_id) == (
        "alarm_button",
        Priority.CRITICAL,
        "pendant-1",
    )
    assert (event.home_id, event.resident_id) == ("home-12", "res-12")
    assert event.detail == {"action": "single"}
    assert pipeline.registry.by_address("zigbee2mqtt", "flat-12/pendant").status.battery_pct == 90  # type: ignore[union-attr]


async def test_the_action_subtopic_is_a_press_too(pipeline: Pipeline, store: Store) -> None:
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/flat-12/pendant/action", b"emergency")
    assert [e.kind for e in await events(store)] == ["alarm_button"]


async def test_redelivery_is_dropped_but_a_later_press_is_a_new_event(
    pipeline: Pipeline, store: Store, clock: Clock
) -> None:
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/flat-12/pendant", PRESS)
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/flat-12/pendant", PRESS)
    assert len(await events(store)) == 1
    assert pipeline.counters.dropped[DropReason.DUPLICATE] == 1
    clock.now += 30
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/flat-12/pendant", PRESS)
    found = await events(store)
    assert len(found) == 2 and found[0].id != found[1].id


async def test_state_alarms_fire_on_change_and_restore(
    pipeline: Pipeline, store: Store, clock: Clock
) -> None:
    topic = "zigbee2mqtt/kitchen_smoke"
    for smoke, lq in [(False, 50), (True, 51), (True, 52), (True, 53), (False, 54)]:
        clock.now += 1
        await zigbee2mqtt(pipeline).handle(
            topic, json.dumps({"smoke": smoke, "linkquality": lq}).encode()
        )
    found = await events(store)
    assert [(e.kind, e.restore) for e in found] == [("smoke", False), ("smoke", True)]


async def test_signals_that_are_not_alarms_make_no_event(pipeline: Pipeline, store: Store) -> None:
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/front_door", b'{"contact": false}')
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/front_door_lock", b'{"lock_state": "locked"}')
    assert await events(store) == []
    assert pipeline.counters.accepted["message"] == 2


GARBAGE = [
    ("zigbee2mqtt/flat-12/pendant", b"{not json", DropReason.MALFORMED),
    ("zigbee2mqtt/flat-12/pendant", b"\xff\x00\xfe", DropReason.MALFORMED),
    ("zigbee2mqtt/flat-12/pendant", b"[]", DropReason.MALFORMED),
    ("zigbee2mqtt/flat-12/pendant", b'{"action": 7}', DropReason.UNEXPECTED_VALUE),
    ("zigbee2mqtt/kitchen_smoke", b'{"smoke": "maybe"}', DropReason.UNEXPECTED_VALUE),
    (
        "zigbee2mqtt/flat-12/pendant",
        b'{"action":"single","x":"' + b"a" * 5000 + b'"}',
        DropReason.OVERSIZED,
    ),
    ("zigbee2mqtt/0x00158d0001e50d78", PRESS, DropReason.UNKNOWN_DEVICE),
    ("zigbee2mqtt/", PRESS, DropReason.UNKNOWN_TOPIC),
    ("homeassistant/sensor/x", PRESS, DropReason.UNKNOWN_TOPIC),
    ("zigbee2mqtt/flat-12/pendant/availability", b"sleepy", DropReason.MALFORMED),
]


RED_TEAM = [
    (b'{"action": "single", "battery": ' + b"[" * 3000 + b"]" * 3000 + b"}", "nested deeper"),
    (b'{"battery": ' + b"9" * 4400 + b"}", "digits"),
    (b'{"battery": ' + str(10**400).encode() + b"}", "digits"),
    (b'{"battery": NaN, "action": "single"}', "NaN"),
    (b'{"action": "\\ud800"}', "lone surrogate"),
    (b'{"action": "single\\u0000"}', "NUL"),
]


@pytest.mark.parametrize(("payload", "reason"), RED_TEAM)
async def test_a_red_team_payload_is_counted_once_with_its_reason_and_stores_nothing(
    pipeline: Pipeline, store: Store, payload: bytes, reason: str
) -> None:
    config = GatewayConfig.model_validate({"gateway": {"id": "gw-1"}, "devices": TEST_DEVICES})
    pipeline = Pipeline("gw-1", Registry(config.devices), store, InputCounters())
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/flat-12/pendant", payload)
    assert sum(pipeline.counters.dropped.values()) == 1
    ((_, source), n), *_ = pipeline.counters.by_source.items()
    assert (source, n) == ("mqtt:zigbee2mqtt/flat-12/pendant", 1)
    assert reason in next(iter(pipeline.counters.last_detail.values()))
    assert await events(store) == []
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/flat-12/pendant", PRESS)
    assert [e.kind for e in await events(store)] == ["alarm_button"]


async def test_a_flood_of_bad_messages_logs_once_per_source_and_then_a_summary(
    store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    config = GatewayConfig.model_validate({"gateway": {"id": "gw-1"}, "devices": TEST_DEVICES})
    counters = InputCounters(summary_s=60, clock=clock)
    pipeline = Pipeline("gw-1", Registry(config.devices), store, counters)
    caplog.set_level("DEBUG", logger="trygg.gateway")
    for n in range(2000):  # a device repeating a bad message, about 3 a second
        clock.now += 0.3
        topic = "zigbee2mqtt/kitchen_smoke" if n % 2 else "zigbee2mqtt/flat-12/pendant"
        await zigbee2mqtt(pipeline).handle(topic, RED_TEAM[n % 3][0])
    lines = [r for r in caplog.records if r.name == "trygg.gateway.input"]
    assert counters.dropped == {DropReason.MALFORMED: 667, DropReason.UNEXPECTED_VALUE: 1333}
    assert not any(r.exc_info for r in caplog.records)  # no traceback for bad input
    firsts = [r for r in lines if "further ones from it are counted" in r.getMessage()]
    assert len(firsts) == 4  # two sources, each with two reasons
    # 600 s of flood: one summary line per source and reason about once a minute.
    summaries = [r.getMessage() for r in lines if "more" in r.getMessage()]
    assert 30 <= len(summaries) <= 40
    assert "from mqtt:zigbee2mqtt/kitchen_smoke" in summaries[-1]
    assert len(caplog.text) < 20_000


async def test_a_failure_of_the_gateway_on_a_message_is_counted_and_traced_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    config = GatewayConfig.model_validate({"gateway": {"id": "gw-1"}, "devices": TEST_DEVICES})

    def broken_uplink_wake(_event: Event) -> None:
        raise RuntimeError("uplink wake failed")

    pipeline = Pipeline(
        "gw-1", Registry(config.devices), store, InputCounters(), on_event=broken_uplink_wake
    )
    for n in range(20):
        press = json.dumps({"action": "single", "linkquality": n}).encode()
        await zigbee2mqtt(pipeline).handle("zigbee2mqtt/flat-12/pendant", press)
    assert pipeline.counters.dropped == {DropReason.INTERNAL_ERROR: 20}
    assert len(await events(store)) == 20  # each alarm was kept before the failure
    traced = [r for r in caplog.records if r.exc_info]
    assert len(traced) == 1 and "uplink wake failed" in caplog.text


async def test_garbage_is_counted_and_dropped_and_the_next_alarm_still_arrives(
    pipeline: Pipeline, store: Store
) -> None:
    for topic, payload, _reason in GARBAGE:
        await zigbee2mqtt(pipeline, max_payload_bytes=4096).handle(topic, payload)
    expected: dict[DropReason, int] = {}
    for _topic, _payload, reason in GARBAGE:
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(pipeline.counters.dropped) == expected
    assert await events(store) == []
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/flat-12/pendant", PRESS)
    assert [e.kind for e in await events(store)] == ["alarm_button"]


async def test_unknown_devices_are_listed_as_discovered(
    pipeline: Pipeline, store: Store, clock: Clock
) -> None:
    for _ in range(3):
        await zigbee2mqtt(pipeline).handle("zigbee2mqtt/0x00158d0001e50d78", b'{"occupancy": true}')
    (found,) = await store.discovered()
    # Listed at once; a chatty stranger is written at most once a minute, with its count.
    assert (found.transport, found.address, found.messages) == (
        "zigbee2mqtt",
        "0x00158d0001e50d78",
        1,
    )
    assert pipeline.counters.dropped[DropReason.UNKNOWN_DEVICE] == 3
    clock.now += 61
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/0x00158d0001e50d78", b'{"occupancy": true}')
    (found,) = await store.discovered()
    assert found.messages == 4
    assert await events(store) == []


async def test_bridge_messages_and_commands_are_ignored(pipeline: Pipeline, store: Store) -> None:
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/bridge/state", b'{"state":"online"}')
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/front_door_lock/set", b'{"state":"UNLOCK"}')
    assert await events(store) == [] and not pipeline.counters.dropped


async def test_availability_is_tracked(pipeline: Pipeline) -> None:
    await zigbee2mqtt(pipeline).handle(
        "zigbee2mqtt/flat-12/pendant/availability", b'{"state":"offline"}'
    )
    assert pipeline.registry.by_address("zigbee2mqtt", "flat-12/pendant").status.online is False  # type: ignore[union-attr]


async def test_a_redelivery_after_a_restart_is_still_a_duplicate(
    pipeline: Pipeline, store: Store, clock: Clock
) -> None:
    await zigbee2mqtt(pipeline).handle("zigbee2mqtt/flat-12/pendant", PRESS)
    restarted = Pipeline("gw-1", pipeline.registry, store, InputCounters(), clock=clock)
    await restarted.load()
    clock.now += 3  # the time a restart takes
    await zigbee2mqtt(restarted).handle("zigbee2mqtt/flat-12/pendant", PRESS)
    assert len(await events(store)) == 1
    assert restarted.counters.dropped[DropReason.DUPLICATE] == 1


def test_backoff_is_jittered_capped_and_urgent_when_an_alarm_waits() -> None:
    from gateway.backoff import Backoff

    backoff = Backoff(first_s=0.5, cap_s=30)
    delays = [backoff.next_delay() for _ in range(20)]
    assert all(0.25 <= d <= 30 for d in delays) and max(delays) > 5
    assert len(set(delays)) > 10, "jittered"
    assert all(backoff.next_delay(urgent=True) <= 0.5 for _ in range(20))
    backoff.reset()
    assert backoff.next_delay() <= 0.5


async def test_the_duplicate_memory_is_bounded_and_forgets_oldest_first(
    pipeline: Pipeline, store: Store, clock: Clock
) -> None:
    from gateway.pipeline import MAX_RECENT_INPUTS

    device = pipeline.registry.get("door-1")
    assert device is not None
    for n in range(MAX_RECENT_INPUTS + 500):  # a flood of distinct messages in one instant
        assert not pipeline._is_duplicate("door-1", n.to_bytes(4, "big"))
    assert len(pipeline._recent) == MAX_RECENT_INPUTS
    assert pipeline._is_duplicate("door-1", (MAX_RECENT_INPUTS + 499).to_bytes(4, "big"))
    assert not pipeline._is_duplicate("door-1", (0).to_bytes(4, "big"))  # forgotten first
    clock.now += 11  # past the window: the same message again is a new one...
    assert not pipeline._is_duplicate("door-1", (600).to_bytes(4, "big"))
    # ...unless the broker says it resends it: remembered, however old, up to the cap.
    assert pipeline._is_duplicate("door-1", (700).to_bytes(4, "big"), resent=True)
    assert len(pipeline._recent) == MAX_RECENT_INPUTS
