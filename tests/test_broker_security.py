"""The secured broker against an attacker on the same network: every attack of issue 12
fails at the broker, and the alarm it aimed at still reaches the operators' queue.

The broker is configured by the product's own code (cloud/brokerconf.py), as every test
broker is (tests/servers.py): TLS only, no anonymous clients, one login per gateway that
may touch only its own topics, dispatch identities alone for acks, commands, the
dispatch status and the replicas' change relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import ValidationError

from cloud import CloudSettings
from cloud.brokerconf import BrokerConfigError, dispatch_identities, make_ca
from cloud.credentials import mosquitto_hash, mosquitto_verify
from devices import stable_event_id
from devices.wire import (
    DISPATCH_CHANGES_TOPIC,
    DISPATCH_STATUS_TOPIC,
    Ack,
    DispatchStatus,
    Heartbeat,
    acks_topic,
    commands_topic,
    devices_topic,
    events_topic,
    inventory_topic,
    results_topic,
    status_topic,
)
from gateway import ConfigError, Gateway, parse_config

from .conftest import GATEWAY_ID, RunningCloud, envelope, gateway_config, publish, run_cloud
from .servers import (
    DISPATCH,
    ZIGBEE2MQTT,
    Mosquitto,
    broker_identities,
    cloud_broker,
    free_port,
    login,
    mqtt_client,
    pki,
    wait_port,
    wait_until,
)

pytestmark = [pytest.mark.integration]

PRESS = json.dumps({"action": "single", "linkquality": 90})
ATTACKER = "gw-2"  # a real gateway of the deployment, turned against the others


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for the tests that need no dispatch service."""
    server = Mosquitto(tmp_path_factory.mktemp("broker"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _queue(cloud: RunningCloud) -> list[dict[str, object]]:
    async with await cloud.authed("anna") as http:
        res = await http.get("/api/v1/alarms")
        res.raise_for_status()
        found: list[dict[str, object]] = res.json()
        return found


async def _events(cloud: RunningCloud) -> int:
    return sum(int(str(a["event_count"])) for a in await _queue(cloud))


async def _press_arrives(cloud: RunningCloud, port: int, n: int = 1) -> None:
    """A pendant press through the gateway reaches the queue (a repeated one joins the
    open alarm as one more event), and the alarm stays there."""
    before = await _events(cloud)
    press = json.dumps({"action": "single", "linkquality": n})
    await publish(port, "zigbee2mqtt/flat-12/pendant", press)
    await wait_until(lambda: _more(cloud, before), 20)
    assert any(a["device_id"] == "pendant-1" for a in await _queue(cloud))


async def _more(cloud: RunningCloud, before: int) -> bool:
    return await _events(cloud) > before


# --- who may connect ---------------------------------------------------------------------


def _context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def _connects(port: int, **options: Any) -> None:
    async with aiomqtt.Client("127.0.0.1", port, **({"timeout": 10} | options)):
        pass


async def test_anonymous_wrong_password_plain_and_wrong_ca_clients_are_refused(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    ca = pki().tls.ca_cert
    stranger_ca = tmp_path / "stranger-ca.crt"
    make_ca(stranger_ca, tmp_path / "stranger-ca.key")
    good = login(GATEWAY_ID)
    refused: dict[str, dict[str, Any]] = {
        "anonymous": {"tls_context": _context(ca)},
        "wrong password": {
            "tls_context": _context(ca),
            "username": GATEWAY_ID,
            "password": good["password"] + "x",
        },
        "another gateway's name": {
            "tls_context": _context(ca),
            "username": "gw-other",
            "password": good["password"],
        },
        # MQTT in the clear to the TLS port: the broker reads it as a broken handshake
        # and never answers (the client's own timeout ends the wait; no CONNACK ever).
        "no TLS": {"username": GATEWAY_ID, "password": good["password"], "timeout": 2},
        # The right login, but the client trusts another CA: it refuses the server.
        "server not trusted": {
            "tls_context": _context(stranger_ca),
            "username": GATEWAY_ID,
            "password": good["password"],
        },
    }
    for what, options in refused.items():
        with pytest.raises(aiomqtt.MqttError) as caught:
            await _connects(mosquitto.port, identifier=f"attacker-{what}", **options)
        if what in ("anonymous", "wrong password", "another gateway's name"):
            assert "Not authorized" in str(caught.value) or "not authori" in str(caught.value)
    # The right login with the right CA gets in (the refusals above are not a dead port).
    await _connects(
        mosquitto.port,
        tls_context=_context(ca),
        username=GATEWAY_ID,
        password=good["password"],
        identifier="attacker-control",
    )
    await _press_arrives(sqlite_cloud, mosquitto.port)


def test_mosquitto_hashes_are_mosquittos_own_format() -> None:
    hashed = mosquitto_hash("secret", salt=bytes(12))
    assert hashed.startswith("$7$101$AAAAAAAAAAAAAAAA$")
    assert mosquitto_verify("secret", hashed)
    assert not mosquitto_verify("secret!", hashed)
    for garbage in ("", "$6$1$x$y", "$7$x$y$z", "no dollars", "$7$101$!!$!!"):
        assert not mosquitto_verify("secret", garbage)


# --- what a gateway may touch ------------------------------------------------------------

_EVENT = envelope("forged", 1, device="made-up-device").model_dump_json()
_BEAT = Heartbeat(
    gateway_id=GATEWAY_ID, state="online", sent_at=datetime.now(UTC), interval_s=86400
).model_dump_json()
_ACK = Ack(event_ids=[stable_event_id("pendant-1", "1")]).model_dump_json()
_ONLINE = DispatchStatus(state="online").model_dump_json()

# (attacker, topic, forged payload, who may publish there, who may read it)
FORGERIES = [
    (ATTACKER, events_topic(GATEWAY_ID), _EVENT, GATEWAY_ID, DISPATCH),
    (ATTACKER, status_topic(GATEWAY_ID), _BEAT, GATEWAY_ID, DISPATCH),
    (ATTACKER, inventory_topic(GATEWAY_ID), "{}", GATEWAY_ID, DISPATCH),
    (ATTACKER, devices_topic(GATEWAY_ID), "{}", GATEWAY_ID, DISPATCH),
    (ATTACKER, results_topic(GATEWAY_ID), "{}", GATEWAY_ID, DISPATCH),
    (ATTACKER, acks_topic(GATEWAY_ID), _ACK, DISPATCH, GATEWAY_ID),
    (ATTACKER, commands_topic(GATEWAY_ID), "{}", DISPATCH, GATEWAY_ID),
    (ATTACKER, DISPATCH_STATUS_TOPIC, _ONLINE, DISPATCH, GATEWAY_ID),
    (ATTACKER, DISPATCH_CHANGES_TOPIC, "{}", DISPATCH, DISPATCH),
    # A gateway may not ack itself either, nor may the home's Zigbee2MQTT touch the link.
    (GATEWAY_ID, acks_topic(GATEWAY_ID), _ACK, DISPATCH, GATEWAY_ID),
    (ZIGBEE2MQTT, events_topic(GATEWAY_ID), _EVENT, GATEWAY_ID, DISPATCH),
    (ZIGBEE2MQTT, acks_topic(GATEWAY_ID), _ACK, DISPATCH, GATEWAY_ID),
]


@pytest.mark.parametrize(("attacker", "topic", "payload", "writer", "reader"), FORGERIES)
async def test_a_forged_message_never_reaches_its_reader(
    broker: Mosquitto, attacker: str, topic: str, payload: str, writer: str, reader: str
) -> None:
    """The reader hears only the rightful writer's message that follows the forgery."""
    marker = f"marker-{free_port()}"
    heard: list[bytes] = []
    async with mqtt_client(broker.port, reader, identifier=f"reader-{marker}") as listener:
        await listener.subscribe(topic, qos=1)
        await publish(broker.port, topic, payload, username=attacker)
        await publish(broker.port, topic, marker, username=writer)
        async for message in listener.messages:
            assert isinstance(message.payload, bytes)
            if message.retain:
                continue  # a retained status from an earlier case
            heard.append(message.payload)
            if message.payload == marker.encode():
                break
    assert heard == [marker.encode()]


async def test_a_gateway_reads_nothing_of_another_gateway_nor_of_the_dispatch_share(
    sqlite_cloud: RunningCloud, gateway: Gateway, mosquitto: Mosquitto
) -> None:
    """Not by name, not by wildcard, not by joining the replicas' shared subscription
    under the name it has by default, nor the acks meant for another gateway."""
    filters = [
        events_topic(GATEWAY_ID),
        acks_topic(GATEWAY_ID),
        status_topic(GATEWAY_ID),
        "trygg/v1/gw/+/events",
        "trygg/#",
        "#",
        "$share/trygg-dispatch/trygg/v1/gw/+/events",
        "$share/trygg-dispatch/trygg/v1/gw/+/status",
    ]
    heard: list[str] = []
    async with mqtt_client(mosquitto.port, ATTACKER, identifier="eavesdropper") as spy:
        for topic in filters:
            await spy.subscribe(topic, qos=1)

        async def listen() -> None:
            async for message in spy.messages:
                # The dispatch status is its to read; so are the home's devices, on a test
                # broker that is also the home's.
                topic = message.topic.value
                if topic != DISPATCH_STATUS_TOPIC and topic.startswith("trygg/"):
                    heard.append(topic)

        listening = asyncio.create_task(listen())
        for n in range(3):
            await _press_arrives(sqlite_cloud, mosquitto.port, n)
        # What is meant for the spy still reaches it: it was listening all along.
        await publish(mosquitto.port, acks_topic(ATTACKER), "{}", username=DISPATCH)
        await wait_until(lambda: acks_topic(ATTACKER) in heard)
        listening.cancel()
    assert set(heard) == {acks_topic(ATTACKER)}  # once per filter that matches it


async def test_forged_acks_delete_nothing_and_forged_dispatch_online_resends_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """No dispatch service yet: the press waits in the outbox, in flight. Forged acks
    for it and forged "dispatch online" from a gateway and from Zigbee2MQTT change
    nothing; the dispatch service, when it comes, gets the press."""
    config = gateway_config(mosquitto, tmp_path / "gw.db", ack_timeout_s=600.0)
    sent: list[bytes] = []
    async with (
        mqtt_client(mosquitto.port, DISPATCH, identifier="watcher") as watcher,
        Gateway(config) as gw,
    ):
        await watcher.subscribe(events_topic(GATEWAY_ID), qos=1)

        async def watch() -> None:
            async for message in watcher.messages:
                assert isinstance(message.payload, bytes)
                sent.append(message.payload)

        watching = asyncio.create_task(watch())
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        await asyncio.wait_for(gw.uplink.connected.wait(), 10)
        await publish(mosquitto.port, "zigbee2mqtt/flat-12/pendant", PRESS)
        await wait_until(lambda: len(sent) == 1)
        (pending,) = [p.event.id for p in await gw.store.pending(10)]
        forged = Ack(event_ids=[pending]).model_dump_json()
        for attacker in (ATTACKER, ZIGBEE2MQTT, GATEWAY_ID):
            await publish(mosquitto.port, acks_topic(GATEWAY_ID), forged, username=attacker)
            for _ in range(5):
                await publish(mosquitto.port, DISPATCH_STATUS_TOPIC, _ONLINE, username=attacker)
        # An ack from the dispatch identity for an id not in flight follows on the same
        # topic: once the gateway has counted it, it has had anything forged before it.
        stray = Ack(event_ids=[stable_event_id("never", "sent")]).model_dump_json()
        await publish(mosquitto.port, acks_topic(GATEWAY_ID), stray, username=DISPATCH)
        await wait_until(lambda: gw.uplink.acks_ignored == 1)
        assert [p.event.id for p in await gw.store.pending(10)] == [pending]
        assert gw.uplink.acked == 0
        assert len(sent) == 1  # no resend: no forged "online" reached the gateway
        settings = CloudSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
            **cloud_broker(mosquitto.port),
        )
        async with run_cloud(settings) as cloud:
            # The real "online" makes the gateway resend at once; the press arrives.
            await wait_until(lambda: gw.uplink.acked == 1, 20)
            (alarm,) = await _queue(cloud)
        watching.cancel()
    assert alarm["device_id"] == "pendant-1" and alarm["priority"] == "critical"


# --- removal -----------------------------------------------------------------------------


async def test_a_registered_gateway_connects_with_its_bundle_and_loses_access_when_removed(
    tmp_path: Path,
) -> None:
    """The CLI as a deployment runs it: add-gateway writes the bundle, broker-config the
    broker, the gateway connects with the bundle alone; remove-gateway, broker-config and
    SIGHUP shut it out, also the connection it already had."""
    env = {"TRYGG_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"}
    out, bundle = tmp_path / "broker", tmp_path / "bundle"
    port = free_port()
    broker_options = [
        f"--out={out}",
        "--hostname=localhost",
        "--hostname=127.0.0.1",
        f"--port={port}",
        "--listen=127.0.0.1",
        "--run-as=root",
    ]
    code, _, err = await _trygg("cloud", "broker-config", *broker_options, env=env)
    assert code == 0, err
    code, _, err = await _trygg(
        "cloud",
        "add-gateway",
        "org-a",
        "gw-1",
        f"--bundle={bundle}",
        "--broker-host=127.0.0.1",
        f"--broker-port={port}",
        f"--ca-cert={out / 'ca.crt'}",
        env=env,
    )
    assert code == 0, err
    code, _, err = await _trygg("cloud", "broker-config", *broker_options, env=env)
    assert code == 0, err
    assert "gw-1:$7$101$" in (out / "passwords").read_text()
    assert "user gw-1\ntopic write trygg/v1/gw/gw-1/events\n" in (out / "acl").read_text()
    # The bundle, as the technician installs it (the CA where the section says it is).
    uplink = (bundle / "gateway-uplink.toml").read_text()
    uplink = uplink.replace("/etc/trygg/ca.crt", str(bundle / "ca.crt"))
    config = parse_config(f'[gateway]\nid = "gw-1"\n{uplink}')
    assert config.uplink.uses_tls and config.uplink.username == "gw-1"
    dispatch = _env(out / "dispatch.main.env")
    assert set(dispatch) == {
        "TRYGG_MQTT_USERNAME",
        "TRYGG_MQTT_PASSWORD",
        "TRYGG_MQTT_CA_FILE",
        "TRYGG_MQTT_SHARED_GROUP",
    }

    with _mosquitto(out / "mosquitto.conf", port, tmp_path / "mosquitto.log") as server:
        ca = out / "ca.crt"
        gateway_login: dict[str, Any] = {"username": "gw-1", "password": config.uplink.password}
        async with (
            aiomqtt.Client("127.0.0.1", port, tls_context=_context(ca), **gateway_login) as gw,
            aiomqtt.Client(
                "127.0.0.1",
                port,
                tls_context=_context(ca),
                username=dispatch["TRYGG_MQTT_USERNAME"],
                password=dispatch["TRYGG_MQTT_PASSWORD"],
            ) as cloud,
        ):
            await cloud.subscribe(
                f"$share/{dispatch['TRYGG_MQTT_SHARED_GROUP']}/trygg/v1/gw/+/events"
            )
            await gw.publish(events_topic("gw-1"), b"while registered", qos=1)
            got = await asyncio.wait_for(anext(cloud.messages), 10)
            assert got.payload == b"while registered"

            code, _, err = await _trygg("cloud", "remove-gateway", "org-a", "gw-1", env=env)
            assert code == 0, err
            code, _, err = await _trygg("cloud", "broker-config", *broker_options, env=env)
            assert code == 0, err
            assert "gw-1" not in (out / "passwords").read_text()
            assert _env(out / "dispatch.main.env") == dispatch  # kept on rerun
            server.send_signal(signal.SIGHUP)  # mosquitto rereads passwords and ACL
            log = tmp_path / "mosquitto.log"
            await wait_until(lambda: "Reloading config." in log.read_text())
            # mosquitto applies the new files to connected clients: it closes gw-1's.
            with pytest.raises(aiomqtt.MqttError):
                for _ in range(100):
                    await gw.publish(events_topic("gw-1"), b"after removal", qos=1, timeout=2)
                    await asyncio.sleep(0.05)
            with pytest.raises(aiomqtt.MqttError):
                await _connects(port, tls_context=_context(ca), **gateway_login)
            # Nothing it sent after the removal reached the dispatch service.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await anext(cloud.messages)
    code, _, err = await _trygg("cloud", "remove-gateway", "org-a", "gw-1", env=env)
    assert code == 1 and "no gateway gw-1" in err


async def _trygg(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """``trygg ARGS`` in this process (the command runs its own event loop, so in a
    thread): what a deployment runs, without a new interpreter's start each time."""
    from typer.testing import CliRunner

    from trygg.cli import app

    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result.exit_code, result.stdout, result.output


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


@contextlib.contextmanager
def _mosquitto(conf: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """mosquitto on the configuration broker-config wrote, as a deployment runs it."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with log.open("ab") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=out)
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


# --- configuration is refused where it would be unsafe -----------------------------------


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ('host = "broker.example.org"', ["uplink", "plain MQTT to broker.example.org", "ca_file"]),
        ('host = "10.0.0.2"\ntls = false', ["uplink", "plain MQTT to 10.0.0.2"]),
        ('ca_file = "/nonexistent/ca.crt"', ["uplink.ca_file", "/nonexistent/ca.crt", "no such"]),
        ('ca_file = "{ca}"\ncert_file = "{ca}"', ["uplink", "cert_file and key_file"]),
        ('ca_file = "{ca}"\ntls = false', ["uplink", "tls is false"]),
        ('ca_file = "{dir}"', ["uplink.ca_file", "no such file"]),
    ],
)
def test_unsafe_or_broken_broker_settings_are_refused_naming_file_and_key(
    section: str, expected: list[str]
) -> None:
    ca = pki().tls.ca_cert
    text = f'[gateway]\nid = "gw-1"\n[uplink]\n{section.format(ca=ca, dir=ca.parent)}\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "gw.toml")
    message = str(caught.value)
    assert message.startswith("gw.toml: ")
    for part in expected:
        assert part in message


def test_tls_settings_are_taken_and_loopback_may_be_plain() -> None:
    ca = pki().tls.ca_cert
    text = f'[gateway]\nid = "gw-1"\n[uplink]\nhost = "mqtt.example.org"\nca_file = "{ca}"\n'
    assert parse_config(text).uplink.uses_tls
    assert not parse_config('[gateway]\nid = "gw-1"\n').uplink.uses_tls
    assert not parse_config(
        '[gateway]\nid = "g"\n[zigbee2mqtt]\nhost = "::1"\n'
    ).zigbee2mqtt.uses_tls


def test_the_dispatch_service_refuses_unsafe_broker_settings_naming_the_variable() -> None:
    for values, expected in [
        ({"mqtt_host": "broker.example.org"}, "plain MQTT to broker.example.org"),
        ({"mqtt_ca_file": Path("/nonexistent/ca.crt")}, "TRYGG_MQTT_CA_FILE: /nonexistent/ca"),
        ({"mqtt_cert_file": pki().tls.ca_cert}, "cert_file and key_file go together"),
    ]:
        with pytest.raises(ValidationError) as caught:
            CloudSettings(**values)  # type: ignore[arg-type]
        assert expected in str(caught.value)
    assert CloudSettings(mqtt_host="mqtt.example.org", mqtt_ca_file=pki().tls.ca_cert).mqtt_uses_tls


def test_broker_config_refuses_garbage_in_its_own_files(tmp_path: Path) -> None:
    (tmp_path / "dispatch.main.env").write_text("TRYGG_MQTT_USERNAME=dispatch.main\n\x00\n")
    with pytest.raises(BrokerConfigError, match="has no TRYGG_MQTT_PASSWORD"):
        dispatch_identities(tmp_path, ["main"])
    with pytest.raises(BrokerConfigError, match="--dispatch"):
        dispatch_identities(tmp_path, ["Main/../x"])
    assert len(broker_identities()) > 3


# --- client certificates instead of passwords ------------------------------------------


def _client_certificate(directory: Path, username: str) -> tuple[Path, Path]:
    """A client certificate for ``username`` from the tests' CA (its common name is the
    broker username, as use_identity_as_username reads it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from cloud.brokerconf import issue_certificate

    tls = pki().tls
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key((tls.ca_cert.parent / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_certificate(ca, ca_key, key.public_key(), username, client=True)
    cert_file, key_file = directory / f"{username}.crt", directory / f"{username}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_with_client_certificates_the_certificate_is_the_identity(tmp_path: Path) -> None:
    """broker-config --client-certificates: no password at all; the gateway's [uplink]
    cert_file / key_file make it itself, and the ACL holds as with passwords."""
    from dataclasses import replace

    from gateway.mqtt_socket import broker_options

    broker = Mosquitto(tmp_path)
    broker.listener = replace(broker.listener, client_certificates=True)
    broker.configure(broker.identities)
    broker.start()
    try:
        gw_cert, gw_key = _client_certificate(tmp_path, GATEWAY_ID)
        cloud_cert, cloud_key = _client_certificate(tmp_path, DISPATCH)
        ca = pki().tls.ca_cert
        section = parse_config(
            f'[gateway]\nid = "{GATEWAY_ID}"\n[uplink]\nport = {broker.port}\nca_file = "{ca}"\n'
            f'cert_file = "{gw_cert}"\nkey_file = "{gw_key}"\n'
        ).uplink
        dispatch = _context(ca)
        dispatch.load_cert_chain(cloud_cert, cloud_key)
        async with (
            aiomqtt.Client(**broker_options(section), identifier="gw") as gw,
            aiomqtt.Client("127.0.0.1", broker.port, tls_context=dispatch) as cloud,
        ):
            await cloud.subscribe("trygg/v1/gw/+/events", qos=1)
            await gw.publish(events_topic("gw-other"), b"forged", qos=1)
            await gw.publish(events_topic(GATEWAY_ID), b"own", qos=1)
            got = await asyncio.wait_for(anext(cloud.messages), 10)
            assert (got.topic.value, got.payload) == (events_topic(GATEWAY_ID), b"own")
        # Without a certificate the broker refuses the TLS handshake.
        with pytest.raises(aiomqtt.MqttError):
            password = pki().passwords[GATEWAY_ID]
            # (Under TLS 1.3 the broker refuses after the handshake and gives no CONNACK.)
            await _connects(
                broker.port,
                tls_context=_context(ca),
                username=GATEWAY_ID,
                password=password,
                timeout=2,
            )
    finally:
        broker.stop()


def test_broker_config_keeps_its_ca_and_reissues_the_server_certificate_for_new_names(
    tmp_path: Path,
) -> None:
    from cloud.brokerconf import ensure_tls

    first = ensure_tls(tmp_path, ["mqtt.example.org"])
    ca, cert = first.ca_cert.read_bytes(), first.server_cert.read_bytes()
    again = ensure_tls(tmp_path, ["mqtt.example.org"])
    assert (again.ca_cert.read_bytes(), again.server_cert.read_bytes()) == (ca, cert)
    wider = ensure_tls(tmp_path, ["mqtt.example.org", "10.0.0.5"])
    assert wider.ca_cert.read_bytes() == ca and wider.server_cert.read_bytes() != cert
    with pytest.raises(BrokerConfigError, match="--hostname"):
        ensure_tls(tmp_path / "other", [])
    with pytest.raises(BrokerConfigError, match="go together"):
        ensure_tls(tmp_path, [], ca_cert=first.ca_cert)


def test_plain_loopback_is_allowed_and_said_once_to_be_for_development(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cloud.brokerlink import broker_options as cloud_options
    from gateway.mqtt_socket import broker_options

    port = free_port()  # a broker address no other test warned about
    section = parse_config(f'[gateway]\nid = "g"\n[uplink]\nport = {port}\n').uplink
    with caplog.at_level("WARNING", logger="trygg.mqtt"):
        for _ in range(3):
            assert broker_options(section)["tls_context"] is None
            assert cloud_options(CloudSettings(mqtt_port=port))["tls_context"] is None
    told = [r.getMessage() for r in caplog.records if r.name == "trygg.mqtt"]
    assert told == [f"MQTT to 127.0.0.1:{port} without TLS: for development on this machine only"]
    secured = cloud_options(CloudSettings(**cloud_broker(port)))
    assert secured["tls_context"] is not None
    assert secured["tls_context"].minimum_version == ssl.TLSVersion.TLSv1_2
    assert secured["tls_context"].check_hostname
