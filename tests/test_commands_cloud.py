"""Signed commands, the dispatch service's side: a technician or supervisor asks for an
action on a gateway's device; the service signs it, stores it, publishes it once on the
gateway's commands topic (read here as that gateway's own broker identity), and follows
the gateway's results to a final state, on the real secured broker and a real database."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import stat
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from cloud import CloudSettings
from cloud.commandkeys import (
    export_trusted_keys,
    load_command_keys,
    new_key_file,
    read_public_key,
)
from cloud.db import AuditEntry
from devices.wire import (
    Command,
    CommandOutcome,
    CommandResult,
    commands_topic,
    key_id_of,
    results_topic,
)

from .conftest import (
    GATEWAY_ID,
    RunningCloud,
    inventory_device,
    publish,
    publish_inventory,
    run_cloud,
)
from .servers import Mosquitto, cloud_broker, mqtt_client, pki, throwaway_database, wait_until

pytestmark = [pytest.mark.integration]

DEVICES = [
    inventory_device("lock-1", "digital_lock", "home-12", actions=["unlock", "lock"]),
    inventory_device("lock-2", "digital_lock", "home-12", actions=["unlock"]),
    inventory_device("door-1", "door_contact", "home-12"),
]
COMMANDS = f"/api/v1/gateways/{GATEWAY_ID}/commands"


@contextlib.asynccontextmanager
async def keyed_cloud(
    mosquitto: Mosquitto, tmp_path: Path, url: str
) -> AsyncIterator[RunningCloud]:
    """The dispatch service with a command key of its own, a sweep that expires a
    command as soon as it is past its expiry, and the test gateway's devices reported."""
    key = tmp_path / "command-key.pem"
    new_key_file(key)
    settings = CloudSettings(
        database_url=url,
        command_key_file=key,
        command_expiry_grace_s=0,
        command_sweep_every_s=0.05,
        **cloud_broker(mosquitto.port),
    )
    async with run_cloud(settings) as cloud:
        await publish_inventory(cloud, DEVICES)
        yield cloud


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_db_cloud(
    request: pytest.FixtureRequest, mosquitto: Mosquitto, tmp_path: Path
) -> AsyncIterator[RunningCloud]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
        else:
            url = await stack.enter_async_context(throwaway_database())
        yield await stack.enter_async_context(keyed_cloud(mosquitto, tmp_path, url))


@pytest.fixture
async def cloud(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[RunningCloud]:
    async with keyed_cloud(mosquitto, tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'c.db'}") as c:
        yield c


def exported_keys(cloud: RunningCloud, tmp_path: Path) -> dict[str, Ed25519PublicKey]:
    """What ``trygg cloud command-key export`` gives gateways, as key id -> public key."""
    out = tmp_path / "dispatch-keys.json"
    export_trusted_keys(cloud.settings, out)
    body = json.loads(out.read_text())
    assert body["v"] == 1
    keys = {}
    for item in body["keys"]:
        raw = base64.urlsafe_b64decode(item["public_key"] + "==")
        assert item["algorithm"] == "Ed25519" and item["key_id"] == key_id_of(raw)
        keys[item["key_id"]] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


async def command_of(cloud: RunningCloud, command_id: str) -> dict[str, Any]:
    async with await cloud.authed("stina") as http:
        response = await http.get(f"/api/v1/commands/{command_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


async def reaches(cloud: RunningCloud, command_id: str, state: str) -> bool:
    found: str = (await command_of(cloud, command_id))["state"]
    return found == state


async def answer(
    cloud: RunningCloud,
    command_id: str,
    outcome: CommandOutcome,
    reason: str | None = None,
    gateway_id: str = GATEWAY_ID,
) -> None:
    """``gateway_id``'s result, on its own results topic as its own identity."""
    result = CommandResult(
        command_id=command_id,
        gateway_id=gateway_id,
        outcome=outcome,
        reason=reason,
        detail=None if reason is None else f"because {reason}",
        at=datetime.now(UTC),
    )
    await publish(cloud.settings.mqtt_port, results_topic(gateway_id), result.model_dump_json())


async def send(
    cloud: RunningCloud, user: str = "tove", device: str = "lock-1", **body: Any
) -> httpx.Response:
    async with await cloud.authed(user) as http:
        return await http.post(COMMANDS, json={"device_id": device, "action": "unlock", **body})


async def sent(cloud: RunningCloud, **body: Any) -> dict[str, Any]:
    response = await send(cloud, **body)
    assert response.status_code == 202, response.text
    command: dict[str, Any] = response.json()
    return command


async def test_a_command_is_signed_published_once_to_its_gateway_and_followed_to_done(
    any_db_cloud: RunningCloud, tmp_path: Path
) -> None:
    cloud = any_db_cloud
    trusted = exported_keys(cloud, tmp_path)
    async with mqtt_client(cloud.settings.mqtt_port, GATEWAY_ID) as gateway:
        await gateway.subscribe(commands_topic(GATEWAY_ID), qos=1)
        created = await sent(cloud, ttl_s=20)
        message = await asyncio.wait_for(anext(gateway.messages), 10)
        assert message.qos == 1 and not message.retain
        assert isinstance(message.payload, bytes)
        command = Command.model_validate_json(message.payload)
        # Signed by a key the gateways were given, over exactly what the contract says.
        signature = command.signature_bytes()
        assert signature is not None
        trusted[command.key_id].verify(signature, command.signing_bytes())
        assert (command.expires_at - command.issued_at).total_seconds() == 20
        fields = ("id", "gateway_id", "device_id", "action", "issued_by", "key_id")
        assert {f: getattr(command, f) for f in fields} == {
            "id": created["id"],
            "gateway_id": GATEWAY_ID,
            "device_id": "lock-1",
            "action": "unlock",
            "issued_by": "tove",
            "key_id": created["key_id"],
        }
        assert created["state"] == "pending" and created["reason"] is None

        await answer(cloud, command.id, "accepted")
        await wait_until(lambda: reaches(cloud, command.id, "accepted"))
        await answer(cloud, command.id, "done")
        await wait_until(lambda: reaches(cloud, command.id, "done"))
        # Final stays final: a late failure or a repeated accept changes nothing.
        await answer(cloud, command.id, "failed", "jammed")
        await answer(cloud, command.id, "accepted")
        await wait_until(lambda: cloud.ingest.dropped["result_not_applicable"] == 2)
        final = await command_of(cloud, command.id)
        assert (final["state"], final["reason"]) == ("done", None)
        # Published once: nothing else came to the gateway.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await anext(gateway.messages)
    async with cloud.app.state.services.sessions() as session:
        rows = (await session.execute(select(AuditEntry))).scalars()
        audits = [(a.actor, a.action, a.target, a.detail) for a in rows]
    detail = {"gateway": GATEWAY_ID, "device": "lock-1", "action": "unlock", "ttl_s": 20}
    assert ("tove", "command.create", f"command:{command.id}", detail) in audits


@pytest.mark.parametrize(
    ("steps", "state", "reason"),
    [
        ([("refused", "bad_signature")], "refused", "bad_signature"),
        ([("refused", "busy"), ("done", None)], "refused", "busy"),
        ([("accepted", None), ("failed", "jammed")], "failed", "jammed"),
        ([("failed", "unreachable"), ("accepted", None)], "failed", "unreachable"),
        ([("expired", "expired"), ("done", None)], "expired", "expired"),
        ([("done", None), ("refused", "replayed")], "done", None),
        ([("accepted", None), ("refused", "busy")], "accepted", None),
    ],
)
async def test_results_move_a_command_by_the_state_machine_and_final_stays_final(
    cloud: RunningCloud,
    steps: list[tuple[CommandOutcome, str | None]],
    state: str,
    reason: str | None,
) -> None:
    command = await sent(cloud)
    applied = cloud.ingest.commands
    assert applied is not None
    for outcome, why in steps:
        await answer(cloud, command["id"], outcome, why)
    # Each result is applied or counted as not applicable, in order.
    dropped = cloud.ingest.dropped
    await wait_until(lambda: applied.results + dropped["result_not_applicable"] == len(steps))
    found = await command_of(cloud, command["id"])
    assert (found["state"], found["reason"]) == (state, reason)
    if reason is not None and state != "expired":
        assert found["detail"] == f"because {reason}"


async def test_another_gateways_result_and_garbage_change_nothing_and_are_counted(
    cloud: RunningCloud,
) -> None:
    command = await sent(cloud)
    port = cloud.settings.mqtt_port
    ok = CommandResult(
        command_id=command["id"], gateway_id=GATEWAY_ID, outcome="done", at=datetime.now(UTC)
    ).model_dump(mode="json")
    mine = results_topic(GATEWAY_ID)
    garbage: list[tuple[str, bytes, str]] = [
        (mine, b"not json", "result_malformed"),
        (mine, b"{}", "result_malformed"),
        (mine, b"[1, 2]", "result_malformed"),
        (mine, json.dumps(ok | {"outcome": "opened"}).encode(), "result_malformed"),
        (mine, json.dumps(ok | {"extra": 1}).encode(), "result_malformed"),
        (mine, json.dumps(ok | {"v": 2}).encode(), "result_malformed"),
        (mine, json.dumps(ok | {"command_id": "x"}).encode(), "result_malformed"),
        (mine, b"\xff\xfe" * 10, "result_malformed"),
        (mine, b"x" * 70_000, "oversized"),
        # Says it is another gateway's, on this one's topic.
        (mine, json.dumps(ok | {"gateway_id": "gw-test-2"}).encode(), "result_gateway_mismatch"),
        (
            mine,
            json.dumps(ok | {"command_id": "unknown-command-1"}).encode(),
            "result_unknown_command",
        ),
    ]
    for topic, payload, _ in garbage:
        await publish(port, topic, payload)
    # Another gateway answers for this gateway's command, as itself on its own topic.
    await answer(cloud, command["id"], "done", gateway_id="gw-test-2")
    expected: dict[str, int] = {"result_wrong_gateway": 1}
    for _, _, why in garbage:
        expected[why] = expected.get(why, 0) + 1
    await wait_until(lambda: dict(cloud.ingest.dropped) == expected)
    assert (await command_of(cloud, command["id"]))["state"] == "pending"
    # And the real gateway's result, right behind the garbage, still lands.
    await answer(cloud, command["id"], "done")
    await wait_until(lambda: reaches(cloud, command["id"], "done"))


async def test_an_unanswered_command_is_expired_by_the_sweep(cloud: RunningCloud) -> None:
    command = await sent(cloud, ttl_s=1)
    await wait_until(lambda: reaches(cloud, command["id"], "expired"))
    found = await command_of(cloud, command["id"])
    assert found["reason"] == "expired"
    # Too late now: the gateway's done changes nothing.
    await answer(cloud, command["id"], "done")
    await wait_until(lambda: cloud.ingest.dropped["result_not_applicable"] == 1)
    assert (await command_of(cloud, command["id"]))["state"] == "expired"


async def test_the_live_stream_sees_pending_then_done(cloud: RunningCloud) -> None:
    seen: list[tuple[str, str]] = []
    http = await cloud.authed("stina")
    async with http, http.stream("GET", "/api/v1/commands/stream", timeout=20) as stream:
        lines = stream.aiter_lines()
        assert await anext(lines) == "retry: 2000"  # subscribed
        command = await sent(cloud)
        await answer(cloud, command["id"], "done")
        async for line in lines:
            if line.startswith("data: "):
                change = json.loads(line.removeprefix("data: "))
                assert change["id"] == command["id"]
                seen.append((change["state"], change["device_id"]))
                if change["state"] == "done":
                    break
    assert seen == [("pending", "lock-1"), ("done", "lock-1")]


async def test_who_may_send_and_what_they_see_of_other_organisations(
    cloud: RunningCloud,
) -> None:
    for user in ("sara", "anna"):  # staff, operator
        response = await send(cloud, user=user)
        assert response.status_code == 403, response.text
    for user in ("tove", "stina", "adam"):  # technician, supervisor, admin
        assert (await send(cloud, user=user)).status_code == 202
    command = await sent(cloud)
    # Another organisation's supervisor: no such gateway, no such command.
    response = await send(cloud, user="ulla")
    assert response.status_code == 404 and response.json()["detail"] == f"No gateway {GATEWAY_ID}"
    async with await cloud.authed("ulla") as http:
        assert (await http.get(f"/api/v1/commands/{command['id']}")).status_code == 404
        assert (await http.get(COMMANDS)).status_code == 404
    async with await cloud.authed("anna") as http:  # operators read them
        listed = (await http.get(COMMANDS, params={"limit": 2})).json()
    assert [c["id"] for c in listed] == [command["id"], listed[1]["id"]]
    assert [c["issued_by"] for c in listed] == ["tove", "adam"]


async def test_unknown_unreported_and_unsupported_are_refused_clearly(
    cloud: RunningCloud,
) -> None:
    async with await cloud.authed("tove") as http:
        body = {"id": "lock-9", "gateway_id": GATEWAY_ID, "home_id": "home-12"}
        registered = await http.post("/api/v1/devices", json=body | {"type": "digital_lock"})
        assert registered.status_code == 201, registered.text
    cases = [
        ("ghost-1", "unlock", 404, f"No device ghost-1 on gateway {GATEWAY_ID}"),
        ("lock-9", "unlock", 409, f"Gateway {GATEWAY_ID} does not report device lock-9"),
        ("door-1", "unlock", 422, "Device door-1 does not support 'unlock'"),
        ("lock-2", "lock", 422, "Device lock-2 does not support 'lock' (it supports: unlock)"),
    ]
    for device, action, code, detail in cases:
        response = await send(cloud, device=device, action=action)
        assert response.status_code == code, response.text
        assert response.json()["detail"].startswith(detail)
    async with await cloud.authed("tove") as http:
        response = await http.post(
            "/api/v1/gateways/gw-nope/commands", json={"device_id": "lock-1", "action": "unlock"}
        )
        assert response.status_code == 404
        assert (await http.get(COMMANDS)).json() == []  # nothing was made


BAD_BODIES: list[Any] = [
    [],
    {},
    "unlock",
    None,
    {"device_id": "lock-1"},
    {"action": "unlock"},
    {"device_id": "lock-1", "action": "open"},
    {"device_id": "lock-1", "action": "UNLOCK"},
    {"device_id": "", "action": "unlock"},
    {"device_id": "x" * 129, "action": "unlock"},
    {"device_id": 7, "action": "unlock"},
    {"device_id": "lock-1", "action": "unlock", "ttl_s": 0},
    {"device_id": "lock-1", "action": "unlock", "ttl_s": 121},
    {"device_id": "lock-1", "action": "unlock", "ttl_s": -5},
    {"device_id": "lock-1", "action": "unlock", "ttl_s": 1.5},
    {"device_id": "lock-1", "action": "unlock", "ttl_s": 10**30},
    {"device_id": "lock-1", "action": "unlock", "issued_by": "someone-else"},
    {"device_id": "lock-1", "action": "unlock", "gateway_id": "gw-test-2"},
]
RAW_BODIES = [b"{", b'{"device_id": "lock-1", "action": "unlock", "ttl_s": NaN}', b"\xff"]


async def test_bad_bodies_and_paths_are_422_and_make_nothing(cloud: RunningCloud) -> None:
    async with await cloud.authed("tove") as http:
        for body in BAD_BODIES:
            response = await http.post(COMMANDS, json=body)
            assert response.status_code == 422, (body, response.text)
        for raw in RAW_BODIES:
            headers = {"Content-Type": "application/json"}
            response = await http.post(COMMANDS, content=raw, headers=headers)
            assert response.status_code == 422, (raw, response.text)
        good = {"device_id": "lock-1", "action": "unlock"}
        for path in ("/api/v1/gateways/bad%20id/commands", "/api/v1/gateways/a.b/commands"):
            assert (await http.post(path, json=good)).status_code == 422
        for command_id in ("short", "x" * 65, "bad%20id"):
            assert (await http.get(f"/api/v1/commands/{command_id}")).status_code == 422
        assert (await http.get(COMMANDS, params={"limit": 0})).status_code == 422
        assert (await http.get(COMMANDS)).json() == []


async def test_without_a_key_production_says_commands_are_off(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = CloudSettings(
        environment="production",
        secret_key="a-production-secret-of-our-own-0123456789",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
        **cloud_broker(mosquitto.port),
    )
    async with run_cloud(settings) as cloud:
        said = "commands are off: TRYGG_COMMAND_KEY_FILE is not set (docs/commands.md)"
        assert said in caplog.messages
        await publish_inventory(cloud, DEVICES)
        response = await send(cloud)
        assert response.status_code == 503
        assert response.json()["detail"] == "commands are off: TRYGG_COMMAND_KEY_FILE is not set"
        async with await cloud.authed("tove") as http:
            assert (await http.get(COMMANDS)).json() == []


async def test_a_command_that_cannot_be_sent_is_failed_not_sent_and_never_sent_later(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    mosquitto.stop()
    await wait_until(lambda: not cloud.ingest.connected.is_set())
    response = await send(cloud)
    assert response.status_code == 503 and "not_sent" in response.json()["detail"], response.text
    mosquitto.start()
    await wait_until(cloud.ingest.connected.is_set, 20)
    async with await cloud.authed("tove") as http:
        (command,) = (await http.get(COMMANDS)).json()
    assert (command["state"], command["reason"]) == ("failed", "not_sent")
    # A later result for it (a gateway cannot have one) changes nothing either.
    await answer(cloud, command["id"], "done")
    await wait_until(lambda: cloud.ingest.dropped["result_not_applicable"] == 1)
    assert (await command_of(cloud, command["id"]))["state"] == "failed"


# --- the command-key CLI and the gateway bundle ------------------------------------------


def _trygg(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    from typer.testing import CliRunner

    from trygg.cli import app

    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_command_key_new_writes_a_private_key_and_never_overwrites(tmp_path: Path) -> None:
    key = tmp_path / "command-key.pem"
    code, output = _trygg("cloud", "command-key", "new", f"--out={key}")
    assert code == 0, output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    public = tmp_path / "command-key.pem.pub"
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    before = key.read_bytes()
    code, output = _trygg("cloud", "command-key", "new", f"--out={key}")
    assert code == 2 and "exists already" in output
    assert key.read_bytes() == before
    code, output = _trygg("cloud", "command-key", "new", f"--out={tmp_path / 'no' / 'key.pem'}")
    assert code == 2 and "error:" in output


def test_development_makes_a_key_of_its_own_and_production_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    development = load_command_keys(CloudSettings(environment="development"))
    assert development.ephemeral and development.signing is not None
    assert development.disabled is None and len(development.trusted) == 1
    assert any("made for this process only" in m for m in caplog.messages)
    again = load_command_keys(CloudSettings(environment="development"))
    assert again.key_id != development.key_id  # one per process start, never reused
    production = load_command_keys(
        CloudSettings(environment="production", secret_key="a-production-secret-0123456789abc")
    )
    assert (production.signing, production.trusted) == (None, ())
    assert production.disabled == "commands are off: TRYGG_COMMAND_KEY_FILE is not set"


def test_command_key_public_writes_the_public_half(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    assert _trygg("cloud", "command-key", "new", f"--out={key}")[0] == 0
    out = tmp_path / "again.pub"
    code, output = _trygg("cloud", "command-key", "public", f"--key={key}", f"--out={out}")
    assert code == 0, output
    assert out.read_bytes() == Path(f"{key}.pub").read_bytes()
    code, output = _trygg("cloud", "command-key", "public", f"--key={out}", f"--out={out}.x")
    assert code == 2 and "not an unencrypted PKCS8 PEM key" in output


def test_command_key_export_writes_the_signing_key_and_the_trusted_ones(tmp_path: Path) -> None:
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    for key in (old, new):
        assert _trygg("cloud", "command-key", "new", f"--out={key}")[0] == 0
    out = tmp_path / "dispatch-keys.json"
    env = {
        "TRYGG_COMMAND_KEY_FILE": str(new),
        "TRYGG_COMMAND_TRUSTED_KEY_FILES": f"{old}.pub, {new}.pub",
        # Exporting public keys needs none of the service's other secrets.
        "TRYGG_ENVIRONMENT": "production",
        "TRYGG_SECRET_KEY": "",
    }
    code, output = _trygg("cloud", "command-key", "export", f"--out={out}", env=env)
    assert code == 0, output
    settings = CloudSettings(command_key_file=new)
    signing = settings.command_key_file
    assert signing is not None
    body = json.loads(out.read_text())
    ids = [k["key_id"] for k in body["keys"]]
    # The signing key first, then the old one; the signing key's own public file once.
    assert ids == [
        key_id_of(read_public_key(Path(f"{new}.pub"))),
        key_id_of(read_public_key(Path(f"{old}.pub"))),
    ]
    assert load_command_keys(settings).key_id == ids[0]
    assert set(body) == {"v", "keys"} and {k["algorithm"] for k in body["keys"]} == {"Ed25519"}

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    bad_envs = [
        ({"TRYGG_COMMAND_KEY_FILE": str(garbage)}, f"TRYGG_COMMAND_KEY_FILE {garbage}"),
        ({"TRYGG_COMMAND_KEY_FILE": str(tmp_path / "none.pem")}, "none.pem"),
        ({"TRYGG_COMMAND_KEY_FILE": f"{new}.pub"}, "not an unencrypted PKCS8 PEM key"),
        (
            {"TRYGG_COMMAND_KEY_FILE": str(new), "TRYGG_COMMAND_TRUSTED_KEY_FILES": str(new)},
            "TRYGG_COMMAND_TRUSTED_KEY_FILES",
        ),
        ({}, "no key to export"),
    ]
    for bad, said in bad_envs:
        code, output = _trygg("cloud", "command-key", "export", f"--out={out}.bad", env=bad)
        assert code == 2 and said in output, output
        assert not Path(f"{out}.bad").exists()


def test_the_gateway_bundle_carries_the_trusted_keys_and_its_commands_section(
    tmp_path: Path,
) -> None:
    key = tmp_path / "command-key.pem"
    assert _trygg("cloud", "command-key", "new", f"--out={key}")[0] == 0
    env = {
        "TRYGG_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
        "TRYGG_COMMAND_KEY_FILE": str(key),
    }
    bundle = tmp_path / "bundle"
    args = ["--broker-host=broker.example.org", f"--ca-cert={pki().tls.ca_cert}"]
    code, output = _trygg(
        "cloud", "add-gateway", "org-a", "gw-1", f"--bundle={bundle}", *args, env=env
    )
    assert code == 0, output
    exported = tmp_path / "exported.json"
    assert _trygg("cloud", "command-key", "export", f"--out={exported}", env=env)[0] == 0
    assert (bundle / "dispatch-keys.json").read_text() == exported.read_text()
    uplink = tomllib.loads((bundle / "gateway-uplink.toml").read_text())
    assert uplink["commands"] == {"trusted_keys_file": "/etc/trygg/dispatch-keys.json"}
    assert uplink["uplink"]["ca_file"] == "/etc/trygg/ca.crt"

    # Wherever the technician puts ca.crt, the keys go beside it.
    other = tmp_path / "other"
    code, output = _trygg(
        "cloud",
        "add-gateway",
        "org-a",
        "gw-1",
        f"--bundle={other}",
        *args,
        "--ca-file-on-gateway=/opt/trygg/tls/ca.crt",
        env=env,
    )
    assert code == 0, output
    uplink = tomllib.loads((other / "gateway-uplink.toml").read_text())
    assert uplink["commands"]["trusted_keys_file"] == "/opt/trygg/tls/dispatch-keys.json"

    # Without a command key: no keys, no section (the gateway refuses every command).
    plain = tmp_path / "plain"
    del env["TRYGG_COMMAND_KEY_FILE"]
    code, output = _trygg(
        "cloud", "add-gateway", "org-a", "gw-1", f"--bundle={plain}", *args, env=env
    )
    assert code == 0 and "no command key configured" in output
    assert not (plain / "dispatch-keys.json").exists()
    assert "commands" not in tomllib.loads((plain / "gateway-uplink.toml").read_text())
    # A key file named but unusable stops it, naming the file.
    env["TRYGG_COMMAND_KEY_FILE"] = str(tmp_path / "missing.pem")
    code, output = _trygg(
        "cloud", "add-gateway", "org-a", "gw-1", f"--bundle={tmp_path / 'x'}", *args, env=env
    )
    assert code == 2 and "missing.pem" in output


async def test_a_replicas_consoles_see_commands_made_and_answered_at_another(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Two replicas on one database and broker, one key: a command made at A, its result
    taken by whichever replica the broker gives it to, both seen on B's stream."""
    key = tmp_path / "command-key.pem"
    new_key_file(key)
    async with throwaway_database() as url:

        def settings(name: str) -> CloudSettings:
            broker = cloud_broker(mosquitto.port)
            return CloudSettings(
                database_url=url, command_key_file=key, mqtt_client_id=name, **broker
            )

        async with run_cloud(settings("replica-a")) as a, run_cloud(settings("replica-b")) as b:
            await publish_inventory(a, DEVICES)
            seen: list[str] = []
            http = await b.authed("stina")
            async with http, http.stream("GET", "/api/v1/commands/stream", timeout=20) as stream:
                lines = stream.aiter_lines()
                assert await anext(lines) == "retry: 2000"
                command = await sent(a)
                await answer(a, command["id"], "accepted")
                await wait_until(lambda: reaches(b, command["id"], "accepted"))
                await answer(a, command["id"], "done")
                async for line in lines:
                    if line.startswith("data: "):
                        seen.append(json.loads(line.removeprefix("data: "))["state"])
                        if seen[-1] == "done":
                            break
    assert seen == ["pending", "accepted", "done"]
