"""Every red-team input, end to end into a running gateway process: Zigbee2MQTT payloads
on a real mosquitto, NMEA on a serial pty, a replayed BTHome advertisement over the BLE
sim backend. The gateway keeps running, each input is counted once with its reason and
logged once, and an alarm sent right after it reaches the dispatch service."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import httpx
import pytest
from trygg_sim.bthome import advertisement, objects
from trygg_sim.serial import PtyPort

from devices.codecs.nmea import encode_sentence
from gateway.transports.ble import sim_advertisement

from .conftest import GATEWAY_ID, SHARED_DATA, RunningCloud
from .servers import (
    GatewayProcess,
    Mosquitto,
    VictoriaMetrics,
    free_port,
    free_udp_port,
    login,
    mqtt_client,
    wait_until,
)
from .test_faults import cloud_counts, wait_for_log

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ENC = next(
    row
    for row in csv.DictReader((SHARED_DATA / "bthome" / "cases.csv").open(encoding="utf-8"))
    if row["case_id"] == "enc_button"  # a Shelly BLU Button1's encrypted press
)

# Zigbee2MQTT payloads that once escaped the codec (or were accepted and then lost),
# each on its own device so each is logged with its own reason.
MALFORMED, UNEXPECTED = "malformed", "unexpected_value"
Z2M_RED_TEAM = [
    ("deep", b'{"action": "single", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", MALFORMED),
    ("digits", b'{"action": "single", "battery": ' + b"7" * 5000 + b"}", UNEXPECTED),
    ("overflow", b'{"battery": ' + str(10**400).encode() + b"}", UNEXPECTED),
    ("nan", b'{"action": "single", "battery": NaN}', MALFORMED),
    ("surrogate", b'{"action": "\\ud800"}', UNEXPECTED),
    ("nul", b'{"action": "single\\u0000"}', UNEXPECTED),
]
WHY = {
    "deep": "nested deeper than 16",
    "digits": "an integer of 5000 digits",
    "overflow": "an integer of 401 digits",
    "nan": "JSON NaN is not a number",
    "surrogate": "a lone surrogate in text",
    "nul": "a NUL character in text",
}
# In the safe zone (Stockholm, 59.33 N 18.06 E), and 18 km north of it.
INSIDE = "GPGGA,120000.00,5919.800,N,01803.600,E,1,08,0.9,10.0,M,0.0,M,,"
OUTSIDE = "GPGGA,120100.00,5929.800,N,01803.600,E,1,08,0.9,10.0,M,0.0,M,,"
NAN_SPEED = "GPRMC,120030.00,A,5919.800,N,01803.600,E,nan,0.0,021226,,,A"


def config_toml(tmp_path: Path, broker: int, api: int, ble: int, victoria: str) -> str:
    devices = [
        {"id": f"button-{name}", "type": "alarm_button", "address": f"flat-12/{name}"}
        for name, _, _ in Z2M_RED_TEAM
    ]
    me = "".join(f'{key} = "{value}"\n' for key, value in login(GATEWAY_ID).items())
    lines = [
        f'[gateway]\nid = "{GATEWAY_ID}"\n',
        f'[store]\npath = "{tmp_path / "gw.db"}"\n',
        f'[zigbee2mqtt]\nhost = "127.0.0.1"\nport = {broker}\nmax_payload_bytes = 204800\n{me}',
        f'[uplink]\nhost = "127.0.0.1"\nport = {broker}\nack_timeout_s = 2\n{me}',
        f'[api]\nhost = "127.0.0.1"\nport = {api}\n',
        f'[timeseries]\nurl = "{victoria}"\npoll_s = 0.2\n',
        f'[ble]\nbackend = "sim"\nsim_port = {ble}\n',
    ]
    for port in ("gps1", "gps2"):
        lines.append(
            f'[[serial]]\nname = "{port}"\npath = "{tmp_path / port}"\nprotocol = "nmea"\n'
        )
    for d in devices:
        lines.append(
            "[[devices]]\n"
            + "".join(f'{k} = "{v}"\n' for k, v in d.items())
            + 'home = "home-12"\nresident = "res-12"\n'
        )
    for n, port in enumerate(("gps1", "gps2")):
        lines.append(
            f'[[devices]]\nid = "gps-{n}"\ntransport = "nmea"\ntype = "gps_pendant"\n'
            f'port = "{port}"\nhome = "home-12"\nresident = "res-12"\n'
            "safe_zone = { latitude = 59.33, longitude = 18.06, radius_m = 500 }\n"
        )
    lines.append(
        f'[[devices]]\nid = "pendant-ble"\ntransport = "ble"\ntype = "alarm_button"\n'
        f'address = "{ENC["mac"]}"\nbindkey = "{ENC["bindkey"]}"\nhome = "home-12"\n'
    )
    return "\n".join(lines)


async def dropped(api: int) -> dict[str, float]:
    """The gateway's own count of dropped inputs by reason, from its /metrics."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"http://127.0.0.1:{api}/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("trygg_gateway_input_dropped_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('reason="')[1].split('"')[0]] = float(value)
    return out


async def test_red_team_inputs_are_counted_once_and_the_next_alarm_arrives(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    api, ble = free_port(), free_udp_port()
    config = tmp_path / "gateway.toml"
    config.write_text(config_toml(tmp_path, mosquitto.port, api, ble, victoria.url))
    gps1, gps2 = PtyPort(tmp_path / "gps1"), PtyPort(tmp_path / "gps2")
    gps1.plug()
    gps2.plug()
    gw = GatewayProcess(config, tmp_path / "gateway.log")
    gw.start()
    expected: dict[str, float] = {}

    async def arrived(n: int) -> None:
        async def enough() -> bool:
            return (await cloud_counts(sqlite_cloud))[0] >= n

        await wait_until(enough, 20, interval_s=0.1)

    async def counted(reason: str, n: int = 1) -> None:
        expected[reason] = expected.get(reason, 0) + n

        async def seen() -> bool:
            return (await dropped(api)).get(reason, 0) >= expected[reason]

        await wait_until(seen, 20, interval_s=0.1)

    try:
        await wait_for_log(gw, "subscribed to zigbee2mqtt/#")
        await wait_for_log(gw, "serial gps1 open")
        await wait_for_log(gw, "serial gps2 open")
        await wait_for_log(gw, "BLE scanning (sim backend)")
        alarms = 0
        async with mqtt_client(mosquitto.port) as device_side:
            for name, payload, reason in Z2M_RED_TEAM:
                topic = f"zigbee2mqtt/flat-12/{name}"
                await device_side.publish(topic, payload, qos=1)
                await counted(reason)
                message = {"action": "single", "linkquality": alarms}
                await device_side.publish(topic, json.dumps(message), qos=1)
                alarms += 1
                await arrived(alarms)

        # GPS ports: an RMC speed of nan on one; u-blox's empty proprietary sentence, 50
        # times, on the other. Then each pendant leaves its safe zone.
        for port, bad, n in ((gps1, encode_sentence(NAN_SPEED), 1), (gps2, b"$PUBX*1F\r\n", 50)):
            port.write(encode_sentence(INSIDE) + bad * n)
            await counted("malformed", n)
            port.write(encode_sentence(OUTSIDE))
            alarms += 1
            await arrived(alarms)

        # BLE: the real capture, the next press, the capture replayed, the press after.
        key, mac = bytes.fromhex(ENC["bindkey"]), ENC["mac"]

        def press(packet_id: int, counter: int) -> bytes:
            body = objects(packet_id=packet_id, battery=99, button="press")
            return advertisement(body, trigger_based=True, bindkey=key, mac=mac, counter=counter)

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for data in (bytes.fromhex(ENC["payload_hex"]), press(8, 0x1BB)):
                sock.sendto(sim_advertisement(mac, data), ("127.0.0.1", ble))
                alarms += 1
                await arrived(alarms)
            sock.sendto(
                sim_advertisement(mac, bytes.fromhex(ENC["payload_hex"])), ("127.0.0.1", ble)
            )
            await counted("replayed")
            sock.sendto(sim_advertisement(mac, press(9, 0x1BC)), ("127.0.0.1", ble))
            alarms += 1
            await arrived(alarms)

        assert gw.running()
        assert await dropped(api) == expected
        assert (await cloud_counts(sqlite_cloud))[0] == alarms
    finally:
        code = gw.terminate()
        gps1.unplug()
        gps2.unplug()
    log = gw.text()
    assert code in (0, -15), log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    for name, _, reason in Z2M_RED_TEAM:
        (line,) = [x for x in log.splitlines() if f"from mqtt:zigbee2mqtt/flat-12/{name}:" in x]
        assert f"dropped {reason} input" in line and WHY[name] in line
    (nan,) = [x for x in log.splitlines() if "dropped malformed input from serial:gps1" in x]
    assert "not a number: 'nan'" in nan
    (pubx,) = [x for x in log.splitlines() if "dropped malformed input from serial:gps2" in x]
    assert "unparseable 'PUBX' sentence (IndexError)" in pubx
    assert "encryption counter 442 is behind 443" in log
