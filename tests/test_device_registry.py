"""The device registry through a running gateway: its technician API and the
``trygg gateway devices`` CLI run as a real process against it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from trygg_sim.bthome import advertisement, objects

from gateway import Gateway
from gateway.transports.ble import sim_advertisement

from .conftest import gateway_config
from .servers import Mosquitto, free_udp_port, run_trygg, wait_until

TOKEN = "technician-token-0123456789"
NEW_MAC = "D0:0D:00:00:00:42"


class Rig:
    def __init__(self, gateway: Gateway, udp_port: int) -> None:
        self.gateway = gateway
        self.udp_port = udp_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.api_port}"

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)

    def advertise(self, mac: str, data: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(sim_advertisement(mac, data), ("127.0.0.1", self.udp_port))

    async def cli(self, *args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
        extra = ["--url", self.url] + (["--token", token] if token else [])
        return await run_trygg("gateway", "devices", *args, *extra, limit_s=60)


def make_gateway(mosquitto: Mosquitto, store: Path, udp_port: int) -> Gateway:
    extra: dict[str, object] = {
        "api": {"port": 0, "technician_token": TOKEN},
        "ble": {"backend": "sim", "sim_port": udp_port},
    }
    return Gateway(gateway_config(mosquitto, store, extra=extra))


@pytest.fixture
async def rig(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Rig]:
    udp_port = free_udp_port()
    async with make_gateway(mosquitto, tmp_path / "gw.db", udp_port) as gateway:
        await asyncio.wait_for(gateway.link("ble").ready.wait(), 10)
        yield Rig(gateway, udp_port)


def press(packet_id: int) -> bytes:
    return advertisement(objects(packet_id=packet_id, battery=88, button="press"))


async def test_a_technician_pairs_a_heard_device_and_its_press_is_an_alarm(rig: Rig) -> None:
    rig.advertise(NEW_MAC, press(1))
    await wait_until(rig.gateway.store.discovered)
    code, out, err = await rig.cli("discovered")
    assert code == 0, err
    assert "ble" in out and NEW_MAC in out
    assert await rig.gateway.store.pending(10) == []  # heard, not ingested

    code, out, err = await rig.cli(
        "pair",
        "--id",
        "pendant-new",
        "--type",
        "alarm_button",
        "--transport",
        "ble",
        "--address",
        NEW_MAC.lower(),
        "--home",
        "home-12",
    )
    assert code == 0, err
    assert f"paired pendant-new (ble:{NEW_MAC})" in out
    assert await rig.gateway.store.discovered() == []

    rig.advertise(NEW_MAC, press(2))
    await wait_until(lambda: rig.gateway.store.pending(10))
    (pending,) = await rig.gateway.store.pending(10)
    assert (pending.event.kind, pending.event.device_id) == ("alarm_button", "pendant-new")

    code, out, err = await rig.cli("list")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("pendant-new"))
    assert "88%" in line and "-60 dBm" in line and " ok" in line
    assert "pendant-1" in out  # the config file's devices are listed too


async def test_the_api_lists_status_and_refuses_what_it_cannot_take(rig: Rig) -> None:
    async with rig.client() as api:
        devices = (await api.get("/devices")).json()
        assert {d["id"] for d in devices} >= {"pendant-1", "smoke-1", "door-1", "lock-1"}
        pendant = next(d for d in devices if d["id"] == "pendant-1")
        assert pendant["origin"] == "config" and pendant["transport"] == "zigbee2mqtt"
        assert {"last_seen", "battery_pct", "rssi_dbm", "linkquality", "firmware"} <= set(pendant)

        taken = {
            "id": "pendant-1",
            "type": "smoke",
            "transport": "zigbee2mqtt",
            "address": "elsewhere",
            "home": "h",
        }
        response = await api.post("/devices", json=taken)
        assert response.status_code == 409 and "exists already" in response.json()["detail"]
        same_address = {**taken, "id": "other", "address": "kitchen_smoke"}
        response = await api.post("/devices", json=same_address)
        assert response.status_code == 409 and "belongs to 'smoke-1'" in response.json()["detail"]

        for bad, words in [
            (
                {"id": "x", "type": "toaster", "transport": "ble", "address": NEW_MAC, "home": "h"},
                "type",
            ),
            (
                {"id": "x", "type": "smoke", "transport": "ble", "address": "nope", "home": "h"},
                "address",
            ),
            (
                {
                    "id": "x",
                    "type": "smoke",
                    "transport": "ble",
                    "address": NEW_MAC,
                    "home": "h",
                    "bindkey": "00",
                },
                "bindkey",
            ),
            (
                {
                    "id": "x",
                    "type": "smoke",
                    "transport": "radio",
                    "port": "nowhere",
                    "radio_address": 5,
                    "home": "h",
                },
                "port",
            ),
            ({"id": "x", "type": "smoke", "transport": "carrier-pigeon", "home": "h"}, "transport"),
            (
                {
                    "id": "x",
                    "type": "smoke",
                    "transport": "ble",
                    "address": NEW_MAC,
                    "home": "h",
                    "surprise": 1,
                },
                "surprise",
            ),
        ]:
            response = await api.post("/devices", json=bad)
            assert response.status_code in (409, 422), (bad, response.text)
            assert words in response.json()["detail"], (bad, response.text)

        response = await api.delete("/devices/pendant-1")
        assert response.status_code == 409 and "config file" in response.json()["detail"]
        assert (await api.delete("/devices/nobody")).status_code == 404
        assert (await api.get("/devices/nobody")).status_code == 404


async def test_technician_routes_need_the_token(rig: Rig) -> None:
    async with rig.client(token=None) as anonymous:
        assert (await anonymous.get("/devices")).status_code == 401
        assert (await anonymous.get("/healthz")).status_code in (200, 503)  # open
    async with rig.client(token="wrong-token-wrong-token") as wrong:
        assert (await wrong.get("/devices")).status_code == 401
    code, _, err = await rig.cli("list", token="wrong-token-wrong-token")
    assert code == 1 and "technician token" in err


async def test_paired_devices_survive_a_restart_and_can_be_removed(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    udp_port = free_udp_port()
    store = tmp_path / "gw.db"
    body = {
        "id": "smoke-new",
        "type": "smoke",
        "transport": "ble",
        "address": NEW_MAC,
        "home": "home-12",
    }
    async with make_gateway(mosquitto, store, udp_port) as gateway:
        rig = Rig(gateway, udp_port)
        async with rig.client() as api:
            assert (await api.post("/devices", json=body)).status_code == 201
    async with make_gateway(mosquitto, store, udp_port) as gateway:
        rig = Rig(gateway, udp_port)
        device = gateway.registry.get("smoke-new")
        assert device is not None and device.origin == "paired"
        code, out, err = await rig.cli("remove", "smoke-new")
        assert code == 0 and "removed smoke-new" in out, err
        assert gateway.registry.get("smoke-new") is None
        log = [action for _, action, _ in await gateway.store.audit_log()]
        assert "device_unpaired" in log
    async with make_gateway(mosquitto, store, udp_port) as gateway:
        assert gateway.registry.get("smoke-new") is None


async def test_the_cli_says_clearly_when_no_gateway_answers(tmp_path: Path) -> None:
    code, _out, err = await run_trygg(
        "gateway", "devices", "list", "--url", "http://127.0.0.1:9", limit_s=60
    )
    assert code == 1
    assert "is not answering" in err


async def test_health_names_a_closed_serial_port_and_metrics_count_device_states(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    extra: dict[str, object] = {
        "api": {"port": 0},
        "serial": [{"name": "radio1", "path": str(tmp_path / "no-such-tty"), "protocol": "radio"}],
    }
    async with Gateway(gateway_config(mosquitto, tmp_path / "gw.db", extra=extra)) as gateway:
        await asyncio.wait_for(gateway.link("zigbee2mqtt").ready.wait(), 10)
        await asyncio.wait_for(gateway.uplink.connected.wait(), 10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.api_port}") as http:
            health = await http.get("/healthz")
            assert health.status_code == 503
            assert health.json()["problems"] == ["serial port radio1 closed"]
            metrics = (await http.get("/metrics")).text
            assert 'trygg_gateway_uplink_connected{uplink="serial:radio1"} 0.0' in metrics
            assert 'trygg_gateway_devices{state="ok"} 4.0' in metrics
            # Without a token, the technician routes answer on loopback.
            assert (await http.get("/devices")).status_code == 200
            # Each transport says why its device cannot be paired on this gateway.
            refused: dict[str, dict[str, object]] = {
                "ble": {"address": NEW_MAC},
                "radio": {"port": "radio9", "radio_address": 7},
                "nmea": {"port": "gps9", "type": "gps_pendant"},
            }
            reasons = {}
            for transport, fields in refused.items():
                body = {"id": f"new-{transport}", "type": "smoke", "home": "h1", **fields}
                answer = await http.post("/devices", json={**body, "transport": transport})
                assert answer.status_code == 409, answer.text
                reasons[transport] = answer.json()["detail"]
            assert reasons == {
                "ble": "BLE is not enabled on this gateway (add a [ble] section)",
                "radio": "no [[serial]] port named 'radio9' in the gateway's config",
                "nmea": "no [[serial]] port named 'gps9' in the gateway's config",
            }
            assert [d["id"] for d in (await http.get("/devices")).json()] == [
                d.id for d in gateway.config.devices
            ]
