"""The home's broker as shipped (docker/home/): only Zigbee2MQTT and the gateway connect,
and only the gateway may publish a device's /set; the gateway reaches it with its own
credentials from its configuration."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from typer.testing import CliRunner

from gateway import Gateway, GatewayConfig
from trygg.cli import app

from .servers import free_port, wait_port, wait_until

Z2M_PASSWORD = "zigbee2mqtt-home-password"
GW_USER = "trygg-gateway"
GW_PASSWORD = "gateway-home-password"
DOCKER_HOME = Path(__file__).resolve().parents[1] / "docker" / "home"


def _gateway_toml(tmp: Path, port: int, *, username: str | None = GW_USER) -> Path:
    credentials = f'username = "{username}"\npassword = "{GW_PASSWORD}"\n' if username else ""
    config = tmp / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-home"\n[store]\npath = "{tmp / "gateway.db"}"\n'
        f'[zigbee2mqtt]\nhost = "127.0.0.1"\nport = {port}\n{credentials}'
        # The dispatch link is not part of this test: nothing listens there.
        f'[uplink]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        '[[devices]]\nid = "pendant"\ntype = "alarm_button"\naddress = "home-1/pendant"\n'
        'home = "home-1"\n'
        '[[devices]]\nid = "lock"\ntype = "digital_lock"\naddress = "home-1/front_door_lock"\n'
        'home = "home-1"\n'
        '[[devices]]\nid = "smoke"\ntype = "smoke"\naddress = "kitchen_smoke"\nhome = "home-1"\n'
    )
    return config


class HomeBroker:
    """mosquitto with docker/home/mosquitto.conf's security settings, on a free port."""

    def __init__(self, tmp: Path, acl: Path, extra_users: tuple[tuple[str, str], ...] = ()) -> None:
        self.port = free_port()
        passwd = tmp / "passwd"
        for i, (user, password) in enumerate(
            (("zigbee2mqtt", Z2M_PASSWORD), (GW_USER, GW_PASSWORD), *extra_users)
        ):
            create = ["-c"] if i == 0 else []
            subprocess.run(
                ["mosquitto_passwd", *create, "-b", str(passwd), user, password], check=True
            )
        shipped = (DOCKER_HOME / "mosquitto.conf").read_text()
        security = [
            line
            for line in shipped.splitlines()
            if line.split(" ")[0] in {"allow_anonymous", "per_listener_settings"}
        ]
        assert "allow_anonymous false" in security
        self.config = tmp / "home.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + "\n".join(security)
            + f"\npassword_file {passwd}\nacl_file {acl}\nuser root\n"
        )
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)], stderr=subprocess.DEVNULL
        )
        wait_port(self.port)

    def client(self, user: str | None, password: str | None = None) -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", self.port, username=user, password=password)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[HomeBroker, Path]]:
    config = _gateway_toml(tmp_path, 1883)
    acl = tmp_path / "acl"
    result = CliRunner().invoke(app, ["gateway", "broker-acl", "-c", str(config), "-o", str(acl)])
    assert result.exit_code == 0, result.output
    broker = HomeBroker(tmp_path, acl)
    yield broker, _gateway_toml(tmp_path, broker.port)
    broker.proc.terminate()
    broker.proc.wait(10)


def test_the_acl_names_each_deep_friendly_name_and_refuses_what_it_cannot_express(
    tmp_path: Path,
) -> None:
    config = _gateway_toml(tmp_path, 1883)
    text = config.read_text()
    acl = CliRunner().invoke(app, ["gateway", "broker-acl", "-c", str(config)]).output
    z2m, gw = acl.split(f"user {GW_USER}\n")
    assert "topic write zigbee2mqtt/home-1/front_door_lock\n" in z2m
    assert "/set" not in z2m
    assert "topic write zigbee2mqtt/home-1/front_door_lock/set\n" in gw
    assert "topic write zigbee2mqtt/kitchen_smoke/set\n" in gw
    assert "topic write zigbee2mqtt/+" not in gw  # the gateway never speaks for a device

    no_user = _gateway_toml(tmp_path, 1883, username=None)
    refused = CliRunner().invoke(app, ["gateway", "broker-acl", "-c", str(no_user)])
    assert refused.exit_code == 2
    assert "[zigbee2mqtt] username is not set" in refused.output
    wildcard = tmp_path / "wildcard.toml"
    wildcard.write_text(text.replace("kitchen_smoke", "kitchen/#"))
    refused = CliRunner().invoke(app, ["gateway", "broker-acl", "-c", str(wildcard)])
    assert refused.exit_code == 2
    assert "'kitchen/#' cannot be given an ACL" in refused.output


async def test_only_zigbee2mqtt_and_the_gateway_connect_and_only_the_gateway_sets(
    home: tuple[HomeBroker, Path],
) -> None:
    broker, _ = home
    for user, password in ((None, None), ("zigbee2mqtt", "wrong"), ("intruder", "x")):
        with pytest.raises(aiomqtt.MqttError):
            async with broker.client(user, password):
                pass

    set_topic = "zigbee2mqtt/home-1/front_door_lock/set"
    async with (
        broker.client("zigbee2mqtt", Z2M_PASSWORD) as z2m,
        broker.client(GW_USER, GW_PASSWORD) as gw,
    ):
        await z2m.subscribe("zigbee2mqtt/#", qos=1)
        await gw.subscribe("zigbee2mqtt/#", qos=1)
        # Zigbee2MQTT's identity cannot open the door, nor can it be made to: its /set is
        # dropped, and the state right behind it arrives (one publisher: in order).
        await z2m.publish(set_topic, '{"state": "UNLOCK"}', qos=1)
        await z2m.publish("zigbee2mqtt/home-1/front_door_lock", '{"lock_state": "locked"}', qos=1)
        first = await asyncio.wait_for(anext(gw.messages), 10)
        assert str(first.topic) == "zigbee2mqtt/home-1/front_door_lock"
        # The gateway cannot speak for a device; its /set reaches Zigbee2MQTT.
        await gw.publish("zigbee2mqtt/home-1/pendant", '{"action": "single"}', qos=1)
        await gw.publish(set_topic, '{"state": "UNLOCK"}', qos=1)
        seen = []
        async for message in z2m.messages:
            seen.append(str(message.topic))
            if str(message.topic) == set_topic:
                break
        assert "zigbee2mqtt/home-1/pendant" not in seen
        assert json.loads(message.payload) == {"state": "UNLOCK"}


async def test_the_gateway_hears_its_devices_with_the_credentials_in_its_configuration(
    home: tuple[HomeBroker, Path],
) -> None:
    from gateway import load_config

    broker, config_path = home
    config: GatewayConfig = load_config(config_path)
    async with Gateway(config) as gw:
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        async with broker.client("zigbee2mqtt", Z2M_PASSWORD) as z2m:
            await z2m.publish("zigbee2mqtt/home-1/pendant", '{"action": "single"}', qos=1)
            await z2m.publish("zigbee2mqtt/kitchen_smoke", '{"smoke": true}', qos=1)

        async def both_stored() -> bool:
            kinds = {p.event.kind for p in await gw.store.pending(10)}
            return kinds == {"alarm_button", "smoke"}

        await wait_until(both_stored, limit_s=30)


WATCHES = (
    ("watch-1", "watch-one-credential-0123456789abcdef"),
    ("watch-2", "watch-two-cred-0123456789abcdef0"),
)


async def test_native_devices_on_the_shipped_broker_each_publish_only_as_themselves(
    tmp_path: Path,
) -> None:
    """As docs/native-api.md says to install them: each watch's login made with
    mosquitto_passwd, the ACL written by `trygg gateway broker-acl`; watch-2 cannot raise
    an alarm as watch-1, and the gateway hears each watch with its own login."""
    import hashlib

    from gateway import load_config

    def with_watches(port: int) -> Path:
        config = _gateway_toml(tmp_path, port)
        watches = "".join(
            f'[[devices]]\nid = "{name}"\ntransport = "native"\ntype = "gps_pendant"\n'
            f'home = "home-1"\ncredential_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
            for name, token in WATCHES
        )
        config.write_text(config.read_text() + watches)
        return config

    acl = tmp_path / "acl"
    written = CliRunner().invoke(
        app, ["gateway", "broker-acl", "-c", str(with_watches(1883)), "-o", str(acl)]
    )
    assert written.exit_code == 0, written.output
    broker = HomeBroker(tmp_path, acl, WATCHES)
    try:
        config = load_config(with_watches(broker.port))
        async with Gateway(config) as gw:
            await asyncio.wait_for(gw.link("native").ready.wait(), 10)
            async with broker.client("watch-2", WATCHES[1][1]) as watch2:
                forged = json.dumps({"id": "forged", "alarm": "fall"})
                await watch2.publish("trygg/v1/dev/watch-1/alarm", forged, qos=1)
                own = json.dumps({"id": "own-1", "alarm": "sos"})
                await watch2.publish("trygg/v1/dev/watch-2/alarm", own, qos=1)

            async def stored() -> bool:
                return bool(await gw.store.pending(10))

            await wait_until(stored, limit_s=30)
            events = [(p.event.kind, p.event.device_id) for p in await gw.store.pending(10)]
            assert events == [("alarm_button", "watch-2")]
        # Nobody else logs in as a watch, nor with a watch's credential as another.
        for user, password in (("watch-1", WATCHES[1][1]), ("watch-3", WATCHES[0][1])):
            with pytest.raises(aiomqtt.MqttError):
                async with broker.client(user, password):
                    pass
    finally:
        broker.proc.terminate()
        broker.proc.wait(10)
