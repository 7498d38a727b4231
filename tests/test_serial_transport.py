"""The serial transport through a real pseudo-terminal pair, opened by path with pyserial.

The port's path is a symlink to the pty's slave side, as udev's /dev/serial/by-id links
are: unplugging closes the pty and removes the link; plugging in again makes a new pty
(with a new /dev/pts number) behind the same path.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from trygg_sim.serial import PtyPort

from devices import Event, Priority
from devices.codecs.nmea import decode_sentence, encode_sentence
from devices.codecs.radio import FrameType, RadioFrame, Trigger, encode_frame
from gateway import DropReason, GatewayConfig, InputCounters, Pipeline, Registry, Store
from gateway.readings import ReadingsBuffer
from gateway.transports.serial import SerialTransport

from .conftest import SHARED_DATA
from .servers import wait_until

PENDANT = 0x00A1B2C3
SMOKE = 0x00A1B2C4


def make_config(tmp_path: Path, **port: object) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1"},
            "serial": [
                {"name": "radio1", "path": str(tmp_path / "ttyRADIO"), "protocol": "radio", **port},
                {"name": "gps1", "path": str(tmp_path / "ttyGPS"), "protocol": "nmea", **port},
            ],
            "devices": [
                {
                    "id": "pendant-7",
                    "transport": "radio",
                    "type": "alarm_button",
                    "port": "radio1",
                    "radio_address": PENDANT,
                    "home": "home-7",
                    "resident": "res-7",
                },
                {
                    "id": "smoke-7",
                    "transport": "radio",
                    "type": "smoke",
                    "port": "radio1",
                    "radio_address": SMOKE,
                    "home": "home-7",
                },
                {
                    "id": "gps-7",
                    "transport": "nmea",
                    "type": "gps_pendant",
                    "port": "gps1",
                    "home": "home-7",
                    # The bu353s4 capture was logged at about 37.785 S, 175.315 E.
                    "safe_zone": {"latitude": -37.785, "longitude": 175.315, "radius_m": 5000},
                    "tracking": True,  # consented: its positions are kept as readings
                },
            ],
        }
    )


Rig = tuple[Pipeline, Callable[[str], SerialTransport], PtyPort, PtyPort]


@pytest.fixture
async def rig(tmp_path: Path, store: Store) -> AsyncIterator[Rig]:
    config = make_config(tmp_path, lost_after_s=1.0)
    readings = ReadingsBuffer(store)
    pipeline = Pipeline("gw-1", Registry(config.devices), store, InputCounters(), readings=readings)
    transports = {p.name: SerialTransport(p, pipeline) for p in config.serial}
    radio, gps = PtyPort(tmp_path / "ttyRADIO"), PtyPort(tmp_path / "ttyGPS")
    radio.plug()
    gps.plug()
    tasks = [asyncio.create_task(t.run()) for t in transports.values()]
    for t in transports.values():
        await asyncio.wait_for(t.connected.wait(), 10)
    yield pipeline, transports.__getitem__, radio, gps
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    radio.unplug()
    gps.unplug()


async def events(store: Store) -> list[Event]:
    return [p.event for p in await store.pending(1000)]


def press(seq: int, address: int = PENDANT) -> bytes:
    return encode_frame(RadioFrame(FrameType.ALARM, address, seq, bytes([Trigger.BUTTON])))


async def wait_for_events(store: Store, n: int) -> list[Event]:
    async def enough() -> bool:
        return len(await events(store)) >= n

    await wait_until(enough)
    return await events(store)


async def test_a_radio_press_through_the_pty_is_a_critical_event(rig: Rig, store: Store) -> None:
    pipeline, _, radio, _ = rig
    # The pendant repeats each press three times, as social-alarm radios do.
    radio.write(press(41) * 3)
    (event,) = await wait_for_events(store, 1)
    assert (event.kind, event.priority, event.device_id, event.resident_id) == (
        "alarm_button",
        Priority.CRITICAL,
        "pendant-7",
        "res-7",
    )
    assert event.detail == {"seq": 41, "trigger": "button"}
    await wait_until(lambda: pipeline.counters.dropped[DropReason.DUPLICATE] == 2)
    radio.write(press(42))  # a new press: the next sequence number
    assert [e.kind for e in await wait_for_events(store, 2)] == ["alarm_button"] * 2


async def test_noise_and_bad_frames_are_counted_and_good_frames_still_arrive(
    rig: Rig, store: Store
) -> None:
    pipeline, _, radio, _ = rig
    bad_crc = bytearray(press(1))
    bad_crc[-1] ^= 0xFF
    unknown_trigger = encode_frame(RadioFrame(FrameType.ALARM, PENDANT, 2, b"\x7f"))
    stranger = press(3, address=0x0BADBEEF)
    rng = random.Random(7)
    noise = bytes(rng.randrange(256) for _ in range(300)).replace(b"\xa5", b"\x00")
    smoke = encode_frame(RadioFrame(FrameType.ALARM, SMOKE, 4, bytes([Trigger.SMOKE])))
    stream = noise + bytes(bad_crc) + unknown_trigger + stranger + noise + press(5) + smoke
    for i in range(0, len(stream), 7):  # a slow line: small chunks
        radio.write(stream[i : i + 7])
    found = await wait_for_events(store, 2)
    assert sorted(e.kind for e in found) == ["alarm_button", "smoke"]
    dropped = pipeline.counters.dropped
    assert dropped[DropReason.MALFORMED] >= 2  # the bad CRC and the unknown trigger
    assert dropped[DropReason.UNKNOWN_DEVICE] == 1
    (stranger_entry,) = await store.discovered()
    assert (stranger_entry.transport, stranger_entry.address) == ("radio", "radio1/0BADBEEF")


async def test_check_ins_set_battery_and_signal(rig: Rig) -> None:
    pipeline, _, radio, _ = rig
    check_in = RadioFrame(FrameType.CHECK_IN, PENDANT, 9, bytes([77, 256 - 71]))
    radio.write(encode_frame(check_in))
    device = pipeline.registry.get("pendant-7")
    assert device is not None
    await wait_until(lambda: device.status.battery_pct == 77)
    assert device.status.rssi_dbm == -71


async def test_unplug_and_replug_carries_on(rig: Rig, store: Store) -> None:
    _, transport, radio, _ = rig
    port = transport("radio1")
    radio.write(press(10))
    await wait_for_events(store, 1)
    radio.unplug()
    await wait_until(lambda: not port.connected.is_set())
    assert port.unplugs == 1
    await asyncio.sleep(0.3)
    radio.plug()  # a new pty behind the same path
    await asyncio.wait_for(port.connected.wait(), 10)
    radio.write(press(11))
    assert len(await wait_for_events(store, 2)) == 2
    assert port.opens == 2


async def test_a_port_away_too_long_is_radio_lost_and_restored_on_return(
    rig: Rig, store: Store
) -> None:
    _, transport, radio, _ = rig
    port = transport("radio1")
    radio.unplug()
    found = await wait_for_events(store, 2)  # lost_after_s = 1 in this rig
    assert sorted((e.kind, e.device_id, e.restore) for e in found) == [
        ("radio_lost", "pendant-7", False),
        ("radio_lost", "smoke-7", False),
    ]
    assert all(e.priority is Priority.NORMAL for e in found)
    assert port.lost
    radio.plug()
    found = await wait_for_events(store, 4)
    assert sorted((e.device_id, e.restore) for e in found if e.restore) == [
        ("pendant-7", True),
        ("smoke-7", True),
    ]


async def test_a_missing_port_at_start_is_retried_until_it_appears(
    tmp_path: Path, store: Store
) -> None:
    config = make_config(tmp_path)
    pipeline = Pipeline("gw-1", Registry(config.devices), store, InputCounters())
    port = SerialTransport(config.serial[0], pipeline)
    task = asyncio.create_task(port.run())
    try:
        await wait_until(lambda: port.open_failures >= 2)
        assert not port.connected.is_set()
        cable = PtyPort(tmp_path / "ttyRADIO")
        cable.plug()
        await asyncio.wait_for(port.connected.wait(), 10)
        cable.write(press(1))
        assert len(await wait_for_events(store, 1)) == 1
        cable.unplug()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_real_gps_capture_through_the_pty_gives_positions(rig: Rig, store: Store) -> None:
    pipeline, _, _, gps = rig
    capture = (SHARED_DATA / "nmea" / "bu353s4.log").read_bytes()
    body = b"".join(
        line + b"\n" for line in capture.split(b"\n") if line.strip() and not line.startswith(b"#")
    )
    rng = random.Random(3)
    i = 0
    while i < len(body):
        n = rng.randint(1, 64)
        gps.write(body[i : i + n])
        i += n
    device = pipeline.registry.get("gps-7")
    assert device is not None
    await wait_until(lambda: pipeline.counters.accepted["reading"] >= 40)
    assert pipeline.counters.dropped[DropReason.MALFORMED] == 0
    readings = pipeline._readings
    assert readings is not None
    await readings.flush()
    rows = await store.readings(100_000)
    latitudes = [r.value for r in rows if r.metric == "latitude" and r.device_id == "gps-7"]
    assert latitudes and all(-37.79 < lat < -37.78 for lat in latitudes)
    assert await events(store) == []  # inside the safe zone: no alarm


def dm(value: float, degree_digits: int, hemis: str) -> str:
    """Degrees as NMEA writes them (ddmm.mmmm or dddmm.mmmm) and the hemisphere."""
    d = int(abs(value))
    minutes = (abs(value) - d) * 60
    return f"{d:0{degree_digits}d}{minutes:07.4f},{hemis[value < 0]}"


def sentence(lat: float, lon: float) -> bytes:
    body = f"GPGGA,020000.00,{dm(lat, 2, 'NS')},{dm(lon, 3, 'EW')},1,08,0.9,10.0,M,0.0,M,,"
    return encode_sentence(body)


async def test_leaving_the_safe_zone_is_a_high_alarm_and_coming_back_a_restore(
    rig: Rig, store: Store
) -> None:
    pipeline, _, _, gps = rig
    walk = [(-37.785, 175.315), (-37.755, 175.315), (-37.695, 175.315), (-37.685, 175.315)]
    for lat, lon in walk:  # 0 m, 3.3 km, 10 km (out), 11 km (still out)
        gps.write(sentence(lat, lon))
    (event,) = await wait_for_events(store, 1)
    assert (event.kind, event.priority, event.restore) == ("geofence_exit", Priority.HIGH, False)
    assert event.detail["latitude"] == pytest.approx(-37.695, abs=1e-4)
    accepted = pipeline.counters.accepted["reading"]
    gps.write(sentence(-37.741, 175.315))  # 4.9 km: inside the edge, not yet well inside
    await wait_until(lambda: pipeline.counters.accepted["reading"] > accepted)
    assert len(await events(store)) == 1  # no restore yet: a walk along the edge is one exit
    gps.write(sentence(-37.775, 175.315))  # back home
    found = await wait_for_events(store, 2)
    assert [(e.kind, e.restore) for e in found] == [
        ("geofence_exit", False),
        ("geofence_exit", True),
    ]


async def test_a_receiver_at_the_nmea_standard_rate_by_default(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert [p.speed for p in config.serial] == [115_200, 4800]


async def test_pubx_and_nan_spliced_into_a_real_capture_are_counted_and_the_stream_goes_on(
    rig: Rig, store: Store
) -> None:
    """gpsd's bu353s4 capture with u-blox's empty "$PUBX*1F" (valid checksum; pynmea2
    raised IndexError on it and the serial task died) and an RMC speed of "nan" (a NaN
    reading then failed the readings store) after every tenth sentence."""
    pipeline, _, radio, gps = rig
    capture = (SHARED_DATA / "nmea" / "bu353s4.log").read_bytes()
    lines = [line for line in capture.split(b"\n") if line.strip() and not line.startswith(b"#")]
    nan_speed = encode_sentence("GPRMC,081836,A,3751.65,S,14507.36,E,nan,360.0,130998,011.3,E")
    stream = b""
    spliced = 0
    for n, line in enumerate(lines):
        stream += line + b"\n"
        if n % 10 == 9:
            stream += b"$PUBX*1F\r\n" + nan_speed
            spliced += 2
    gps.write(stream)
    await wait_until(lambda: pipeline.counters.dropped[DropReason.MALFORMED] == spliced)
    await wait_until(lambda: pipeline.counters.accepted["reading"] >= 40)
    readings = pipeline._readings
    assert readings is not None
    await readings.flush()
    rows = await store.readings(100_000)
    assert rows and all(math.isfinite(r.value) for r in rows)
    reasons = pipeline.counters.last_detail
    assert reasons[DropReason.MALFORMED, "serial:gps1"] in (
        "unparseable 'PUBX' sentence (IndexError)",
        "not a number: 'nan'",
    )
    radio.write(press(60))  # and the receiver on the other port still takes an alarm
    (event,) = await wait_for_events(store, 1)
    assert event.kind == "alarm_button"


def fix(lat: float, lon: float, satellites: int, hdop: float) -> bytes:
    """A GGA fix with its quality, and the RMC a receiver sends beside it."""

    where = f"{dm(lat, 2, 'NS')},{dm(lon, 3, 'EW')}"
    gga = f"GPGGA,020000.00,{where},1,{satellites:02d},{hdop:.1f},10.0,M,0.0,M,,"
    rmc = f"GPRMC,020000.00,A,{where},0.0,0.0,011226,,,A"
    return encode_sentence(gga) + encode_sentence(rmc)


async def test_a_single_bad_fix_outside_the_zone_raises_nothing_and_the_first_good_one_does(
    rig: Rig, store: Store
) -> None:
    """Three satellites and an HDOP of 7.2 (as the garmin-10x capture has): a fix
    that can be far off. Neither it nor its RMC places the resident; a good fix does."""
    pipeline, _, _, gps = rig
    gps.write(fix(-37.785, 175.315, 8, 0.9))  # at home
    accepted = pipeline.counters.accepted["reading"]
    gps.write(fix(-37.695, 175.315, 3, 7.2))  # "10 km away": few satellites, poor HDOP
    gps.write(fix(-37.695, 175.315, 9, 9.5))  # enough satellites, HDOP still poor
    await wait_until(lambda: pipeline.counters.accepted["reading"] >= accepted + 4)
    assert await events(store) == []
    readings = pipeline._readings
    assert readings is not None
    await readings.flush()
    rows = await store.readings(100_000)
    latitudes = [r.value for r in rows if r.metric == "latitude"]
    assert latitudes and all(lat == pytest.approx(-37.785, abs=1e-4) for lat in latitudes)
    assert {r.value for r in rows if r.metric == "hdop"} == {0.9, 7.2, 9.5}
    gps.write(fix(-37.695, 175.315, 7, 1.2))  # the first good fix outside
    (event,) = await wait_for_events(store, 1)
    assert (event.kind, event.restore) == ("geofence_exit", False)
    assert event.detail["latitude"] == pytest.approx(-37.695, abs=1e-4)


def test_the_real_captures_bad_fix_is_not_good_and_its_good_ones_are() -> None:
    lines = (SHARED_DATA / "nmea" / "garmin-10x.log").read_bytes().splitlines()
    fixes = [f for line in lines if b"GGA" in line and (f := decode_sentence(line))]
    bad = [f for f in fixes if f.valid and not f.good()]
    # Three satellites: a 2D fix at best, with HDOP 7.2 and 2.2.
    assert [(f.satellites, f.hdop) for f in bad] == [(3, 7.2), (3, 2.2)]
    assert sum(1 for f in fixes if f.good()) >= 6


async def test_the_fence_state_survives_a_gateway_restart(
    rig: Rig, store: Store, tmp_path: Path
) -> None:
    """Out of the zone, then the gateway restarts (a new pipeline on the same store): the
    next fix outside is no second alarm, and coming home is the restore."""
    _, _, _, gps = rig
    gps.write(fix(-37.785, 175.315, 8, 0.9) + fix(-37.695, 175.315, 8, 0.9))  # out
    (left,) = await wait_for_events(store, 1)
    assert (left.kind, left.restore) == ("geofence_exit", False)
    config = make_config(tmp_path)
    again = Pipeline("gw-1", Registry(config.devices), store, InputCounters())
    await again.load()
    device = again.registry.get("gps-7")
    assert device is not None
    for line in fix(-37.690, 175.315, 8, 0.9).splitlines():  # still out, after the restart
        found = decode_sentence(line)
        assert found is not None
        await again.accept(device, found.observations())
    assert len(await events(store)) == 1
    for line in fix(-37.785, 175.315, 8, 0.9).splitlines():  # home again
        found = decode_sentence(line)
        assert found is not None
        await again.accept(device, found.observations())
    found_events = await events(store)
    assert [(e.kind, e.restore) for e in found_events] == [
        ("geofence_exit", False),
        ("geofence_exit", True),
    ]
