"""The BLE transport: real bleak ``BLEDevice`` / ``AdvertisementData`` objects into the
scanner's detection callback (there is no radio here), the simulator's UDP backend
through bleak's own ``BleakScanner``, and the platform scanner failing without BlueZ."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import socket
from collections.abc import AsyncIterator

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from hypothesis import given
from hypothesis import strategies as st
from trygg_sim.bthome import advertisement, objects

from devices import Event, Priority
from devices.codecs.bthome import BTHOME_UUID
from gateway import DropReason, GatewayConfig, InputCounters, Pipeline, Registry, Store
from gateway.config import BleSection
from gateway.transports.ble import BleTransport, parse_sim_advertisement, sim_advertisement

from .conftest import SHARED_DATA
from .servers import free_udp_port, wait_until

CASES = {
    row["case_id"]: row
    for row in csv.DictReader((SHARED_DATA / "bthome" / "cases.csv").open(encoding="utf-8"))
}
ENC = CASES["enc_button"]  # a Shelly BLU Button1's encrypted press, with its bindkey
PLAIN_MAC = "A4:C1:38:8D:18:B2"


def config(**ble: object) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1"},
            "ble": ble,
            "devices": [
                {
                    "id": "pendant-enc",
                    "transport": "ble",
                    "type": "alarm_button",
                    "address": ENC["mac"].lower(),  # any case; the registry keys upper case
                    "bindkey": ENC["bindkey"],
                    "home": "home-3",
                    "resident": "res-3",
                },
                {
                    "id": "pendant-plain",
                    "transport": "ble",
                    "type": "alarm_button",
                    "address": PLAIN_MAC,
                    "home": "home-3",
                },
                {
                    "id": "smoke-ble",
                    "transport": "ble",
                    "type": "smoke",
                    "address": "11:22:33:44:55:66",
                    "home": "home-3",
                },
            ],
        }
    )


def radio(
    address: str, service_data: bytes, rssi: int = -67
) -> tuple[BLEDevice, AdvertisementData]:
    """What bleak hands the detection callback for one BTHome advertisement."""
    adv = AdvertisementData(
        local_name=None,
        manufacturer_data={},
        service_data={BTHOME_UUID: service_data},
        service_uuids=[BTHOME_UUID],
        tx_power=None,
        rssi=rssi,
        platform_data=(),
    )
    return BLEDevice(address, None, None), adv


@pytest.fixture
async def ble(store: Store) -> AsyncIterator[BleTransport]:
    """A transport whose consumer runs; advertisements go in through the callback."""
    cfg = config()
    pipeline = Pipeline("gw-1", Registry(cfg.devices), store, InputCounters())
    transport = BleTransport(BleSection(), pipeline)
    consumer = asyncio.create_task(transport._consume())
    yield transport
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)


async def events(store: Store) -> list[Event]:
    return [p.event for p in await store.pending(1000)]


async def settle(transport: BleTransport) -> None:
    await wait_until(lambda: transport._queue.empty())
    await asyncio.sleep(0.05)  # the last item taken is being handled


async def test_an_encrypted_press_from_the_real_capture_is_a_critical_event(
    ble: BleTransport, store: Store
) -> None:
    ble.on_advertisement(*radio(ENC["mac"], bytes.fromhex(ENC["payload_hex"]), rssi=-58))
    await settle(ble)
    (event,) = await events(store)
    assert (event.kind, event.priority, event.device_id, event.resident_id) == (
        "alarm_button",
        Priority.CRITICAL,
        "pendant-enc",
        "res-3",
    )
    device = ble.pipeline.device("ble", ENC["mac"].upper())
    assert device is not None
    assert (device.status.battery_pct, device.status.rssi_dbm) == (100, -58)


async def test_a_retransmission_is_one_alarm_and_a_repeated_press_is_two(
    ble: BleTransport, store: Store
) -> None:
    key, mac = bytes.fromhex(ENC["bindkey"]), ENC["mac"]

    def press(packet_id: int, counter: int) -> bytes:
        body = objects(packet_id=packet_id, battery=99, button="press")
        return advertisement(body, trigger_based=True, bindkey=key, mac=mac, counter=counter)

    # A button sends each press in a burst of advertisements with one packet id.
    for counter in (500, 501, 502):
        ble.on_advertisement(*radio(mac, press(8, counter)))
    await settle(ble)
    assert len(await events(store)) == 1
    assert ble.pipeline.counters.dropped[DropReason.DUPLICATE] == 2
    ble.on_advertisement(*radio(mac, press(9, 503)))  # pressed again
    await settle(ble)
    assert [e.kind for e in await events(store)] == ["alarm_button", "alarm_button"]


async def test_a_wrong_key_or_a_plain_forgery_is_refused_and_not_taken_for_life(
    ble: BleTransport, store: Store
) -> None:
    mac = ENC["mac"]
    device = ble.pipeline.device("ble", ENC["mac"].upper())
    assert device is not None
    seen_before = device.status.last_seen
    wrong = advertisement(
        objects(packet_id=1, button="press"), bindkey=b"\x01" * 16, mac=mac, counter=1
    )
    ble.on_advertisement(*radio(mac, wrong))
    plain = advertisement(objects(packet_id=2, button="press"))  # a spoofed plain press
    ble.on_advertisement(*radio(mac, plain))
    await settle(ble)
    assert await events(store) == []
    assert ble.pipeline.counters.dropped[DropReason.UNEXPECTED_VALUE] == 2
    assert device.status.last_seen == seen_before


async def test_sensors_and_garbage(ble: BleTransport, store: Store) -> None:
    smoke = "11:22:33:44:55:66"
    ble.on_advertisement(*radio(smoke, advertisement(objects(packet_id=1, smoke=True))))
    ble.on_advertisement(*radio(smoke, b"\x40\xff\xff\xff"))  # an unknown object id
    ble.on_advertisement(*radio(smoke, b""))
    ble.on_advertisement(*radio(smoke, b"\x40" * 200))  # longer than any advertisement
    ble.on_advertisement(
        *radio(PLAIN_MAC, bytes.fromhex(CASES["button_long_press"]["payload_hex"]))
    )
    await settle(ble)
    assert sorted((e.kind, e.device_id) for e in await events(store)) == [
        ("alarm_button", "pendant-plain"),
        ("smoke", "smoke-ble"),
    ]
    assert ble.pipeline.counters.dropped[DropReason.MALFORMED] == 2
    assert ble.pipeline.counters.dropped[DropReason.UNEXPECTED_VALUE] == 1


async def test_unknown_bthome_devices_are_discovered_and_other_beacons_ignored(
    ble: BleTransport, store: Store
) -> None:
    stranger = "DE:AD:BE:EF:00:01"
    ble.on_advertisement(*radio(stranger, advertisement(objects(packet_id=1, button="press"))))
    phone = AdvertisementData(None, {76: b"\x02\x15"}, {}, [], None, -40, ())
    ble.on_advertisement(BLEDevice("12:34:56:78:9A:BC", None, None), phone)
    await settle(ble)
    (found,) = await store.discovered()
    assert (found.transport, found.address) == ("ble", stranger)
    assert await events(store) == []
    assert ble.pipeline.counters.dropped[DropReason.UNKNOWN_DEVICE] == 1


async def test_a_full_queue_drops_and_counts_instead_of_blocking(store: Store) -> None:
    cfg = config()
    pipeline = Pipeline("gw-1", Registry(cfg.devices), store, InputCounters())
    transport = BleTransport(BleSection(max_queue=10), pipeline)  # no consumer running
    for i in range(25):
        transport.on_advertisement(*radio(PLAIN_MAC, advertisement(objects(packet_id=i))))
    assert pipeline.counters.dropped[DropReason.QUEUE_FULL] == 15


async def run_transport(transport: BleTransport) -> asyncio.Task[None]:
    task = asyncio.create_task(transport.run())
    await asyncio.wait_for(transport.scanning.wait(), 10)
    return task


async def test_the_sim_backend_feeds_bleaks_scanner_over_udp(store: Store) -> None:
    port = free_udp_port()
    cfg = config(backend="sim", sim_port=port)
    pipeline = Pipeline("gw-1", Registry(cfg.devices), store, InputCounters())
    transport = BleTransport(cfg.ble or BleSection(), pipeline)
    task = await run_transport(transport)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            deep = b"[" * 2000 + b"]" * 40  # a RecursionError in json, once
            for garbage in (b"", b"{", b"[]", b'{"address": 5}', b"\xff" * 3000, deep):
                sock.sendto(garbage, ("127.0.0.1", port))
            data = bytes.fromhex(ENC["payload_hex"])
            sock.sendto(sim_advertisement(ENC["mac"], data, rssi=-61), ("127.0.0.1", port))
            await wait_until(lambda: store.pending(10))
        (event,) = await events(store)
        assert (event.kind, event.device_id) == ("alarm_button", "pendant-enc")
        assert transport.scanner is not None
        backend = transport.scanner._backend
        assert getattr(backend, "bad_datagrams") == 6  # noqa: B009
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_replayed_encrypted_press_is_counted_and_raises_no_second_alarm(
    store: Store,
) -> None:
    """A captured advertisement sent again over the sim backend, as an attacker's radio
    would: counted as a replay, no event; the pendant's own next press is an alarm."""
    port = free_udp_port()
    cfg = config(backend="sim", sim_port=port)
    pipeline = Pipeline("gw-1", Registry(cfg.devices), store, InputCounters())
    transport = BleTransport(cfg.ble or BleSection(), pipeline)
    key, mac = bytes.fromhex(ENC["bindkey"]), ENC["mac"]
    captured = bytes.fromhex(ENC["payload_hex"])  # the real press, encryption counter 0x1BA

    def press(packet_id: int, counter: int) -> bytes:
        body = objects(packet_id=packet_id, battery=99, button="press")
        return advertisement(body, trigger_based=True, bindkey=key, mac=mac, counter=counter)

    async def stored(n: int) -> bool:
        return len(await events(store)) == n

    def send(data: bytes) -> None:
        sock.sendto(sim_advertisement(mac, data), ("127.0.0.1", port))

    task = await run_transport(transport)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            send(captured)
            await wait_until(lambda: stored(1))
            send(press(8, 0x1BB))  # the resident presses again
            await wait_until(lambda: stored(2))
            send(captured)  # the replay
            await wait_until(lambda: pipeline.counters.dropped[DropReason.REPLAYED] == 1)
            send(press(9, 0x1BC))  # and the pendant's next press
            await wait_until(lambda: stored(3))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [e.kind for e in await events(store)] == ["alarm_button"] * 3
    assert pipeline.counters.by_source[DropReason.REPLAYED, f"ble:{mac}"] == 1
    assert (
        "counter 442 is behind 443"
        in pipeline.counters.last_detail[DropReason.REPLAYED, f"ble:{mac}"]
    )


async def test_a_quiet_scanner_is_restarted_and_hears_again(store: Store) -> None:
    port = free_udp_port()
    cfg = config(backend="sim", sim_port=port, quiet_restart_s=1)
    pipeline = Pipeline("gw-1", Registry(cfg.devices), store, InputCounters())
    transport = BleTransport(cfg.ble or BleSection(), pipeline)
    task = await run_transport(transport)
    try:
        await wait_until(lambda: transport.restarts >= 1, limit_s=10)
        await asyncio.wait_for(transport.scanning.wait(), 10)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            data = bytes.fromhex(CASES["button_press_battery"]["payload_hex"])
            sock.sendto(sim_advertisement(PLAIN_MAC, data), ("127.0.0.1", port))
            await wait_until(lambda: store.pending(10))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_without_bluez_the_platform_scanner_is_retried_not_fatal(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config()
    pipeline = Pipeline("gw-1", Registry(cfg.devices), store, InputCounters())
    transport = BleTransport(BleSection(), pipeline)
    task = asyncio.create_task(transport.run())
    try:
        await wait_until(lambda: "BLE scanner (bleak) did not start" in caplog.text)
        assert not task.done()
        assert not transport.scanning.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@given(st.binary(max_size=300))
def test_arbitrary_datagrams_raise_only_value_errors(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_sim_advertisement(data)


@given(
    st.dictionaries(
        st.sampled_from(["address", "name", "rssi", "service_data", "other"]),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=20),
            st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=2),
        ),
    )
)
def test_arbitrary_json_objects_raise_only_value_errors(raw: dict[str, object]) -> None:
    with contextlib.suppress(ValueError):
        parse_sim_advertisement(json.dumps(raw).encode())
