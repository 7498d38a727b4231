"""The simulator's devices decode through the gateway's real codecs; scenario files are
checked with clear errors; the load plan is reproducible from its seed."""

from __future__ import annotations

import contextlib
import json
import random
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trygg_sim.ble import BleAdvertiser
from trygg_sim.bthome import BINARY
from trygg_sim.load import LoadPlan, _Shard
from trygg_sim.play import Wiring, gateway_config, to_toml
from trygg_sim.scenario import (
    TYPES,
    ScenarioError,
    compare,
    load_scenario,
    parse_scenario,
    shipped,
)
from trygg_sim.serial import GpsWalk, RadioTransmitter, line_noise
from trygg_sim.zigbee import SimulatedZigbeeDevice, initial_state

from devices import DeviceType, Repeated, Signal
from devices.codecs.bthome import NOT_SIGNALS, SIGNALS, BthomeDecoder
from devices.codecs.nmea import NmeaLineReader, decode_sentence
from devices.codecs.radio import FrameType, RadioFrameReader, Trigger
from devices.codecs.zigbee2mqtt import decode_availability, decode_state
from devices.errors import CodecError
from devices.geo import distance_m
from gateway.config import parse_config
from gateway.transports.ble import parse_sim_advertisement


def signals(decoded: object) -> dict[Signal, bool]:
    return {s.signal: s.active for s in decoded.signals}  # type: ignore[attr-defined]


# -- every simulated device through the gateway's codecs ---------------------------------

Z2M_ALARM: dict[DeviceType, tuple[dict[str, object], Signal]] = {
    DeviceType.ALARM_BUTTON: ({"action": "single"}, Signal.BUTTON_PRESS),
    DeviceType.FALL_DETECTOR: ({"fall_down_status": "fall"}, Signal.FALL),
    DeviceType.GAS: ({"gas": True}, Signal.GAS),
    DeviceType.HEAT: ({"heat": True}, Signal.HEAT),
    DeviceType.PRESENCE: ({"presence": True}, Signal.PRESENCE),
    DeviceType.DOOR_CONTACT: ({"contact": False}, Signal.DOOR_OPEN),
    DeviceType.MOTION: ({"occupancy": True}, Signal.MOTION),
    DeviceType.BED_SENSOR: ({"occupancy": False}, Signal.BED_OCCUPIED),
    DeviceType.SMOKE: ({"smoke": True}, Signal.SMOKE),
    DeviceType.CO: ({"carbon_monoxide": True}, Signal.CO),
    DeviceType.WATER_LEAK: ({"water_leak": True}, Signal.WATER_LEAK),
    DeviceType.DIGITAL_LOCK: ({"lock_state": "not_fully_locked"}, Signal.LOCK_JAMMED),
}


@pytest.mark.parametrize("kind", sorted(TYPES["zigbee2mqtt"]))
def test_every_zigbee2mqtt_device_decodes(kind: DeviceType) -> None:
    state: dict[str, object] = {"battery": 90, **initial_state(kind)}
    device = SimulatedZigbeeDevice(f"home/{kind.value}", kind, state)
    _topic, first = device.update()
    decoded = decode_state(kind, first)
    assert ("battery_pct", 90.0) in decoded.readings
    if kind is DeviceType.SIREN:  # it says nothing of the home: the gateway sets it off
        assert decoded.signals == ()
        return
    change, signal = Z2M_ALARM[kind]
    _topic, payload = device.update(**change)
    after = signals(decode_state(kind, payload))
    expected_active = kind is not DeviceType.BED_SENSOR  # out of bed: not occupied
    assert after[signal] is expected_active
    assert decode_availability(device.availability(False)[1]) is False


# The simulator's names where they are not bthome-ble's, and what a bed sensor says.
BLE_SIGNALS = {
    "opening": Signal.DOOR_OPEN,
    "battery_low": Signal.BATTERY_LOW,
    "carbon_monoxide": Signal.CO,
    "door": Signal.DOOR_OPEN,
    "moisture": Signal.WATER_LEAK,
    "motion": Signal.MOTION,
    "occupancy": Signal.BED_OCCUPIED,  # on a bed sensor, as the Zigbee2MQTT codec says it
    "smoke": Signal.SMOKE,
    "tamper": Signal.TAMPER,
}


@pytest.mark.parametrize("bindkey", [None, bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")])
@pytest.mark.parametrize("name", sorted(BINARY))
def test_every_ble_sensor_state_decodes_through_the_sim_backend_datagram(
    name: str, bindkey: bytes | None
) -> None:
    kind = DeviceType.BED_SENSOR if name == "occupancy" else DeviceType.MOTION
    sensor = BleAdvertiser("A4:C1:38:00:00:07", bindkey, battery_pct=55)
    device, adv = parse_sim_advertisement(sensor.report(**{name: True}))
    assert device.address == "A4:C1:38:00:00:07"
    decoder = BthomeDecoder(kind, device.address, bindkey)
    (service_data,) = adv.service_data.values()
    decoded = decoder.decode(service_data)
    assert ("battery_pct", 55.0) in decoded.readings
    expected = BLE_SIGNALS.get(name) or SIGNALS.get(name)
    if expected is None:  # one that says nothing Trygg acts on (NOT_SIGNALS), or a lock's
        assert name in NOT_SIGNALS | {"lock"}, name
        assert signals(decoded) == {}
    else:
        assert signals(decoded)[expected] is True


def test_a_ble_pendant_repeats_a_press_under_one_packet_id_and_the_next_press_is_new() -> None:
    key = bytes.fromhex("814aac74c4f17b6c1581e1ab87816b99")
    pendant = BleAdvertiser("A4:C1:38:00:00:01", key, trigger_based=True)
    first = [parse_sim_advertisement(d)[1] for d in pendant.press()]
    second = [parse_sim_advertisement(d)[1] for d in pendant.press("long_press")]
    assert len(first) == len(second) == 3
    decoder = BthomeDecoder(DeviceType.ALARM_BUTTON, "A4:C1:38:00:00:01", key)
    seqs = []
    for burst in (first, second):
        decoded = decoder.decode(next(iter(burst[0].service_data.values())))
        assert signals(decoded)[Signal.BUTTON_PRESS] is True
        seqs.append(decoded.sequence)
        for repeat in burst[1:]:  # bthome-ble knows the packet id: the same press again
            with pytest.raises(Repeated):
                decoder.decode(next(iter(repeat.service_data.values())))
    assert seqs[0] != seqs[1]
    # Each repeat is a fresh encryption (its own counter), as a real radio sends it.
    assert len({bytes(next(iter(a.service_data.values()))) for a in first}) == 3


def test_the_radio_transmitter_speaks_the_receiver_protocol() -> None:
    pendant = RadioTransmitter(0x00A1B2C3, battery_pct=12, rssi_dbm=-81)
    stream = (
        pendant.check_in()
        + pendant.press(Trigger.PULL_CORD)
        + pendant.low_battery()
        + pendant.tamper(True)
        + pendant.restore(Trigger.PULL_CORD)
    )
    reader = RadioFrameReader()
    frames = []
    for i in range(0, len(stream), 7):  # as a serial port delivers it: in pieces
        frames += reader.feed(stream[i : i + 7])
    kinds = [f.type for f in frames]
    assert kinds == [
        FrameType.CHECK_IN,
        *[FrameType.ALARM] * 3,
        FrameType.LOW_BATTERY,
        FrameType.TAMPER,
        FrameType.RESTORE,
    ]
    assert {f.address for f in frames} == {0x00A1B2C3}
    assert len({f.seq for f in frames[1:4]}) == 1  # the three repeats of one press
    assert signals(frames[1].observations())[Signal.BUTTON_PRESS] is True
    assert ("battery_pct", 12.0) in frames[0].observations().readings


def test_the_gps_walk_leaves_home_loses_its_fix_indoors_and_its_clock_drifts() -> None:
    walk = GpsWalk(55.6050, 13.0038, indoors=True, clock_drift_s=120.0, rng=random.Random(1))
    now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    reader = NmeaLineReader()
    indoors = [decode_sentence(s) for s in reader.feed(walk.sentences(now))]
    assert [f.valid for f in indoors if f] == [False, False]
    walk.indoors, walk.speed_kmh, walk.bearing_deg = False, 5.0, 70.0
    walk.advance(600)  # ten minutes at 5 km/h
    fixes = [decode_sentence(s) for s in reader.feed(walk.sentences(now + timedelta(minutes=10)))]
    gga = next(f for f in fixes if f and f.sentence == "GGA")
    assert gga.valid and gga.latitude is not None and gga.longitude is not None
    assert 780 < distance_m(55.6050, 13.0038, gga.latitude, gga.longitude) < 890
    sentence = walk.sentences(now).decode()
    assert "GPGGA,030200.00" in sentence  # two minutes fast


def test_line_noise_is_dropped_by_the_nmea_reader_without_losing_the_next_sentence() -> None:
    walk = GpsWalk(59.33, 18.07, rng=random.Random(2))
    reader = NmeaLineReader()
    lines = reader.feed(line_noise(random.Random(3)) + walk.sentences(datetime.now(UTC)))
    fixes, refused = [], 0
    for line in lines:
        try:
            fixes.append(decode_sentence(line))
        except CodecError:
            refused += 1
    assert refused >= 1  # the broken sentence the noise ends in
    assert [f.sentence for f in fixes if f is not None and f.valid] == ["GGA", "RMC"]


# -- scenario files --------------------------------------------------------------------

MINIMAL = """
name = "t"
start = "02:00"
end = "02:10"
[[device]]
id = "pendant"
type = "alarm_button"
transport = "ble"
home = "h"
"""


BAD_STEPS_AND_EXPECTATIONS = [
    ('[[step]]\nat = "02:05"\ndevice = "nobody"\ndo = "press"', "no device 'nobody'"),
    ('[[step]]\nat = "02:05"\ndevice = "pendant"\ndo = "walk"', "cannot 'walk'"),
    ('[[step]]\nat = "02:05"\ndevice = "pendant"\ndo = "set"\nargs = {fire = true}', "no fire"),
    ('[[step]]\nat = "02:50"\ndevice = "pendant"\ndo = "press"', "after the scenario ends"),
    ('[[step]]\nat = "2 am"\ndevice = "pendant"\ndo = "press"', "not a time of day"),
    ('[[expect]]\nkind = "smoke"\ndevice = "pendant"', "never raises smoke"),
    ('[[expect]]\nkind = "alarm_button"\ndevice = "pendant"\npriority = "low"', "critical"),
    ('[[expect]]\nkind = "meteor"\ndevice = "pendant"', "no event kind"),
    ('[[device]]\nid = "pendant"\ntype = "smoke"\ntransport = "ble"\nhome = "h"', "twice"),
    ('[[device]]\nid = "g"\ntype = "gps_pendant"\ntransport = "nmea"\nhome = "h"', "latitude"),
    ('[[device]]\nid = "c"\ntype = "camera"\ntransport = "ble"\nhome = "h"', "does not speak"),
    (
        '[[device]]\nid = "x"\ntype = "smoke"\ntransport = "radio"\nhome = "h"\nbindkey = "'
        + "0" * 32
        + '"',
        "only BLE devices have a bindkey",
    ),
    (
        '[[device]]\nid = "x"\ntype = "smoke"\ntransport = "zigbee2mqtt"\nhome = "h"\n'
        'lock = "jams"',
        "only locks have a lock behaviour",
    ),
    ('[[device]]\nid = "x"\ntype = "smoke"\ntransport = "ble_lock"\nhome = "h"', "does not speak"),
    (
        '[[device]]\nid = "x"\ntype = "digital_lock"\ntransport = "ble_lock"\nhome = "h"\n'
        'lock = "explodes"',
        "'obeys', 'jams' or 'silent'",
    ),
    (
        '[[device]]\nid = "x"\ntype = "digital_lock"\ntransport = "ble_lock"\nhome = "h"\n'
        '[[step]]\nat = "02:05"\ndevice = "x"\ndo = "press"',
        "cannot 'press'",
    ),
]
BAD_STEPS_AND_EXPECTATIONS.append(
    (
        '[[device]]\nid = "bed"\ntype = "bed_sensor"\ntransport = "zigbee2mqtt"\nhome = "h"\n'
        '[[expect]]\nkind = "bed_exit_no_return"\ndevice = "bed"',
        "is its home rule on in [rules]?",
    )
)
BAD_TOP_LEVEL = [("speed = -1", "greater than 0"), ("colour = 'red'", "Extra inputs")]


@pytest.mark.parametrize(("extra", "message"), BAD_STEPS_AND_EXPECTATIONS)
def test_a_bad_step_device_or_expectation_is_refused_with_the_reason(
    extra: str, message: str
) -> None:
    with pytest.raises(ScenarioError, match=r"t\.toml") as caught:
        parse_scenario(MINIMAL + extra, "t.toml")
    assert message in str(caught.value)


@pytest.mark.parametrize(("extra", "message"), BAD_TOP_LEVEL)
def test_a_bad_scenario_setting_is_refused_with_the_reason(extra: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=r"t\.toml") as caught:
        parse_scenario(extra + "\n" + MINIMAL, "t.toml")
    assert message in str(caught.value)


def test_a_low_priority_event_cannot_be_expected_as_an_alarm() -> None:
    lock = '[[device]]\nid = "lock"\ntype = "digital_lock"\ntransport = "zigbee2mqtt"\nhome = "h"'
    with pytest.raises(ScenarioError, match="low-priority events are logged, not alarms"):
        parse_scenario(MINIMAL + lock + '\n[[expect]]\nkind = "lock_opened"\ndevice = "lock"')


def test_not_toml_and_a_missing_scenario_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        parse_scenario("[[device", "x.toml")
    with pytest.raises(ScenarioError, match=r"no such file or shipped scenario.*night-fall"):
        load_scenario("no-such-night")
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(binary)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_is_a_scenario_error_and_nothing_else(text: str) -> None:
    with contextlib.suppress(ScenarioError):
        parse_scenario(MINIMAL + text, "fuzz.toml")


def test_a_scenario_may_cross_midnight() -> None:
    scenario = parse_scenario(MINIMAL.replace('"02:00"', '"23:50"').replace('"02:10"', '"00:20"'))
    assert scenario.duration == timedelta(minutes=30)
    assert scenario.offset("00:05") == timedelta(minutes=15)


def test_compare_names_what_is_missing_and_what_is_extra() -> None:
    scenario = load_scenario("smoke")
    alarm = {"device_id": "kitchen-smoke", "kind": "smoke"}
    extra = {"device_id": "pull-cord", "kind": "alarm_button"}
    assert (
        compare(scenario.expected(), [alarm, {"device_id": "bedroom-smoke", "kind": "smoke"}]) == []
    )
    assert compare(scenario.expected(), [alarm, alarm, extra]) == [
        "smoke from bedroom-smoke: expected 1, got 0",
        "smoke from kitchen-smoke: expected 1, got 2",
        "alarm_button from pull-cord: expected 0, got 1",
    ]


def test_a_ble_lock_is_configured_on_the_simulators_gatt_port() -> None:
    lock = '[[device]]\nid = "door-lock"\ntype = "digital_lock"\ntransport = "ble_lock"\nhome = "h"'
    scenario = parse_scenario(MINIMAL + lock)
    config = gateway_config(scenario, Wiring(ble_gatt_port=9999), gateway_id="gw-1")
    assert config["ble"]["sim_gatt_port"] == 9999
    parsed = parse_config(to_toml(config), "t.toml")
    (device,) = [d for d in parsed.devices if d.id == "door-lock"]
    assert (device.transport, device.address) == ("ble_lock", scenario.device[1].mac)
    assert parsed.ble is not None and parsed.ble.sim_gatt_port == 9999
    assert "sim_gatt_port" not in gateway_config(parse_scenario(MINIMAL), Wiring())["ble"]


@pytest.mark.parametrize("name", sorted(shipped()))
def test_each_shipped_scenarios_gateway_configuration_is_valid_toml_the_gateway_accepts(
    name: str,
) -> None:
    scenario = load_scenario(name)
    config = gateway_config(scenario, Wiring(), gateway_id="gw-1")
    text = to_toml(config, f"for {name}")
    assert tomllib.loads(text) == json.loads(json.dumps(config))
    parsed = parse_config(text, name)
    assert {d.id for d in parsed.devices} == {d.id for d in scenario.device}
    assert scenario.step, "a scenario without steps shows nothing"


# -- load ------------------------------------------------------------------------------


def _messages(plan: LoadPlan, n: int) -> list[tuple[str, dict[str, object]]]:
    """The first n reports of a plan's first connection, an alarm every tenth."""
    shard = _Shard(plan, list(range(1, plan.homes + 1)), f"{plan.seed}/0")
    out = []
    for i in range(n):
        if i % 10 == 0:
            alarm = shard.alarm(0.0)
            assert alarm is not None
            messages = alarm[1]
        else:
            messages = [shard.next_report()]
        for topic, payload in messages:
            body = json.loads(payload)
            assert body.pop("last_seen")  # Zigbee2MQTT's timestamp: real time, not seeded
            out.append((topic, body))
    return out


def test_the_same_seed_sends_the_same_messages_and_another_seed_does_not() -> None:
    assert _messages(LoadPlan(homes=50, seed=4), 300) == _messages(LoadPlan(homes=50, seed=4), 300)
    assert _messages(LoadPlan(homes=50, seed=4), 300) != _messages(LoadPlan(homes=50, seed=5), 300)


def test_a_load_plan_names_devices_the_gateway_accepts() -> None:
    plan = LoadPlan(homes=3)
    config = parse_config(
        to_toml({"gateway": {"id": "gw-1"}, "devices": plan.gateway_devices()}), "load"
    )
    assert len(config.devices) == plan.devices == 18
    with pytest.raises(ValueError, match="homes"):
        LoadPlan(homes=0)
    with pytest.raises(ValueError, match="at least one device"):
        LoadPlan(homes=1, mix=())


def test_no_two_load_messages_are_identical_even_a_press_and_its_reset_in_one_tick() -> None:
    """The gateway folds identical messages as duplicates; the load must not send any."""
    plan = LoadPlan(homes=2, mix=(DeviceType.ALARM_BUTTON,), alarms_per_home_per_hour=1)
    shard = _Shard(plan, [1, 2], "0/0")
    sent = []
    for _ in range(500):
        sent.append(shard.next_report())
        alarm = shard.alarm(0.0)
        assert alarm is not None
        sent.extend(alarm[1])
    assert len(set(sent)) == len(sent)


def test_home_rules_reach_the_gateway_with_their_minutes_scaled_to_the_speed() -> None:
    scenario = load_scenario("night-fall")
    at = {speed: gateway_config(scenario, Wiring(), speed=speed)["homes"] for speed in (60, 6)}
    assert at[60] == [
        {
            "id": "home-ingrid",
            "night": "00:00-00:00",
            "bed_exit_return_s": 2,
            "door_open_at_night": False,
        }
    ]
    assert at[6][0]["bed_exit_return_s"] == 20
    assert "homes" not in gateway_config(load_scenario("smoke"), Wiring())
