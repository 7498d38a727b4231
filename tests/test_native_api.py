"""The native device API (docs/native-api.md): its messages, its JSON Schema, and both
ways in on a real gateway: HTTPS with a device's own credential, and MQTT on a real
mosquitto where each device may publish only under its own id."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from cloud.brokerconf import Identity
from cloud.credentials import mosquitto_hash
from devices import CodecError, Signal
from devices.codecs.native import decode_native, json_schema
from gateway import Gateway, GatewayConfig
from gateway.counters import DropReason
from gateway.homebroker import home_broker_acl
from trygg.cli import app

from .conftest import TEST_DEVICES, RunningCloud, gateway_config
from .servers import Mosquitto, broker_identities, free_port, pki, tls_context, wait_until

DOCS = Path(__file__).resolve().parents[1] / "docs"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
WATCH_TOKEN = "watch-credential-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
OTHER_TOKEN = "other-credential-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"


def native_device(device_id: str, token: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": device_id,
        "transport": "native",
        "type": "gps_pendant",
        "home": "home-12",
        "resident": "res-7",
        "credential_sha256": hashlib.sha256(token.encode()).hexdigest(),
        **fields,
    }


# -- the messages ------------------------------------------------------------------------
def test_an_sos_carries_its_fix_where_how_well_and_how_old() -> None:
    body = {
        "id": "m-1",
        "alarm": "sos",
        "position": {
            "latitude": 59.33,
            "longitude": 18.06,
            "hdop": 1.2,
            "at": (NOW - timedelta(seconds=42)).isoformat(),
        },
    }
    message = decode_native("alarm", json.dumps(body).encode(), NOW)
    (state,) = message.decoded.signals
    assert state.signal is Signal.BUTTON_PRESS and state.active and state.momentary
    assert state.detail["latitude"] == 59.33 and state.detail["longitude"] == 18.06
    assert state.detail["accuracy_m"] == 6.0  # HDOP 1.2 times a 5 m range error
    assert state.detail["fix_age_s"] == 42.0
    assert message.message_id == "m-1"


def test_each_kind_decodes_to_what_the_pipeline_takes() -> None:
    reading = decode_native("reading", b'{"readings": {"temperature_c": 21.5}}', NOW)
    assert reading.decoded.readings == (("temperature_c", 21.5),)
    position = decode_native(
        "position", b'{"latitude": 59.3, "longitude": 18.1, "accuracy_m": 8, "satellites": 7}', NOW
    )
    assert dict(position.decoded.readings) == {
        "latitude": 59.3,
        "longitude": 18.1,
        "accuracy_m": 8.0,
        "satellites": 7.0,
    }
    beat = decode_native("heartbeat", b'{"battery_pct": 64, "firmware": "w-2.1"}', NOW)
    assert beat.decoded.readings == (("battery_pct", 64.0),) and beat.decoded.firmware == "w-2.1"
    smoke = decode_native("alarm", b'{"id": "s", "alarm": "smoke", "test": true}', NOW)
    (state,) = smoke.decoded.signals
    assert state.signal is Signal.SMOKE and not state.momentary and state.detail["test"] is True


@pytest.mark.parametrize(
    ("kind", "payload", "says"),
    [
        ("alarm", b'{"alarm": "sos"}', "id"),
        ("alarm", b'{"id": "x", "alarm": "sos", "active": false}', "occurrence"),
        ("alarm", b'{"id": "x", "alarm": "panic"}', "alarm"),
        ("alarm", b'{"id": "x", "alarm": "sos", "volume": 3}', "volume"),
        ("reading", b'{"readings": {}}', "readings"),
        ("reading", b'{"readings": {"Temp C": 1}}', "readings"),
        ("reading", b'{"readings": {"t": NaN}}', "NaN"),
        ("position", b'{"latitude": 91, "longitude": 0}', "latitude"),
        ("position", b'{"latitude": 1e400, "longitude": 0}', "latitude"),
        ("heartbeat", b"[1, 2]", "JSON object"),
        ("heartbeat", b"\xff\xfe{", "JSON"),
        ("status", b"{}", "kind"),
        ("alarm", b'{"id": "x", "alarm": "sos", "at": "2026-12-04T12:00:00"}', "time zone"),
        ("heartbeat", b"{" * 5000, "JSON"),
        ("reading", b'{"readings": {"t": 1}, "pad": "' + b"x" * 9000 + b'"}', "bytes"),
    ],
)
def test_bad_messages_are_refused_with_a_reason(kind: str, payload: bytes, says: str) -> None:
    with pytest.raises(CodecError, match=says):
        decode_native(kind, payload, NOW)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["alarm", "reading", "position", "heartbeat"]), st.binary(max_size=300))
def test_garbage_is_a_codec_error_never_a_crash(kind: str, payload: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_native(kind, payload, NOW)


def test_the_schema_in_docs_is_the_one_the_gateway_reads_by() -> None:
    written = json.loads((DOCS / "native-api.schema.json").read_text())
    assert written == json_schema(), "regenerate: python -m devices.codecs.native"
    jsonschema.Draft202012Validator.check_schema(written)
    validator = jsonschema.Draft202012Validator(written)
    good = [
        {"id": "a-1", "alarm": "fall", "position": {"latitude": 59.3, "longitude": 18.0}},
        {"readings": {"temperature_c": 20.5, "battery_pct": 90}},
        {"latitude": 59.3, "longitude": 18.0, "accuracy_m": 12, "fix": "network"},
        {"battery_pct": 70},
    ]
    for body in good:
        validator.validate(body)
    for body in ({"alarm": "sos"}, {"id": "x", "alarm": "sos", "colour": 1}, {"readings": {}}):
        assert not validator.is_valid(body), body
    # What the schema takes, the gateway takes, message by message.
    for kind, body in zip(("alarm", "reading", "position", "heartbeat"), good, strict=True):
        decode_native(kind, json.dumps(body).encode(), NOW)


# -- the configuration, the broker's ACL, the credential ----------------------------------
def test_a_native_device_needs_a_credential_and_is_no_lock(tmp_path: Path) -> None:
    base: dict[str, Any] = {"gateway": {"id": "gw-1"}, "store": {"path": str(tmp_path / "s")}}
    config = GatewayConfig.model_validate({**base, "devices": [native_device("w", "t")]})
    assert config.devices[0].address == "w"
    for bad in (
        native_device("w", "t", credential_sha256="short"),
        native_device("w", "t", type="digital_lock"),
    ):
        with pytest.raises(ValidationError):
            GatewayConfig.model_validate({**base, "devices": [bad]})
    with pytest.raises(ValidationError, match="together"):
        cert = str(pki().tls.server_cert)
        GatewayConfig.model_validate({**base, "api": {"tls_cert_file": cert}})


def test_the_home_broker_acl_lets_each_native_device_publish_only_as_itself(
    tmp_path: Path,
) -> None:
    config = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1"},
            "zigbee2mqtt": {"username": "trygg-gateway", "password": "p"},
            "devices": [native_device("watch-1", "t"), native_device("watch-2", "u")],
        }
    )
    acl = home_broker_acl(config)
    assert "user watch-1\ntopic write trygg/v1/dev/watch-1/+\n" in acl
    assert "user watch-2\ntopic write trygg/v1/dev/watch-2/+\n" in acl
    gateway_part = acl.split("user trygg-gateway\n")[1].split("\n\n")[0]
    assert "topic read trygg/v1/dev/+/+" in gateway_part
    assert "write trygg/v1/dev" not in gateway_part


def test_the_credential_command_gives_a_token_and_only_its_hash_for_the_configuration() -> None:
    result = CliRunner().invoke(app, ["gateway", "devices", "credential", "watch-1"])
    assert result.exit_code == 0, result.output
    token = result.output.split("forget it): ")[1].split()[0]
    digest = result.output.split('credential_sha256 = "')[1].split('"')[0]
    assert len(token) >= 40 and hashlib.sha256(token.encode()).hexdigest() == digest
    again = CliRunner().invoke(app, ["gateway", "devices", "credential", "watch-1"])
    assert token not in again.output


# -- HTTPS on a real gateway ----------------------------------------------------------------
@pytest.fixture
async def https_gateway(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Gateway]:
    tls = pki().tls
    extra: dict[str, object] = {
        "devices": [
            *TEST_DEVICES,
            native_device("watch-1", WATCH_TOKEN, zones=[_zone()]),
            native_device("watch-2", OTHER_TOKEN),
        ],
        "api": {
            "port": free_port(),
            "tls_cert_file": str(tls.server_cert),
            "tls_key_file": str(tls.server_key),
        },
        "native": {"mqtt": False},
    }
    config = gateway_config(mosquitto, tmp_path / "gateway.db", extra=extra)
    async with Gateway(config) as gw:
        await asyncio.wait_for(gw.uplink.connected.wait(), 10)
        yield gw


def _zone() -> dict[str, Any]:
    return {"name": "home", "circle": {"latitude": 59.33, "longitude": 18.06, "radius_m": 300}}


def _client(gw: Gateway, token: str | None = WATCH_TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{gw.api_port}", verify=tls_context(), headers=headers
    )


async def _events(gw: Gateway) -> list[Any]:
    return [p.event for p in await gw.store.pending(100)]


async def test_an_sos_over_https_is_kept_once_with_the_watchs_last_fix(
    https_gateway: Gateway,
) -> None:
    gw = https_gateway
    async with _client(gw) as client:
        fix = {"latitude": 59.3301, "longitude": 18.0601, "hdop": 0.9, "satellites": 9}
        answer = await client.post("/dev/v1/watch-1/position", json={"id": "p-1", **fix})
        assert answer.status_code == 202, answer.text
        sos = {"id": "sos-1", "alarm": "sos"}
        first = await client.post("/dev/v1/watch-1/alarm", json=sos)
        assert first.status_code == 202 and first.json() == {"accepted": "alarm"}
        # The answer was lost, say: the watch sends it again. The same message, once.
        again = await client.post("/dev/v1/watch-1/alarm", json=sos)
        assert again.status_code == 202
        beat = await client.post("/dev/v1/watch-1/heartbeat", json={"battery_pct": 55})
        assert beat.status_code == 202
        # The same message with its keys in another order is the same message; the same
        # id on another message (the watch's counter started over) is a new one.
        reordered = await client.post(
            "/dev/v1/watch-1/alarm", content=b'{"alarm": "sos", "id": "sos-1"}'
        )
        assert reordered.status_code == 202
    alarms = [e for e in await _events(gw) if e.kind == "alarm_button"]
    assert len(alarms) == 1
    async with _client(gw) as client:
        fall = await client.post("/dev/v1/watch-1/alarm", json={"id": "sos-1", "alarm": "fall"})
        assert fall.status_code == 202
    assert [e.kind for e in await _events(gw)].count("fall") == 1
    detail = alarms[0].detail
    assert (detail["latitude"], detail["longitude"]) == (59.3301, 18.0601)
    assert detail["accuracy_m"] == 4.5 and detail["fix_age_s"] >= 0
    assert alarms[0].resident_id == "res-7" and alarms[0].device_type == "gps_pendant"
    watch = gw.registry.get("watch-1")
    assert watch is not None and watch.status.battery_pct == 55
    assert gw.counters.dropped[DropReason.DUPLICATE] == 2


async def test_a_resend_while_the_first_is_being_stored_is_told_to_come_again() -> None:
    """Two copies of one SOS at once (the watch gave up waiting and sent it again): the
    second is not answered "taken" before the first is kept; it is told to send again."""
    from gateway.counters import InputCounters
    from gateway.registry import Registry
    from gateway.transports.native import NativeInput

    config = GatewayConfig.model_validate(
        {"gateway": {"id": "gw-1"}, "devices": [native_device("watch-1", WATCH_TOKEN)]}
    )
    device = Registry(config.devices).get("watch-1")
    assert device is not None
    release, entered = asyncio.Event(), asyncio.Event()

    class SlowStore:  # the pipeline's intake, as seen by a transport, with a slow disk
        counters = InputCounters()

        def sender_resends(self) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

        async def accept(self, *_args: object, **_kwargs: object) -> None:
            entered.set()
            await release.wait()

    native = NativeInput(SlowStore())  # type: ignore[arg-type]
    sos = json.dumps({"id": "s-1", "alarm": "sos"}).encode()
    first = asyncio.create_task(native.take(device, "alarm", sos, "https:w", resent=False))
    await entered.wait()
    again = await native.take(device, "alarm", sos, "https:w", resent=False)
    assert again is not None and again.status == 503 and "send it again" in again.detail
    release.set()
    assert await first is None
    entered.clear()
    release.set()
    assert await native.take(device, "alarm", sos, "https:w", resent=False) is None


async def test_https_refuses_the_wrong_credential_and_says_no_more_than_it_must(
    https_gateway: Gateway,
) -> None:
    gw = https_gateway
    sos = {"id": "sos-x", "alarm": "sos"}
    answers, reasons = [], []
    for token, device in (
        (OTHER_TOKEN, "watch-1"),  # another device's credential
        (None, "watch-1"),
        (WATCH_TOKEN, "nobody"),
        (WATCH_TOKEN, "smoke-1"),  # a Zigbee device: no credential exists for it
    ):
        async with _client(gw, token) as client:
            answers.append(await client.post(f"/dev/v1/{device}/alarm", json=sos))
        reasons.append(gw.counters.last_detail[DropReason.UNAUTHENTICATED, f"https:{device}/alarm"])
    assert [a.status_code for a in answers] == [401] * 4
    assert len({a.text for a in answers}) == 1  # which devices exist is not told
    assert gw.counters.dropped[DropReason.UNAUTHENTICATED] == 4
    # The gateway's own log says why.
    assert reasons == [
        "wrong credential",
        "no bearer credential",
        "no such device",
        "a zigbee2mqtt device, not a native one",
    ]
    assert await _events(gw) == []


async def test_https_garbage_gets_a_clear_error_and_a_counted_drop(
    https_gateway: Gateway,
) -> None:
    gw = https_gateway
    async with _client(gw) as client:
        cases = [
            ("alarm", b"not json", 400),
            ("alarm", b'{"id": "x", "alarm": "sos", "active": false}', 422),
            ("position", b'{"latitude": "north"}', 422),
            ("reading", b"{" + b" " * 9000 + b"}", 413),
            ("teleport", b"{}", 404),
        ]
        for kind, body, status in cases:
            answer = await client.post(f"/dev/v1/watch-1/{kind}", content=body)
            assert answer.status_code == status, (kind, answer.text)
            assert answer.json()["detail"]
        ok = await client.post("/dev/v1/watch-1/alarm", json={"id": "f-1", "alarm": "fall"})
        assert ok.status_code == 202
    assert [e.kind for e in await _events(gw)] == ["fall"]
    dropped = gw.counters.dropped
    assert dropped[DropReason.MALFORMED] == 1 and dropped[DropReason.UNEXPECTED_VALUE] == 2
    assert dropped[DropReason.OVERSIZED] == 1 and dropped[DropReason.UNKNOWN_TOPIC] == 1


async def test_a_poor_fix_neither_moves_the_watch_nor_leaves_the_zone(
    https_gateway: Gateway,
) -> None:
    gw = https_gateway
    far = {"latitude": 59.40, "longitude": 18.20}
    async with _client(gw) as client:
        poor = await client.post("/dev/v1/watch-1/position", json={**far, "accuracy_m": 900})
        few = await client.post("/dev/v1/watch-1/position", json={**far, "satellites": 2})
        assert poor.status_code == few.status_code == 202
        assert [e.kind for e in await _events(gw)] == []
        good = await client.post("/dev/v1/watch-1/position", json={**far, "accuracy_m": 10})
        assert good.status_code == 202
    (left,) = await _events(gw)
    assert left.kind == "geofence_exit"


def test_plain_http_from_another_host_is_refused_before_the_credential() -> None:
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry

    from gateway.api import create_api
    from gateway.counters import InputCounters

    class _Stub:  # the refusal comes before the route needs more of a gateway
        metrics_registry = CollectorRegistry()
        counters = InputCounters()

    stub = _Stub()
    client = TestClient(create_api(stub))  # type: ignore[arg-type]
    answer = client.post("/dev/v1/watch-1/alarm", json={"id": "a", "alarm": "sos"})
    assert answer.status_code == 403 and "HTTPS" in answer.json()["detail"]
    assert stub.counters.dropped[DropReason.UNAUTHENTICATED] == 1


# -- MQTT on a real mosquitto with per-device logins ---------------------------------------
@pytest.fixture
async def native_broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    natives = [
        Identity(d, mosquitto_hash(t), (f"topic write trygg/v1/dev/{d}/+",))
        for d, t in (("watch-1", WATCH_TOKEN), ("watch-2", OTHER_TOKEN))
    ]
    broker = Mosquitto(tmp_path, identities=[*broker_identities(), *natives])
    broker.start()
    yield broker
    broker.stop()


def _watch(broker: Mosquitto, device_id: str, token: str) -> Any:
    import aiomqtt

    return aiomqtt.Client(
        "127.0.0.1", broker.port, username=device_id, password=token, tls_context=tls_context()
    )


async def test_over_mqtt_a_device_speaks_only_for_itself(
    native_broker: Mosquitto, tmp_path: Path
) -> None:
    extra: dict[str, object] = {
        "devices": [
            *TEST_DEVICES,
            native_device("watch-1", WATCH_TOKEN),
            native_device("watch-2", OTHER_TOKEN),
        ]
    }
    config = gateway_config(native_broker, tmp_path / "gateway.db", extra=extra)
    async with Gateway(config) as gw:
        await asyncio.wait_for(gw.link("native").ready.wait(), 10)
        async with _watch(native_broker, "watch-2", OTHER_TOKEN) as watch2:
            # watch-2 tries to raise an alarm as watch-1: the broker drops it (its ACL),
            # and its own alarm right behind it arrives (one publisher: in order).
            forged = {"id": "forged", "alarm": "fall"}
            await watch2.publish("trygg/v1/dev/watch-1/alarm", json.dumps(forged), qos=1)
            own = {"id": "own-1", "alarm": "sos", "position": {"latitude": 59.3, "longitude": 18}}
            await watch2.publish("trygg/v1/dev/watch-2/alarm", json.dumps(own), qos=1)
            await watch2.publish("trygg/v1/dev/watch-2/alarm", json.dumps(own), qos=1)

            async def stored() -> bool:
                return bool(await _events(gw))

            await wait_until(stored, limit_s=30)
            await watch2.publish("trygg/v1/dev/watch-2/heartbeat", b"garbage", qos=1)
            await wait_until(lambda: gw.counters.dropped[DropReason.MALFORMED] == 1, limit_s=30)
        events = await _events(gw)
        assert [(e.kind, e.device_id) for e in events] == [("alarm_button", "watch-2")]
        assert events[0].detail["latitude"] == 59.3
        assert gw.counters.dropped[DropReason.DUPLICATE] == 1
        # Nobody else logs in as a watch.
        import aiomqtt

        with pytest.raises(aiomqtt.MqttError):
            async with _watch(native_broker, "watch-1", OTHER_TOKEN):
                pass


# -- straight to the dispatch service ------------------------------------------------------
async def test_a_watch_with_no_gateway_raises_its_sos_in_the_centres_queue(
    sqlite_cloud: RunningCloud,
) -> None:
    async with await sqlite_cloud.authed("tove") as tech:
        registered = await tech.post(
            "/api/v1/direct-devices",
            json={"id": "lte-watch-1", "type": "gps_pendant", "home_id": "home-12"},
        )
        assert registered.status_code == 201, registered.text
        given = registered.json()
        token = given["credential"]
        assert given["post_to"] == "/api/v1/dev/lte-watch-1"
        # A lock is not a direct device: commands need a gateway.
        lock = {"id": "lte-lock", "type": "digital_lock", "home_id": "home-12"}
        assert (await tech.post("/api/v1/direct-devices", json=lock)).status_code == 422
        for wrong in ({"home_id": "nowhere"}, {"resident_id": "res-99"}):
            body = {"id": "lte-2", "type": "gps_pendant", "home_id": "home-12", **wrong}
            res = await tech.post("/api/v1/direct-devices", json=body)
            assert res.status_code == 422 and ("no home" in res.text or "no resident" in res.text)
    sos = {
        "id": "w-a1",
        "alarm": "sos",
        "position": {"latitude": 57.705, "longitude": 11.98, "accuracy_m": 12},
    }
    url = "/api/v1/dev/lte-watch-1"
    async with sqlite_cloud.client() as device:
        bearer = {"Authorization": f"Bearer {token}"}
        first = await device.post(f"{url}/alarm", json=sos, headers=bearer)
        assert first.status_code == 202, first.text
        again = await device.post(f"{url}/alarm", json=sos, headers=bearer)
        assert again.status_code == 202
        beat = await device.post(f"{url}/heartbeat", json={"battery_pct": 40}, headers=bearer)
        assert beat.status_code == 202
        wrong = {"Authorization": "Bearer " + "x" * 43}
        refused = [
            await device.post(f"{url}/alarm", json=sos, headers=wrong),
            await device.post(f"{url}/alarm", json=sos),
            await device.post("/api/v1/dev/other/alarm", json=sos, headers=bearer),
        ]
        assert [r.status_code for r in refused] == [401, 401, 401]
        assert len({r.text for r in refused}) == 1
        bad = await device.post(f"{url}/alarm", content=b'{"id": "x"}', headers=bearer)
        assert bad.status_code == 422 and "alarm" in bad.json()["detail"]
        smoke = await device.post(
            f"{url}/alarm", json={"id": "w-s", "alarm": "smoke"}, headers=bearer
        )
        assert smoke.status_code == 422 and "raises no smoke" in smoke.json()["detail"]
        garbage = await device.post(f"{url}/position", content=b"\x00\xff", headers=bearer)
        assert garbage.status_code in (400, 422)
    async with await sqlite_cloud.authed("anna") as operator:
        alarms = [a for a in (await operator.get("/api/v1/alarms")).json()]
    ours = [a for a in alarms if a["device_id"] == "lte-watch-1"]
    assert len(ours) == 1  # the resend is the same alarm
    (alarm,) = ours
    assert alarm["kind"] == "alarm_button" and alarm["priority"] == "critical"
    assert (alarm["latitude"], alarm["longitude"]) == (57.705, 11.98)
    assert alarm["gateway_id"] == "direct-org-a"
    # A new credential: the old one stops working.
    async with await sqlite_cloud.authed("tove") as tech:
        again_registered = await tech.post(
            "/api/v1/direct-devices",
            json={"id": "lte-watch-1", "type": "gps_pendant", "home_id": "home-12"},
        )
        new_token = again_registered.json()["credential"]
    async with sqlite_cloud.client() as device:
        old = await device.post(f"{url}/heartbeat", json={}, headers=bearer)
        new = await device.post(
            f"{url}/heartbeat", json={}, headers={"Authorization": f"Bearer {new_token}"}
        )
        assert (old.status_code, new.status_code) == (401, 202)


async def test_a_direct_device_gone_silent_is_one_technical_alarm_and_its_return_resolves_it(
    cloud: RunningCloud,
) -> None:
    """No gateway watches a watch on LTE: the dispatch service does, by its type's
    check-in interval (a GPS pendant's 15 minutes), and two replicas raise one alarm."""
    from .test_gateway_supervision import Clock, supervisor

    async with await cloud.authed("tove") as tech:
        body = {"id": "lte-watch-9", "type": "gps_pendant", "home_id": "home-12"}
        token = (await tech.post("/api/v1/direct-devices", json=body)).json()["credential"]
    url, bearer = "/api/v1/dev/lte-watch-9/heartbeat", {"Authorization": f"Bearer {token}"}
    async with cloud.client() as device:
        assert (await device.post(url, json={}, headers=bearer)).status_code == 202
    clock = Clock()
    sup, replica = supervisor(cloud, clock), supervisor(cloud, clock)
    clock.advance(14 * 60)
    await sup.sweep()
    assert await _silent(cloud) == []
    clock.advance(2 * 60)
    await asyncio.gather(sup.sweep(), replica.sweep())
    await sup.sweep()
    (alarm,) = await _silent(cloud)
    assert (alarm["state"], alarm["priority"], alarm["device_id"]) == (
        "new",
        "normal",
        "lte-watch-9",
    )
    async with cloud.client() as device:
        assert (await device.post(url, json={}, headers=bearer)).status_code == 202
    (alarm,) = await _silent(cloud)
    assert alarm["state"] == "resolved" and alarm["outcome"] == "restored"


async def _silent(cloud: RunningCloud) -> list[dict[str, Any]]:
    async with await cloud.authed("anna") as http:
        found = (await http.get("/api/v1/alarms")).json()
    return [a for a in found if a["kind"] == "device_silent"]
