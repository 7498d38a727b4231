"""The dispatch service's configuration at the gateway (gateway/remoteconfig.py), on the
secured test broker: signed ``configure`` commands add, change and remove devices and
homes, are refused with the reason when the file's rules say no, survive a restart, and
take over local pairings by the rules docs/configuration.md states."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from trygg_sim.broker import BrokerLogin
from trygg_sim.play import ScenarioRun, Wiring, gateway_config
from trygg_sim.scenario import parse_scenario

from devices import utc_now
from devices.wire import (
    GATEWAY_TARGET,
    MAX_CONFIG_DEVICES,
    Command,
    CommandResult,
    EventEnvelope,
    commands_topic,
    events_topic,
    key_id_of,
    results_topic,
)
from gateway import DropReason, Gateway, GatewayConfig
from gateway.registry import DEVICE_CONFIG, RegistryError

from .servers import DISPATCH, ZIGBEE2MQTT, Mosquitto, login, mqtt_client, pki, wait_until
from .test_gateway_commands import GW, collect, keys_file, raw_public

# The simulator plays four pendants; the gateway's file declares only the first.
SCENARIO = """
name = "configure"
start = "02:00"
end = "03:00"
speed = 1
"""
for _name in ("pendant", "spare", "local", "other"):
    SCENARIO += (
        f'[[device]]\nid = "{_name}"\ntype = "alarm_button"\ntransport = "zigbee2mqtt"\n'
        f'address = "{_name}-addr"\nhome = "h1"\n'
    )


@dataclass
class Rig:
    key: Ed25519PrivateKey
    config: GatewayConfig
    run: ScenarioRun
    gateway: Gateway
    dispatch: aiomqtt.Client
    results: list[CommandResult] = field(default_factory=list)
    events: list[EventEnvelope] = field(default_factory=list)

    def command(self, action: str = "configure", **fields: Any) -> Command:
        issued = utc_now()
        body: dict[str, Any] = {
            "id": f"cfg-{secrets.token_hex(6)}",
            "gateway_id": GW,
            "device_id": GATEWAY_TARGET,
            "action": action,
            "issued_by": "tech-3",
            "issued_at": issued,
            "expires_at": issued + timedelta(seconds=60),
            "nonce": secrets.token_urlsafe(18),
            "key_id": key_id_of(raw_public(self.key)),
            **fields,
        }
        unsigned = Command.model_validate(body)
        return unsigned.signed(self.key.sign(unsigned.signing_bytes()))

    def configure(self, version: int, devices: list[dict[str, Any]], **more: Any) -> Command:
        return self.command(configuration={"version": version, "devices": devices, **more})

    async def result(self, command: Command | bytes, command_id: str = "") -> CommandResult:
        if isinstance(command, Command):
            payload, command_id = command.model_dump_json().encode(), command.id
        else:
            payload = command
        await self.dispatch.publish(commands_topic(GW), payload, qos=1)
        await wait_until(lambda: any(r.command_id == command_id for r in self.results))
        (result,) = [r for r in self.results if r.command_id == command_id]
        return result

    async def restart(self) -> None:
        await self.gateway.stop()
        self.gateway = Gateway(self.config)
        await _start(self.gateway)

    def origins(self) -> dict[str, str]:
        return {d.id: d.origin for d in self.gateway.registry}


def pendant(device_id: str, address: str, home: str = "h1", **more: Any) -> dict[str, Any]:
    return {
        "id": device_id,
        "type": "alarm_button",
        "transport": "zigbee2mqtt",
        "address": address,
        "home": home,
        **more,
    }


async def _start(gateway: Gateway) -> None:
    await gateway.start()
    await asyncio.wait_for(gateway.uplink.connected.wait(), 10)
    await asyncio.wait_for(gateway.link("zigbee2mqtt").ready.wait(), 10)


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Rig]:
    key = Ed25519PrivateKey.generate()
    scenario = parse_scenario(SCENARIO, "configure.toml")
    wiring = Wiring(
        broker_port=mosquitto.port,
        serial_dir=tmp_path / "serial",
        login=BrokerLogin(ZIGBEE2MQTT, pki().passwords[ZIGBEE2MQTT], pki().tls.ca_cert),
    )
    body = gateway_config(
        scenario, wiring, gateway_id=GW, store=tmp_path / "gw.db", gateway_login=login(GW)
    )
    body["devices"] = [d for d in body["devices"] if d["id"] == "pendant"]
    body["homes"] = [{"id": "h1"}]
    body["commands"] = {"trusted_keys_file": str(keys_file(tmp_path / "keys.json", key))}
    config = GatewayConfig.model_validate(body)
    async with contextlib.AsyncExitStack() as stack:
        run = await stack.enter_async_context(ScenarioRun(scenario, wiring))
        playing = asyncio.create_task(run.play())
        stack.callback(playing.cancel)
        dispatch = await stack.enter_async_context(mqtt_client(mosquitto.port, DISPATCH))
        await dispatch.subscribe(results_topic(GW), qos=1)
        await dispatch.subscribe(events_topic(GW), qos=1)
        gateway = Gateway(config)
        await _start(gateway)
        rig = Rig(key, config, run, gateway, dispatch)
        collector = asyncio.create_task(collect(rig.dispatch, rig.results, rig.events))
        try:
            yield rig
        finally:
            collector.cancel()
            await rig.gateway.stop()


async def _pressed(rig: Rig, device_id: str, known_as: str | None = None) -> None:
    """The simulator's device pressed, and its alarm at the dispatch identity (under the
    id the gateway knows it by)."""
    await rig.run.act(device_id, "press")
    named = known_as or device_id
    await wait_until(
        lambda: any(
            e.event.device_id == named and e.event.kind == "alarm_button" for e in rig.events
        ),
        30,  # a gateway just restarted on a busy machine: its uplink's first round
    )


async def test_a_configured_device_is_an_alarm_at_its_next_press_and_stays_after_a_restart(
    rig: Rig,
) -> None:
    assert (await rig.gateway.health()).config_version is None
    homes = [{"id": "h2", "door_open_at_night": True, "timezone": "Europe/Stockholm"}]
    command = rig.configure(
        1,
        [pendant("spare", "spare-addr", "h2", checkin_s=600)],
        homes=homes,
        heartbeat_interval_s=120,
    )
    result = await rig.result(command)
    assert (result.outcome, result.reason, result.detail) == ("done", None, "version 1 applied")
    assert rig.origins() == {"pendant": "config", "spare": "remote"}
    spare = rig.gateway.registry.get("spare")
    assert spare is not None and spare.config.checkin_s == 600
    assert set(rig.gateway.pipeline.rules.homes) == {"h1", "h2"}
    assert rig.gateway.uplink.heartbeat_interval_s == 120
    assert (await rig.gateway.health()).config_version == 1
    with pytest.raises(RegistryError, match="set by the dispatch service"):
        await rig.gateway.unpair("spare")  # the gateway's local API cannot take it away
    await _pressed(rig, "spare")
    # Its inventory names it, so the dispatch service takes its alarms.
    assert "spare" in {d.id for d in rig.gateway.inventory.devices()}

    await rig.restart()
    assert rig.origins() == {"pendant": "config", "spare": "remote"}
    assert (await rig.gateway.health()).config_version == 1
    assert rig.gateway.uplink.heartbeat_interval_s == 120
    assert set(rig.gateway.pipeline.rules.homes) == {"h1", "h2"}
    rig.events.clear()
    await _pressed(rig, "spare")
    # The same version again (a resend that crossed a heartbeat) changes nothing.
    resend = rig.configure(
        1,
        [pendant("spare", "spare-addr", "h2", checkin_s=600)],
        homes=homes,
        heartbeat_interval_s=120,
    )
    done = await rig.result(resend)
    assert (done.outcome, done.detail) == ("done", "version 1 is in force already")


async def test_a_configuration_the_files_rules_refuse_is_refused_with_the_reason_and_the_old_stays(
    rig: Rig,
) -> None:
    assert (await rig.result(rig.configure(3, [pendant("spare", "spare-addr")]))).outcome == "done"
    refusals = {
        "devices.0.type": [pendant("x", "x-addr") | {"type": "toaster"}],
        "devices.0.id": [pendant("bad id!", "x-addr")],
        "devices.0.checkin_s": [pendant("x", "x-addr", checkin_s=1)],
        "device pendant is declared in the gateway's file": [pendant("pendant", "p2")],
        "two zigbee2mqtt devices have the address 'pendant-addr'": [pendant("y", "pendant-addr")],
        "two devices have the same id 'z'": [pendant("z", "a1"), pendant("z", "a2")],
        "no [[serial]] port named 'ttyX'": [
            {"id": "gps", "type": "gps_pendant", "transport": "nmea", "port": "ttyX", "home": "h1"}
        ],
    }
    for words, devices in refusals.items():
        result = await rig.result(rig.configure(4, devices))
        assert (result.outcome, result.reason) == ("refused", "invalid_config"), result
        assert result.detail is not None and words in result.detail, (words, result.detail)
    bad_home = await rig.result(rig.configure(4, [], homes=[{"id": "h9", "timezone": "Mars/Base"}]))
    assert bad_home.reason == "invalid_config" and "unknown time zone" in (bad_home.detail or "")
    file_home = await rig.result(rig.configure(4, [], homes=[{"id": "h1"}]))
    assert file_home.detail == "home h1 is declared in the gateway's file"
    stale = await rig.result(rig.configure(2, []))
    assert (stale.outcome, stale.reason) == ("refused", "stale_version")
    assert stale.detail == "version 2; version 3 is in force"
    changed = await rig.result(rig.configure(3, []))
    assert changed.reason == "stale_version"  # the same version, another content
    # Nothing of any of them was applied, and the store keeps version 3.
    assert rig.origins() == {"pendant": "config", "spare": "remote"}
    assert (await rig.gateway.health()).config_version == 3
    assert rig.gateway.configurator.refused == len(refusals) + 4
    await rig.restart()
    assert rig.origins() == {"pendant": "config", "spare": "remote"}
    # A later version removes what it no longer names.
    assert (await rig.result(rig.configure(5, []))).outcome == "done"
    assert rig.origins() == {"pendant": "config"}
    await rig.run.act("spare", "press")
    await _pressed(rig, "pendant")  # the spare's press, sent first, made no alarm
    assert not any(e.event.device_id == "spare" for e in rig.events)


async def test_the_centre_takes_over_a_local_pairing_and_leaves_the_others_for_approval(
    rig: Rig,
) -> None:
    """Paired on the gateway during an installation without network: ``local`` is taken
    over by a configured device at its address (another id), ``other`` by the same id;
    a third local pairing the configuration does not name stays a local pairing."""
    for name in ("local", "other", "spare"):
        await rig.gateway.pair(DEVICE_CONFIG.validate_python(pendant(name, f"{name}-addr")))
    assert rig.origins() == {
        "pendant": "config",
        "local": "paired",
        "other": "paired",
        "spare": "paired",
    }
    configured = [
        pendant("h1-pendant-2", "local-addr"),
        pendant("other", "other-addr", checkin_s=900),
    ]
    assert (await rig.result(rig.configure(1, configured))).outcome == "done"
    expected = {"pendant": "config", "spare": "paired", "h1-pendant-2": "remote", "other": "remote"}
    assert rig.origins() == expected
    kept = {device_id for device_id, _ in await rig.gateway.store.paired_devices()}
    assert kept == {"spare"}  # the replaced pairings are forgotten with the same commit
    await rig.restart()
    assert rig.origins() == expected
    rig.events.clear()
    await _pressed(rig, "local", known_as="h1-pendant-2")  # the simulator's is at local-addr
    assert {e.event.device_id for e in rig.events} == {"h1-pendant-2"}


async def test_configure_commands_that_are_not_one_are_refused_or_dropped(rig: Rig) -> None:
    unsigned = rig.command("unlock", device_id="pendant").model_dump(mode="json")
    assert unsigned["configuration"] is None
    malformed = {**unsigned, "action": "configure"}  # a configure without its configuration
    result = await rig.result(json.dumps(malformed).encode(), unsigned["id"])
    assert (result.outcome, result.reason) == ("refused", "malformed")
    assert "carries a configuration" in (result.detail or "")
    too_many = {**unsigned, "id": "cfg-too-many", "action": "configure"}
    too_many["configuration"] = {"version": 1, "devices": [{}] * (MAX_CONFIG_DEVICES + 1)}
    result = await rig.result(json.dumps(too_many).encode(), "cfg-too-many")
    assert result.reason == "malformed"
    elsewhere = {**unsigned, "id": "cfg-elsewhere", "device_id": "pendant"}
    elsewhere["configuration"] = {"version": 1}
    assert (await rig.result(json.dumps(elsewhere).encode(), "cfg-elsewhere")).reason == "malformed"
    # A configuration on an unlock would change what it signs: refused, not applied.
    unlock = rig.command("unlock", device_id="pendant")
    smuggled = unlock.model_dump(mode="json") | {"configuration": {"version": 9}}
    result = await rig.result(json.dumps(smuggled).encode(), unlock.id)
    assert result.reason == "malformed"
    # Oversized, garbage devices: counted drops or refusals, and the gateway goes on.
    dropped = rig.gateway.counters.dropped[DropReason.OVERSIZED]
    huge = {**unsigned, "id": "cfg-huge", "action": "configure"}
    huge["configuration"] = {"version": 1, "devices": [{"x": "y" * 1000}] * 300}
    await rig.dispatch.publish(commands_topic(GW), json.dumps(huge).encode(), qos=1)
    await wait_until(lambda: rig.gateway.counters.dropped[DropReason.OVERSIZED] > dropped)
    padded = rig.command("unlock", device_id="pendant")  # any other command: 8 KB at most
    await rig.dispatch.publish(
        commands_topic(GW), padded.model_dump_json().encode() + b" " * 9000, qos=1
    )
    await wait_until(lambda: rig.gateway.counters.dropped[DropReason.OVERSIZED] > dropped + 1)
    assert not any(r.command_id == padded.id for r in rig.results)
    garbage = await rig.result(rig.configure(1, [{"id": 7}, {"nested": [[[[]]]]}]))
    assert garbage.reason == "invalid_config"
    assert (await rig.gateway.health()).config_version is None
    await _pressed(rig, "pendant")
