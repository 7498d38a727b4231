from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices import DeviceType
from devices.wire import b64url, key_id_of
from gateway import ConfigError, load_config, parse_config
from gateway.config import TRANSPORTS

from .servers import pki

GOOD = """
[gateway]
id = "gw-1"

[zigbee2mqtt]
host = "127.0.0.1"
port = 1883

[uplink]
host = "dispatch.example"
port = 8883
tls = true
ack_timeout_s = 5

[[devices]]
id = "pendant-1"
type = "alarm_button"
address = "flat-12/pendant"
home = "home-12"
resident = "res-12"
"""


def test_a_good_config_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.gateway.id == "gw-1"
    assert config.gateway.heartbeat_interval_s == 60
    assert config.uplink.ack_timeout_s == 5
    assert config.zigbee2mqtt.base_topic == "zigbee2mqtt"
    assert config.devices[0].type is DeviceType.ALARM_BUTTON


GW = '[gateway]\nid = "gw-1"\n'
SERIAL = '[[serial]]\nname = "radio1"\npath = "/dev/ttyUSB0"\nprotocol = "radio"\n'
BAD_DEVICES = [
    (
        '[[devices]]\nid = "b"\ntransport = "ble"\ntype = "smoke"\naddress = "AA:BB"\nhome = "h"',
        ["devices.0.address", "pattern"],
    ),
    (
        '[[devices]]\nid = "b"\ntransport = "ble"\ntype = "smoke"\n'
        'address = "AA:BB:CC:DD:EE:FF"\nbindkey = "xyz"\nhome = "h"',
        ["devices.0.bindkey"],
    ),
    (
        '[[devices]]\nid = "r"\ntransport = "radio"\ntype = "smoke"\nport = "radio9"\n'
        'radio_address = 1\nhome = "h"',
        ["no [[serial]] port named 'radio9'"],
    ),
    (
        '[[devices]]\nid = "r"\ntransport = "radio"\ntype = "smoke"\nport = "radio1"\n'
        'radio_address = 4294967296\nhome = "h"',
        ["devices.0.radio_address"],
    ),
    (
        '[[devices]]\nid = "g"\ntransport = "nmea"\ntype = "gps_pendant"\nport = "radio1"\n'
        'home = "h"',
        ["speaks radio, not nmea"],
    ),
    (
        '[[devices]]\nid = "c"\ntransport = "camera"\ntype = "smoke"\n'
        'url = "http://cam/x.mjpg"\nhome = "h"',
        ["camera device must be of type camera"],
    ),
    (
        '[[devices]]\nid = "c"\ntransport = "camera"\ntype = "camera"\n'
        'url = "file:///etc/passwd"\nhome = "h"',
        ["devices.0.url"],
    ),
    (
        '[[devices]]\nid = "x"\ntransport = "telegraph"\ntype = "smoke"\nhome = "h"',
        ["devices.0: transport must be zigbee2mqtt, ble"],
    ),
]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", ["gateway", "Field required"]),
        ('[gateway]\nid = "gw 1"', ["gateway.id", "pattern"]),
        ('[gateway]\nid = "gw"\ncolour = "red"', ["gateway.colour", "Extra inputs"]),
        ('[gateway]\nid = "gw"\nheartbeat_interval_s = 5', ["gateway.heartbeat_interval_s", "60"]),
        ('[gateway]\nid = "gw"\n[uplink]\nport = "high"', ["uplink.port", "integer"]),
        (
            GOOD.replace('"alarm_button"', '"toaster"'),
            ["devices.0.type", "alarm_button", "fall_detector"],
        ),
        (GOOD + GOOD.split("[[devices]]")[1].join(["[[devices]]", ""]), ["same id"]),
        ("[gateway\nid=1", ["not valid TOML"]),
        *[(f"{GW}\n{SERIAL}\n{device}", names) for device, names in BAD_DEVICES],
        (f"{GW}\n{SERIAL}\n{SERIAL}", ["same name"]),
        (f'{GW}\n[ble]\nbackend = "radio"', ["ble.backend", "'bleak' or 'sim'"]),
    ],
)
def test_errors_name_the_file_the_key_and_what_was_expected(text: str, names: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "site.toml")
    message = str(info.value)
    assert message.startswith("site.toml: ")
    for name in names:
        assert name in message


def test_missing_and_binary_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(binary)


def test_cli_reports_config_errors_with_exit_code_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trygg.cli import app

    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nid = "gw"\n[[devices]]\nid = "x"\n')
    result = CliRunner().invoke(app, ["gateway", "check-config", "--config", str(bad)])
    assert result.exit_code == 2
    assert "devices.0.type" in result.output
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    result = CliRunner().invoke(app, ["gateway", "check-config", "--config", str(good)])
    assert result.exit_code == 0, result.output
    assert "pendant-1" in result.output


ROOT = Path(__file__).resolve().parents[1]


def test_the_compose_gateway_config_is_valid_and_matches_the_simulated_home() -> None:
    from trygg_sim import demo_home

    config = load_config(ROOT / "docker" / "gateway.toml")
    simulated = {d.friendly_name: d.type for d in demo_home("home-1").values()}
    assert {d.address: d.type for d in config.devices} == simulated


def test_the_readmes_gateway_example_is_valid(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("```toml\n[gateway]") + len("```toml\n")
    example = readme[start : readme.index("```", start)]
    # The CA is where the technician put the bundle's ca.crt; here, the tests' own.
    example = example.replace("/etc/trygg/ca.crt", str(pki().tls.ca_cert))
    # The dispatch service's keys likewise (trygg cloud command-key export writes them).
    key = (
        Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    keys = tmp_path / "dispatch-keys.json"
    entry = {"key_id": key_id_of(key), "public_key": b64url(key), "algorithm": "Ed25519"}
    keys.write_text(json.dumps({"v": 1, "keys": [entry]}))
    example = example.replace("/etc/trygg/dispatch-keys.json", str(keys))
    config = parse_config(example, "README.md")
    assert config.commands.trusted_keys is not None
    assert config.uplink.uses_tls and config.uplink.username == "gw-0042"
    transports = {d.transport for d in config.devices}
    assert transports == set(TRANSPORTS)  # every transport has its example
    assert [p.speed for p in config.serial] == [115_200, 4800]


def test_cli_registers_gateways_and_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from typer.testing import CliRunner

    from cloud import CloudSettings
    from cloud.admin import admin_session
    from cloud.db import Gateway, User
    from cloud.security import verify_password
    from trygg.cli import app

    monkeypatch.setenv("TRYGG_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    runner = CliRunner()
    result = runner.invoke(
        app, ["cloud", "add-gateway", "malmo", "gw-0042", "--name", "Rosengård 12"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        ["cloud", "add-user", "malmo", "anna", "--role", "operator"],
        input="s3cret-pass\ns3cret-pass\n",
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["cloud", "add-user", "malmo", "bo", "--role", "king", "--password", "x"]
    )
    assert result.exit_code == 2 and "--role must be one of" in result.output

    async def check() -> None:
        async with admin_session(CloudSettings()) as session:
            gateway = await session.get(Gateway, "gw-0042")
            assert (
                gateway is not None and gateway.org_id == "malmo" and gateway.name == "Rosengård 12"
            )
            user = await session.get(User, 1)
            assert user is not None and user.role == "operator"
            assert verify_password(user.password_hash, "s3cret-pass")

    asyncio.run(check())


LAZY_TRANSPORTS = """
import sys
from gateway import Gateway, parse_config
from gateway.config import TRANSPORTS
from gateway.transports import plugin

config = parse_config(sys.stdin.read())
links = [link.name for link in Gateway(config).links]
loaded = sorted(m for m in ("bleak", "cv2", "serial_asyncio_fast") if m in sys.modules)
print(links, loaded)
print([plugin(name).name for name in TRANSPORTS], "bleak" in sys.modules)
"""


def test_every_transport_is_in_the_registry_and_loads_only_when_a_gateway_uses_it() -> None:
    run = subprocess.run(
        [sys.executable, "-c", LAZY_TRANSPORTS],
        input=GOOD,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert run.stdout.splitlines() == [
        "['zigbee2mqtt'] []",
        "['zigbee2mqtt', 'ble', 'ble_lock', 'radio', 'nmea', 'camera', 'native'] True",
    ]
