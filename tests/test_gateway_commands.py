"""Signed commands at the gateway, on the secured test broker: the dispatch identity
publishes commands signed with a test key the gateway trusts, and reads the results.
The simulator plays the locks: Zigbee2MQTT ones that obey ``/set``, and BLE ones whose
GATT it serves over loopback TCP to the gateway's bleak backend (no radio here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from trygg_sim.broker import BrokerLogin
from trygg_sim.play import ScenarioRun, Wiring, gateway_config
from trygg_sim.scenario import parse_scenario
from trygg_sim.zigbee import SimulatedZigbeeDevice

from devices import DeviceType, utc_now
from devices.codecs.blelock import LockCause, LockState
from devices.wire import (
    Command,
    CommandResult,
    EventEnvelope,
    b64url,
    commands_topic,
    events_topic,
    key_id_of,
    results_topic,
)
from gateway import DropReason, Gateway, GatewayConfig, Store
from gateway.config import ConfigError, parse_config

from .servers import (
    DISPATCH,
    ZIGBEE2MQTT,
    Mosquitto,
    free_port,
    free_udp_port,
    login,
    mqtt_client,
    pki,
    wait_until,
)

GW = "gw-sim"
NO_ANSWER_S = 1.5
SKEW_S = 2.0

SCENARIO = """
name = "commands"
start = "02:00"
end = "03:00"
speed = 1
[[device]]
id = "pendant"
type = "alarm_button"
transport = "zigbee2mqtt"
address = "pendant"
home = "h"
[[device]]
id = "door"
type = "door_contact"
transport = "zigbee2mqtt"
address = "door"
home = "h"
"""
for _kind, _transport in (("z2m", "zigbee2mqtt"), ("ble", "ble_lock")):
    for _mode in ("obeys", "jams", "silent"):
        SCENARIO += (
            f'[[device]]\nid = "{_kind}-{_mode}"\ntype = "digital_lock"\n'
            f'transport = "{_transport}"\nhome = "h"\nlock = "{_mode}"\n'
            + (f'address = "lock-{_mode}"\n' if _kind == "z2m" else "")
        )
BLE_LOCKS = ("ble-obeys", "ble-jams", "ble-silent")


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def keys_file(path: Path, *keys: Ed25519PrivateKey) -> Path:
    entries = [
        {
            "key_id": key_id_of(raw_public(k)),
            "public_key": b64url(raw_public(k)),
            "algorithm": "Ed25519",
        }
        for k in keys
    ]
    path.write_text(json.dumps({"v": 1, "keys": entries}))
    return path


@dataclass
class Rig:
    tmp: Path
    broker: Mosquitto
    key: Ed25519PrivateKey
    config: GatewayConfig
    run: ScenarioRun
    gateway: Gateway
    dispatch: aiomqtt.Client
    results: list[CommandResult] = field(default_factory=list)
    events: list[EventEnvelope] = field(default_factory=list)

    def command(
        self,
        device: str,
        action: str = "unlock",
        *,
        key: Ed25519PrivateKey | None = None,
        issued_in_s: float = 0.0,
        valid_s: float = 60.0,
        **fields: Any,
    ) -> Command:
        signer = key or self.key
        issued = utc_now() + timedelta(seconds=issued_in_s)
        body: dict[str, Any] = {
            "id": f"cmd-{secrets.token_hex(6)}",
            "gateway_id": GW,
            "device_id": device,
            "action": action,
            "issued_by": "staff-17",
            "issued_at": issued,
            "expires_at": issued + timedelta(seconds=valid_s),
            "nonce": secrets.token_urlsafe(18),
            "key_id": key_id_of(raw_public(signer)),
            **fields,
        }
        unsigned = Command.model_validate(body)
        return unsigned.signed(signer.sign(unsigned.signing_bytes()))

    async def send(self, command: Command | bytes) -> None:
        payload = command if isinstance(command, bytes) else command.model_dump_json().encode()
        await self.dispatch.publish(commands_topic(GW), payload, qos=1)

    def outcomes(self, command_id: str) -> list[str]:
        return [r.outcome for r in self.results if r.command_id == command_id]

    async def final(
        self, command: Command, *, send: bool = True, limit_s: float = 10.0
    ) -> CommandResult:
        """Send the command (unless it was) and wait for its final result: refused,
        expired, done or failed."""
        if send:
            await self.send(command)
        finals = ("refused", "expired", "done", "failed")
        await wait_until(lambda: any(o in finals for o in self.outcomes(command.id)), limit_s)
        (result,) = [r for r in self.results if r.command_id == command.id and r.outcome in finals]
        return result

    async def refused(self, command: Command, reason: str) -> CommandResult:
        result = await self.final(command)
        assert (result.outcome, result.reason) == ("refused", reason), result
        assert result.gateway_id == GW
        assert self.outcomes(command.id) == ["refused"]  # nothing was accepted first
        return result

    async def restart(self) -> None:
        await self.gateway.stop()
        self.gateway = Gateway(self.config)
        await start(self.gateway)


async def start(gateway: Gateway) -> None:
    await gateway.start()
    await asyncio.wait_for(gateway.uplink.connected.wait(), 10)
    await asyncio.wait_for(gateway.link("zigbee2mqtt").ready.wait(), 10)
    for lock in BLE_LOCKS:
        link = gateway.device_links[lock]
        await asyncio.wait_for(link.connected.wait(), 10)  # type: ignore[attr-defined]


async def collect(
    dispatch: aiomqtt.Client, results: list[CommandResult], events: list[EventEnvelope]
) -> None:
    """What the dispatch identity hears of gateway GW: command results and events."""
    async for message in dispatch.messages:
        assert isinstance(message.payload, bytes)
        if message.topic.value == results_topic(GW):
            results.append(CommandResult.model_validate_json(message.payload))
        else:
            events.append(EventEnvelope.model_validate_json(message.payload))


@contextlib.asynccontextmanager
async def make_rig(tmp: Path, broker: Mosquitto, *, trusted: bool = True) -> AsyncIterator[Rig]:
    key = Ed25519PrivateKey.generate()
    scenario = parse_scenario(SCENARIO, "commands.toml")
    wiring = Wiring(
        broker_port=broker.port,
        ble_port=free_udp_port(),
        ble_gatt_port=free_port(),
        serial_dir=tmp / "serial",
        login=BrokerLogin(ZIGBEE2MQTT, pki().passwords[ZIGBEE2MQTT], pki().tls.ca_cert),
    )
    body = gateway_config(
        scenario, wiring, gateway_id=GW, store=tmp / "gw.db", gateway_login=login(GW)
    )
    body["commands"] = {"no_answer_s": NO_ANSWER_S, "clock_skew_s": SKEW_S}
    body["api"] = {"host": "127.0.0.1", "port": 0}
    if trusted:
        body["commands"]["trusted_keys_file"] = str(keys_file(tmp / "dispatch-keys.json", key))
    config = GatewayConfig.model_validate(body)
    async with contextlib.AsyncExitStack() as stack:
        run = await stack.enter_async_context(ScenarioRun(scenario, wiring))
        playing = asyncio.create_task(run.play())
        stack.callback(playing.cancel)
        await asyncio.wait_for(run.commands_ready.wait(), 10)
        dispatch = await stack.enter_async_context(mqtt_client(broker.port, DISPATCH))
        await dispatch.subscribe(results_topic(GW), qos=1)
        await dispatch.subscribe(events_topic(GW), qos=1)
        gateway = Gateway(config)
        await start(gateway)
        rig = Rig(tmp, broker, key, config, run, gateway, dispatch)
        collector = asyncio.create_task(collect(rig.dispatch, rig.results, rig.events))
        try:
            yield rig
        finally:
            collector.cancel()
            await rig.gateway.stop()


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path, mosquitto) as r:
        yield r


# -- refusals, one per reason, in the contract's order ------------------------------------
async def test_a_command_that_is_not_one_but_has_an_id_is_refused_malformed(rig: Rig) -> None:
    dropped = rig.gateway.counters.dropped[DropReason.MALFORMED]
    bad = {"id": "cmd-malformed-1", "gateway_id": GW, "action": "explode"}
    await rig.send(json.dumps(bad).encode())
    await wait_until(lambda: rig.outcomes("cmd-malformed-1"))
    (result,) = [r for r in rig.results if r.command_id == "cmd-malformed-1"]
    assert (result.outcome, result.reason) == ("refused", "malformed")
    assert rig.gateway.counters.dropped[DropReason.MALFORMED] == dropped + 1


async def test_a_command_for_another_gateway_is_refused(rig: Rig) -> None:
    await rig.refused(rig.command("z2m-obeys", gateway_id="gw-other"), "wrong_gateway")


async def test_a_command_signed_by_an_unknown_key_is_refused(rig: Rig) -> None:
    stranger = Ed25519PrivateKey.generate()
    await rig.refused(rig.command("z2m-obeys", key=stranger), "unknown_key")


async def test_a_command_whose_signature_does_not_verify_is_refused(rig: Rig) -> None:
    signed = rig.command("z2m-jams", "lock")
    # The signature of a lock command on another lock, and one that is no signature at all.
    forged = signed.model_copy(update={"device_id": "z2m-obeys", "action": "unlock"})
    await rig.refused(forged, "bad_signature")
    await rig.refused(
        rig.command("z2m-obeys").model_copy(update={"signature": "!!"}), "bad_signature"
    )
    await rig.refused(
        rig.command("z2m-obeys").model_copy(update={"signature": ""}), "bad_signature"
    )
    assert rig.run.zigbee_state("z2m-obeys")["lock_state"] == "locked"


async def test_a_command_valid_for_too_long_is_refused(rig: Rig) -> None:
    await rig.refused(rig.command("z2m-obeys", valid_s=121), "too_long")


async def test_a_command_issued_in_the_future_is_refused(rig: Rig) -> None:
    await rig.refused(rig.command("z2m-obeys", issued_in_s=SKEW_S + 30), "not_yet_valid")


async def test_an_expired_command_is_answered_expired_and_not_acted_on(rig: Rig) -> None:
    old = rig.command("z2m-obeys", issued_in_s=-100, valid_s=60)
    result = await rig.final(old)
    assert (result.outcome, result.reason) == ("expired", "expired")
    assert rig.run.zigbee_state("z2m-obeys")["lock_state"] == "locked"


async def test_a_replayed_command_is_refused_and_acts_once(rig: Rig) -> None:
    command = rig.command("ble-obeys")
    assert (await rig.final(command)).outcome == "done"
    await rig.send(command)
    await wait_until(lambda: "refused" in rig.outcomes(command.id))
    replay = [r for r in rig.results if r.command_id == command.id][-1]
    assert replay.reason == "replayed"
    assert len(rig.run.gatt_lock("ble-obeys").commands) == 1


async def test_a_replay_after_a_gateway_restart_is_refused(rig: Rig) -> None:
    command = rig.command("z2m-obeys")
    assert (await rig.final(command)).outcome == "done"
    await rig.restart()
    await rig.send(command)
    await wait_until(lambda: "refused" in rig.outcomes(command.id))
    assert [r.reason for r in rig.results if r.command_id == command.id][-1] == "replayed"


async def test_commands_sent_while_the_gateway_is_away_are_checked_when_it_is_back(
    rig: Rig,
) -> None:
    """Its persistent session keeps them at the broker; the one that expired meanwhile is
    never carried out, the one still valid is."""
    await rig.gateway.stop()
    stale = rig.command("z2m-obeys", issued_in_s=-100, valid_s=60)
    fresh = rig.command("ble-obeys")
    await rig.send(stale)
    await rig.send(fresh)
    rig.gateway = Gateway(rig.config)
    await start(rig.gateway)
    assert (await rig.final(stale, send=False)).outcome == "expired"
    result = await rig.final(fresh, send=False)
    assert result.outcome == "done", result
    assert rig.run.zigbee_state("z2m-obeys")["lock_state"] == "locked"
    assert rig.run.gatt_lock("ble-obeys").status.state is LockState.UNLOCKED


async def test_a_command_for_an_unknown_device_is_refused(rig: Rig) -> None:
    await rig.refused(rig.command("nobody"), "unknown_device")


async def test_a_command_a_device_cannot_carry_out_is_refused(rig: Rig) -> None:
    await rig.refused(rig.command("door"), "unsupported_action")
    await rig.refused(rig.command("pendant", "lock"), "unsupported_action")


async def test_a_second_command_while_one_runs_on_the_lock_is_refused_busy(rig: Rig) -> None:
    first = rig.command("z2m-silent")
    await rig.send(first)
    await wait_until(lambda: "accepted" in rig.outcomes(first.id))
    await rig.refused(rig.command("z2m-silent", "lock"), "busy")
    assert (await rig.final(first, send=False)).reason == "no_answer"


async def test_without_trusted_keys_every_command_is_refused_disabled(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with make_rig(tmp_path, mosquitto, trusted=False) as rig:
        await rig.refused(rig.command("z2m-obeys"), "commands_disabled")
        assert rig.run.zigbee_state("z2m-obeys")["lock_state"] == "locked"


# -- garbage ------------------------------------------------------------------------------
GARBAGE = [
    b"",
    b"\x00\xff\xfe" * 10,
    b"not json",
    b"[1, 2, 3]",
    b"null",
    b'{"id": 5}',
    b'{"id": "short", "gateway_id": "gw-sim"}',
    b"[" * 3000 + b"]" * 3000,
    # Past what even a configure command may carry (devices/wire.py MAX_CONFIGURE_BYTES).
    b'{"id": "cmd-oversized-1", "gateway_id": "gw-sim", "pad": "' + b"x" * 300_000 + b'"}',
    json.dumps({"id": "cmd-" + "\ud800" * 3, "gateway_id": GW}).encode(),
]


async def test_garbage_is_counted_and_dropped_and_the_gateway_keeps_working(rig: Rig) -> None:
    before = sum(rig.gateway.counters.dropped.values())
    for payload in GARBAGE:
        await rig.send(payload)
    await wait_until(lambda: sum(rig.gateway.counters.dropped.values()) >= before + len(GARBAGE))
    assert rig.gateway.counters.dropped[DropReason.OVERSIZED] >= 1
    # None of it had an id to answer to.
    assert rig.results == []
    # An alarm after it still reaches the dispatch broker, and a good command still acts.
    pendant = SimulatedZigbeeDevice("pendant", DeviceType.ALARM_BUTTON, {"battery": 90})
    async with mqtt_client(rig.broker.port, ZIGBEE2MQTT) as z2m:
        for topic, payload in pendant.press():
            await z2m.publish(topic, payload, qos=1)
    await wait_until(lambda: any(e.event.kind == "alarm_button" for e in rig.events))
    assert (await rig.final(rig.command("z2m-obeys"))).outcome == "done"


# -- acting on the simulator's locks --------------------------------------------------------
async def test_a_zigbee2mqtt_lock_opens_and_locks_on_signed_commands(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trygg.gateway.audit")
    unlock = rig.command("z2m-obeys", "unlock")
    result = await rig.final(unlock)
    assert (result.outcome, result.reason) == ("done", None)
    assert rig.outcomes(unlock.id) == ["accepted", "done"]
    assert rig.run.zigbee_state("z2m-obeys")["lock_state"] == "unlocked"
    lock = rig.command("z2m-obeys", "lock")
    assert (await rig.final(lock)).outcome == "done"
    assert rig.run.zigbee_state("z2m-obeys")["lock_state"] == "locked"
    rows = await rig.gateway.store.command_audit()
    mine = [
        (r.outcome, r.device_id, r.action, r.issued_by) for r in rows if r.command_id == unlock.id
    ]
    assert sorted(mine) == sorted(
        [(o, "z2m-obeys", "unlock", "staff-17") for o in ("received", "accepted", "done")]
    )
    assert any(unlock.id in m and "done" in m for m in caplog.messages)
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{rig.gateway.api_port}/metrics")).text
    assert 'trygg_gateway_command_results_total{outcome="done"} 2.0' in metrics
    assert 'trygg_gateway_command_results_total{outcome="accepted"} 2.0' in metrics


async def test_a_ble_lock_opens_on_the_signed_command_it_was_written(rig: Rig) -> None:
    lock = rig.run.gatt_lock("ble-obeys")
    assert rig.run.gatt_lock("ble-obeys").status.state is LockState.LOCKED
    command = rig.command("ble-obeys", "unlock")
    result = await rig.final(command)
    assert (result.outcome, result.reason) == ("done", None)
    assert lock.status.state is LockState.UNLOCKED and lock.status.cause is LockCause.REMOTE
    assert Command.model_validate_json(lock.commands[-1]) == command  # the signed bytes
    assert (await rig.final(rig.command("ble-obeys", "lock"))).outcome == "done"
    assert rig.run.gatt_lock("ble-obeys").status.state is LockState.LOCKED
    rows = await rig.gateway.store.command_audit()
    assert {r.outcome for r in rows if r.command_id == command.id} == {
        "received",
        "accepted",
        "done",
    }


@pytest.mark.parametrize("lock", ["z2m-jams", "ble-jams"])
async def test_a_jammed_lock_fails_the_command_jammed(rig: Rig, lock: str) -> None:
    result = await rig.final(rig.command(lock, "lock"))
    assert (result.outcome, result.reason) == ("failed", "jammed")


@pytest.mark.parametrize("lock", ["z2m-silent", "ble-silent"])
async def test_a_lock_that_never_answers_fails_the_command_no_answer(rig: Rig, lock: str) -> None:
    command = rig.command(lock, "unlock")
    result = await rig.final(command, limit_s=NO_ANSWER_S + 10)
    assert (result.outcome, result.reason) == ("failed", "no_answer")
    assert rig.outcomes(command.id) == ["accepted", "failed"]
    rows = await rig.gateway.store.command_audit()
    assert ("failed", "no_answer") in {
        (r.outcome, r.reason) for r in rows if r.command_id == command.id
    }


async def test_a_zigbee2mqtt_lock_reported_offline_fails_the_command_unreachable(
    rig: Rig,
) -> None:
    lock = SimulatedZigbeeDevice("lock-obeys", DeviceType.DIGITAL_LOCK)
    async with mqtt_client(rig.broker.port, ZIGBEE2MQTT) as z2m:
        await z2m.publish(*lock.availability(False), qos=1)
    device = rig.gateway.registry.get("z2m-obeys")
    assert device is not None
    await wait_until(lambda: device.status.online is False)
    result = await rig.final(rig.command("z2m-obeys"))
    assert (result.outcome, result.reason) == ("failed", "unreachable")
    assert rig.run.zigbee_state("z2m-obeys")["lock_state"] == "locked"


async def test_a_command_too_large_for_the_ble_lock_fails_too_large(rig: Rig) -> None:
    command = rig.command("ble-obeys", id="c" * 64, issued_by="s" * 100, nonce="n" * 64)
    assert len(command.model_dump_json()) > 512
    result = await rig.final(command)
    assert (result.outcome, result.reason) == ("failed", "too_large")
    assert rig.run.gatt_lock("ble-obeys").commands == []


async def test_a_ble_lock_out_of_reach_fails_the_command_unreachable(rig: Rig) -> None:
    link = rig.gateway.device_links["ble-obeys"]
    gatt = rig.run.gatt_lock("ble-obeys")
    gatt.linked = False
    gatt.drop_links()
    await wait_until(lambda: not link.connected.is_set())  # type: ignore[attr-defined]
    result = await rig.final(rig.command("ble-obeys"))
    assert (result.outcome, result.reason) == ("failed", "unreachable")


# -- the trusted keys file ------------------------------------------------------------------
def _config_with(path: Path) -> str:
    return f'[gateway]\nid = "{GW}"\n[commands]\ntrusted_keys_file = "{path}"\n'


def _entry(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = raw_public(key)
    return {"key_id": key_id_of(raw), "public_key": b64url(raw), "algorithm": "Ed25519"}


def _fixed_key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)  # the same in every worker


def _bad_files() -> Iterator[tuple[object, str]]:
    good = _entry(_fixed_key(1))
    yield "not json {", "not JSON"
    yield [good], "expected an object"
    yield {"v": 2, "keys": [good]}, "v must be 1"
    yield {"v": 1, "keys": []}, "at least one key"
    yield {"v": 1, "keys": [good], "extra": 1}, "unknown field"
    yield {"v": 1, "keys": [{**good, "algorithm": "RSA"}]}, f"key '{good['key_id']}'"
    yield {"v": 1, "keys": [{**good, "public_key": "AAAA"}]}, "32 bytes"
    yield {"v": 1, "keys": [{**good, "public_key": good["public_key"] + "="}]}, "32 bytes"
    other = _entry(_fixed_key(2))
    yield {"v": 1, "keys": [{**good, "key_id": other["key_id"]}]}, "does not match"
    yield {"v": 1, "keys": [good, good]}, "listed twice"
    yield {"v": 1, "keys": [{"key_id": 7}]}, "algorithm must be Ed25519"


@pytest.mark.parametrize(("body", "message"), list(_bad_files()))
def test_a_bad_trusted_keys_file_is_a_config_error_naming_file_and_key(
    tmp_path: Path, body: object, message: str
) -> None:
    path = tmp_path / "dispatch-keys.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    with pytest.raises(ConfigError) as caught:
        parse_config(_config_with(path), "gw.toml")
    text = str(caught.value)
    assert "gw.toml" in text and "trusted_keys_file" in text and str(path) in text
    assert message in text


def test_a_missing_trusted_keys_file_and_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the trusted keys file"):
        parse_config(_config_with(tmp_path / "absent.json"), "gw.toml")
    with pytest.raises(ConfigError, match=r"commands\.no_answer_s"):
        parse_config(f'[gateway]\nid = "{GW}"\n[commands]\nno_answer_s = 0\n', "gw.toml")
    with pytest.raises(ConfigError, match=r"commands\.unknown"):
        parse_config(f'[gateway]\nid = "{GW}"\n[commands]\nunknown = 1\n', "gw.toml")


def test_check_config_names_the_trusted_keys(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trygg.cli import app

    key = _fixed_key(3)
    config = tmp_path / "gw.toml"
    config.write_text(_config_with(keys_file(tmp_path / "k.json", key)))
    result = CliRunner().invoke(app, ["gateway", "check-config", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"signed commands: from keys {key_id_of(raw_public(key))}" in result.output
    (tmp_path / "k.json").write_text("{}")
    result = CliRunner().invoke(app, ["gateway", "check-config", "--config", str(config)])
    assert result.exit_code == 2 and "trusted_keys_file" in result.output


def test_rotation_keys_are_all_trusted_and_defaults_hold(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    config = parse_config(_config_with(keys_file(tmp_path / "k.json", old, new)), "gw.toml")
    keys = config.commands.trusted_keys
    assert keys is not None and len(keys) == 2
    message = b"hello"
    assert keys.verify(key_id_of(raw_public(new)), new.sign(message), message)
    assert not keys.verify(key_id_of(raw_public(new)), old.sign(message), message)
    defaults = parse_config(f'[gateway]\nid = "{GW}"\n', "gw.toml").commands
    assert (defaults.trusted_keys, defaults.no_answer_s, defaults.clock_skew_s) == (None, 10.0, 30)


# -- the nonce store --------------------------------------------------------------------------
async def test_a_nonce_is_kept_until_its_time_and_survives_the_store_file_being_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    store = Store(path)
    await store.open()
    try:
        now = time.time()
        assert await store.claim_nonce("n-kept-000000001", now + 3600)
        assert not await store.claim_nonce("n-kept-000000001", now + 3600)
        assert await store.claim_nonce("n-passed-0000001", now - 1)
        # Claiming prunes the nonces whose time has passed; their commands are expired anyway.
        assert await store.claim_nonce("n-other-00000001", now + 3600)
        assert await store.nonces() == 2
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        await store.check()  # the watch notices and carries what it can read over
        assert not await store.claim_nonce("n-kept-000000001", now + 3600)
    finally:
        await store.close()


# -- the lock log ----------------------------------------------------------------------------
async def test_the_lock_log_holds_the_command_and_what_the_lock_said_in_a_valid_chain(
    rig: Rig,
) -> None:
    command = rig.command("ble-obeys")
    assert (await rig.final(command)).outcome == "done"

    async def opened() -> bool:
        return any(e.action == "opened" for e in await rig.gateway.store.lock_log())

    await wait_until(opened)  # the lock's own notification, after the command's result
    url = f"http://127.0.0.1:{rig.gateway.api_port}/lock-log"
    async with httpx.AsyncClient() as http:
        body = (await http.get(url, params={"device": "ble-obeys"})).json()
        garbage = [
            (await http.get(url, params=params)).status_code
            for params in (
                {"limit": "0"},
                {"limit": "1001"},
                {"limit": "many"},
                {"before": "0"},
                {"before": "-3"},
                {"before": str(10**30)},
                {"device": ""},
                {"device": "x" * 129},
            )
        ]
    assert garbage == [422] * 8
    mine = [
        (e["action"], e["actor"], e["outcome"], e["reason"], e["command_id"])
        for e in body["entries"]
    ]
    # The lock's notification and the command's result race each other; the command's
    # own steps come in their order.
    opening = ("opened", "lock", "reported", "remote", "")
    assert [m for m in mine if m != opening] == [
        ("unlock", "staff-17", "done", "", command.id),
        ("unlock", "staff-17", "accepted", "", command.id),
        ("unlock", "staff-17", "received", "", command.id),
    ]
    assert mine.count(opening) == 1
    assert body["verification"]["valid"] is True
    assert body["verification"]["entries"] == len(await rig.gateway.store.lock_log(1000))
