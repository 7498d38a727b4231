"""Web Push to staff phones: a staff member's subscription is stored; an assignment sends
each of their subscriptions an encrypted push, which a push service of the test's own on
loopback receives and decrypts (http-ece, aes128gcm) with the keys a browser would hold,
and whose VAPID signature it checks; a subscription the push service says has ended (410)
is removed, one that fails otherwise is kept and counted. The routes refuse garbage and
another staff member's subscriptions with a 4xx; a full queue drops the oldest, counted."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import http_ece
import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from typer.testing import CliRunner

from cloud import CloudSettings
from cloud.admin import admin_session, ensure_user
from cloud.push import PushService
from cloud.schemas import AlarmPublic
from cloud.security import Role
from cloud.vapid import VapidKeyError, load_vapid_key, new_vapid_key_file, read_vapid_key
from devices import Priority
from devices.wire import events_topic

from .conftest import GATEWAY_ID, RunningCloud, envelope, publish, publish_inventory, run_cloud
from .servers import Mosquitto, cloud_broker, free_port, throwaway_database, wait_until

pytestmark = pytest.mark.integration

SUBJECT = "mailto:drift@trygg.invalid"
TTL_S = 600
KEY = "/api/v1/my/push/key"
SUBSCRIPTIONS = "/api/v1/my/push/subscriptions"
SVEN = ("sven", "sven-pass-12")  # a second staff member of org-a


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """A browser's half of a subscription: its ECDH key pair and auth secret."""

    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def keys(self) -> dict[str, str]:
        point = self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"p256dh": b64url(point), "auth": b64url(self.auth)}

    def subscription(self, endpoint: str, label: str = "") -> dict[str, Any]:
        """What PushSubscription.toJSON() gives, and the page's label."""
        return {"endpoint": endpoint, "expirationTime": None, "keys": self.keys(), "label": label}

    def plaintext(self, body: bytes) -> bytes:
        plain: bytes = http_ece.decrypt(
            body, private_key=self.private, auth_secret=self.auth, version="aes128gcm"
        )
        return plain

    def decrypt(self, body: bytes) -> Any:
        return json.loads(self.plaintext(body))


@dataclass
class Received:
    name: str
    headers: dict[str, str]
    body: bytes


class PushEndpoint:
    """A push service of the test's own on loopback: POST /push/{name} answers with the
    status set for that name (201 otherwise) and keeps what it got."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.status: dict[str, int] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/push/{name}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of(self, name: str) -> list[Received]:
        return [r for r in self.received if r.name == name]

    async def _push(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.received.append(Received(name, dict(request.headers), await request.read()))
        return web.Response(status=self.status.get(name, 201))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PushEndpoint]:
        app = web.Application()
        app.router.add_post("/push/{name}", self._push)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield self
        finally:
            await runner.cleanup()


@contextlib.asynccontextmanager
async def push_cloud(
    mosquitto: Mosquitto, tmp_path: Path, database: str = "sqlite"
) -> AsyncIterator[RunningCloud]:
    """The dispatch service with a VAPID key file of its own, pushing to loopback, and a
    second staff member."""
    async with contextlib.AsyncExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
        else:
            url = await stack.enter_async_context(throwaway_database())
        key = tmp_path / "vapid.pem"
        new_vapid_key_file(key)
        settings = CloudSettings(
            database_url=url,
            vapid_key_file=key,
            vapid_subject=SUBJECT,
            push_allow_loopback=True,
            push_ttl_s=TTL_S,
            **cloud_broker(mosquitto.port),
        )
        running = await stack.enter_async_context(run_cloud(settings))
        async with admin_session(settings) as session:
            await ensure_user(session, "org-a", *SVEN, Role.STAFF)
            await session.commit()
        yield running


async def signed_in_as_sven(cloud: RunningCloud) -> httpx.AsyncClient:
    async with cloud.client() as http:
        res = await http.post("/api/v1/auth/token", data={"username": SVEN[0], "password": SVEN[1]})
    res.raise_for_status()
    headers = {"Authorization": f"Bearer {res.json()['access_token']}"}
    return httpx.AsyncClient(base_url=cloud.url, timeout=10, headers=headers)


async def raise_and_assign(
    cloud: RunningCloud,
    mosquitto: Mosquitto,
    n: int,
    *,
    kind: str = "alarm_button",
    priority: Priority = Priority.CRITICAL,
) -> dict[str, Any]:
    """A new alarm from the pendant, claimed, acknowledged and assigned to sara by anna:
    the assign route's answer."""
    sent = envelope("push", n, priority, kind, "pendant-1")
    await publish(mosquitto.port, events_topic(GATEWAY_ID), sent.model_dump_json())
    async with await cloud.authed("anna") as anna:
        found: list[dict[str, Any]] = []

        async def arrived() -> bool:
            found[:] = [a for a in (await anna.get("/api/v1/alarms")).json() if a["kind"] == kind]
            return bool(found)

        await wait_until(arrived)
        base = f"/api/v1/alarms/{found[0]['id']}"
        assert (await anna.post(f"{base}/acknowledge")).status_code == 200
        assigned = await anna.post(f"{base}/assign", json={"staff": "sara"})
        assert assigned.status_code == 200, assigned.text
        body: dict[str, Any] = assigned.json()
        return body


def counts(cloud: RunningCloud) -> dict[str, int]:
    return dict(cloud.app.state.services.push.counts)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_an_assignment_is_pushed_encrypted_and_signed_and_an_ended_subscription_goes(
    mosquitto: Mosquitto, tmp_path: Path, database: str
) -> None:
    phone, gone, broken, svens = Browser(), Browser(), Browser(), Browser()
    async with (
        PushEndpoint().running() as endpoint,
        push_cloud(mosquitto, tmp_path, database) as cloud,
        await cloud.authed("sara") as sara,
        await signed_in_as_sven(cloud) as sven,
    ):
        endpoint.status.update({"gone": 410, "broken": 500})
        public_key = (await sara.get(KEY)).json()["public_key"]
        made = {}
        for name, browser in (("phone", phone), ("gone", gone), ("broken", broken)):
            res = await sara.post(
                SUBSCRIPTIONS, json=browser.subscription(endpoint.url(name), name)
            )
            assert res.status_code == 201, res.text
            made[name] = res.json()
        assert made["phone"] == {
            "id": made["phone"]["id"],
            "endpoint": endpoint.url("phone"),
            "label": "phone",
            "created_at": made["phone"]["created_at"],
            "last_sent_at": None,
            "failures": 0,
        }
        res = await sven.post(SUBSCRIPTIONS, json=svens.subscription(endpoint.url("sven")))
        assert res.status_code == 201
        # The same browser subscribing again is the same subscription.
        again = await sara.post(SUBSCRIPTIONS, json=phone.subscription(endpoint.url("phone"), "P"))
        assert (again.status_code, again.json()["id"]) == (200, made["phone"]["id"])

        await publish_inventory(cloud, ["pendant-1"])
        alarm = await raise_and_assign(cloud, mosquitto, 1)
        await wait_until(lambda: len(endpoint.received) == 3)

        async def settled() -> bool:
            listed = (await sara.get(SUBSCRIPTIONS)).json()
            return [s["label"] for s in listed] == ["P", "broken"] and all(
                s["last_sent_at"] or s["failures"] for s in listed
            )

        await wait_until(settled)
        listed = (await sara.get(SUBSCRIPTIONS)).json()
        assert [(s["failures"], s["last_sent_at"] is None) for s in listed] == [
            (0, False),
            (1, True),
        ]
        assert counts(cloud) == {"queued": 1, "sent": 1, "removed": 1, "failed": 1}
        assert endpoint.of("sven") == [] and len((await sven.get(SUBSCRIPTIONS)).json()) == 1

        (push,) = endpoint.of("phone")
        assert phone.decrypt(push.body) == {
            "v": 1,
            "type": "assigned",
            "alarm_id": alarm["id"],
            "kind": "alarm_button",
            "priority": "critical",
            "test": False,
            "occurred_at": alarm["occurred_at"],
            "assigned_at": alarm["assigned_at"],
        }
        for never in (b"Ingrid", b"Storgatan", b"4711", b"home-", b"res-12", b"pendant"):
            assert never not in phone.plaintext(push.body)  # who and where: after sign-in only
        headers = {k.lower(): v for k, v in push.headers.items()}
        assert headers["content-encoding"] == "aes128gcm"
        assert (headers["ttl"], headers["urgency"]) == (str(TTL_S), "high")
        assert headers["topic"] == f"alarm-{alarm['id']}"
        scheme, _, params = headers["authorization"].partition(" ")
        vapid = dict(p.split("=", 1) for p in params.split(","))
        assert scheme == "vapid" and vapid["k"] == public_key
        point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(public_key))
        claims = jwt.decode(vapid["t"], point, algorithms=["ES256"], audience=endpoint.origin)
        assert claims["sub"] == SUBJECT
        assert time.time() < claims["exp"] <= time.time() + 24 * 3600
        # The ended one was told the same, to its own keys.
        assert gone.decrypt(endpoint.of("gone")[0].body)["alarm_id"] == alarm["id"]

        # A technical alarm is not urgent; a removed subscription gets nothing more.
        phone_id = made["phone"]["id"]
        battery = await raise_and_assign(
            cloud, mosquitto, 2, kind="battery_low", priority=Priority.NORMAL
        )
        await wait_until(lambda: len(endpoint.of("phone")) == 2 and len(endpoint.of("broken")) == 2)
        second = endpoint.of("phone")[1]
        assert phone.decrypt(second.body)["alarm_id"] == battery["id"]
        assert {k.lower(): v for k, v in second.headers.items()}["urgency"] == "normal"
        assert len(endpoint.of("gone")) == 1
        assert (await sara.delete(f"{SUBSCRIPTIONS}/{phone_id}")).status_code == 204
        assert [s["label"] for s in (await sara.get(SUBSCRIPTIONS)).json()] == ["broken"]
        async with await cloud.authed("adam") as adam:
            audit = (await adam.get("/api/v1/audit", params={"action": "push"})).json()
    done = sorted((e["actor"], e["action"], e["detail"].get("label")) for e in audit)
    assert done == [
        ("sara", "push.remove", "P"),
        ("sara", "push.subscribe", "P"),
        ("sara", "push.subscribe", "broken"),
        ("sara", "push.subscribe", "gone"),
        ("sara", "push.subscribe", "phone"),
        ("sven", "push.subscribe", ""),
    ]


GOOD = Browser()
OFF_CURVE = b64url(b"\x04" + b"\x01" * 64)
COMPRESSED = b64url(b"\x02" + b"\x01" * 32)


def body_with(**changes: Any) -> dict[str, Any]:
    body = GOOD.subscription("http://127.0.0.1:9/push/x")
    for key, value in changes.items():
        if key in ("p256dh", "auth"):
            body["keys"][key] = value
        elif value is ...:
            del body[key]
        else:
            body[key] = value
    return body


GARBAGE: list[tuple[bytes, str]] = [
    (b"{", "bad JSON"),
    (b"[]", "Input should be a valid dictionary"),
    (b"null", "Input should be a valid dictionary"),
    (json.dumps(body_with(endpoint=...)).encode(), "endpoint: Field required"),
    (json.dumps(body_with(keys=...)).encode(), "keys: Field required"),
    (json.dumps(body_with(endpoint=7)).encode(), "endpoint: Input should be a valid string"),
    (json.dumps(body_with(keys="k")).encode(), "keys: Input should be a valid dictionary"),
    (json.dumps(body_with(label=["a"])).encode(), "label: Input should be a valid string"),
    (json.dumps(body_with(label="a\nb")).encode(), "label: Value error, a label of print"),
    (json.dumps(body_with(label="x" * 101)).encode(), "label: String should have at most"),
    (json.dumps(body_with(expirationTime="soon")).encode(), "expirationTime: Input should"),
    (json.dumps(body_with(extra=1)).encode(), "extra: Extra inputs are not permitted"),
    (json.dumps(body_with(p256dh=123)).encode(), "keys.p256dh: Input should be a valid str"),
    (json.dumps(body_with(p256dh="not base64!")).encode(), "p256dh: URL-safe base64"),
    (json.dumps(body_with(p256dh=b64url(b"\x04" * 64))).encode(), "p256dh: 65 bytes expected"),
    (json.dumps(body_with(p256dh=COMPRESSED)).encode(), "p256dh: 65 bytes expected, not 33"),
    (json.dumps(body_with(p256dh=OFF_CURVE)).encode(), "p256dh: not a point on the P-256"),
    (json.dumps(body_with(auth=b64url(b"a" * 8))).encode(), "auth: 16 bytes expected, not 8"),
    (json.dumps(body_with(auth="")).encode(), "auth: URL-safe base64 expected"),
    (json.dumps(body_with(endpoint="x" * 1001)).encode(), "endpoint: String should have at"),
    (json.dumps(body_with(endpoint="ftp://127.0.0.1/p")).encode(), "endpoint: https only"),
    (json.dumps(body_with(endpoint="http://fcm.googleapis.com/p")).encode(), "https only"),
    (json.dumps(body_with(endpoint="https://10.0.0.1/p")).encode(), "10.0.0.1 is not a push"),
    (json.dumps(body_with(endpoint="https://evil.example/p")).encode(), "is not a push serv"),
    (
        json.dumps(body_with(endpoint="https://notfcm.googleapis.com.evil.example/")).encode(),
        "not a push",
    ),
    (json.dumps(body_with(endpoint="https://u:p@fcm.googleapis.com/p")).encode(), "no user"),
    (json.dumps(body_with(endpoint="https://fcm.googleapis.com/p q")).encode(), "printable"),
    (json.dumps(body_with(endpoint="https://fcm.googleapis.com/\u00e5")).encode(), "ASCII"),
    (json.dumps(body_with(endpoint="https://fcm.googleapis.com:x/p")).encode(), "not a URL"),
    (json.dumps(body_with(endpoint="https://[::1/p")).encode(), "not a URL"),
    (json.dumps(body_with(endpoint="not a url")).encode(), "endpoint:"),
]


async def test_garbage_subscriptions_are_refused_with_a_reason(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with push_cloud(mosquitto, tmp_path) as cloud, await cloud.authed("sara") as sara:
        for raw, reason in GARBAGE:
            headers = {"Content-Type": "application/json"}
            res = await sara.post(SUBSCRIPTIONS, content=raw, headers=headers)
            assert res.status_code == 422, (raw[:80], res.text)
            assert reason in res.json()["detail"], (raw[:80], res.text)
        assert (await sara.get(SUBSCRIPTIONS)).json() == []
        assert counts(cloud) == {}


async def test_only_staff_reach_their_own_subscriptions(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        push_cloud(mosquitto, tmp_path) as cloud,
        await cloud.authed("sara") as sara,
        await signed_in_as_sven(cloud) as sven,
    ):
        # A push service's endpoint is accepted in production's form too.
        fcm = GOOD.subscription("https://fcm.googleapis.com/fcm/send/abc:def", "Pixel")
        mine = await sara.post(SUBSCRIPTIONS, json=fcm)
        assert mine.status_code == 201, mine.text
        mine_id = mine.json()["id"]
        assert (await sven.get(SUBSCRIPTIONS)).json() == []
        for bad_id in ("abc", "0", "-1", str(2**31), "1.5"):
            assert (await sven.delete(f"{SUBSCRIPTIONS}/{bad_id}")).status_code == 422
        assert (await sven.delete(f"{SUBSCRIPTIONS}/{mine_id}")).status_code == 404
        assert (await sven.delete(f"{SUBSCRIPTIONS}/424242")).status_code == 404
        assert len((await sara.get(SUBSCRIPTIONS)).json()) == 1
        # The same phone signed in as sven is sven's phone now.
        moved = await sven.post(SUBSCRIPTIONS, json=fcm)
        assert (moved.status_code, moved.json()["id"]) == (200, mine_id)
        assert (await sara.get(SUBSCRIPTIONS)).json() == []
        for n in range(9):
            extra = GOOD.subscription(f"https://web.push.apple.com/s{n}")
            assert (await sven.post(SUBSCRIPTIONS, json=extra)).status_code == 201
        eleventh = GOOD.subscription("https://web.push.apple.com/too-many")
        res = await sven.post(SUBSCRIPTIONS, json=eleventh)
        assert res.status_code == 409 and "At most 10" in res.json()["detail"]
        for other in ("anna", "stina", "tove", "adam"):
            async with await cloud.authed(other) as http:
                for method, path in (("GET", KEY), ("GET", SUBSCRIPTIONS), ("POST", SUBSCRIPTIONS)):
                    res = await http.request(method, path, json=fcm)
                    assert res.status_code == 403, (other, method, path)
                res = await http.delete(f"{SUBSCRIPTIONS}/{mine_id}")
                assert res.status_code == 403
        async with cloud.client() as stranger:
            assert (await stranger.get(KEY)).status_code == 401
            assert (await stranger.post(SUBSCRIPTIONS, json=fcm)).status_code == 401


async def test_without_a_key_production_sends_no_pushes_and_says_so(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = CloudSettings(
        environment="production",
        secret_key="a-production-secret-of-our-own-0123456789",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
        **cloud_broker(mosquitto.port),
    )
    async with run_cloud(settings) as cloud, await cloud.authed("sara") as sara:
        said = "Web Push is off: TRYGG_VAPID_KEY_FILE is not set"
        assert f"{said} (docs/staff.md)" in caplog.messages
        assert ((await sara.get(KEY)).status_code, (await sara.get(KEY)).json()["detail"]) == (
            503,
            said,
        )
        fcm = GOOD.subscription("https://fcm.googleapis.com/fcm/send/abc")
        assert (await sara.post(SUBSCRIPTIONS, json=fcm)).status_code == 503
        await publish_inventory(cloud, ["pendant-1"])
        alarm = await raise_and_assign(cloud, mosquitto, 1)
        assert alarm["assigned_to"] == "sara" and counts(cloud) == {}


def production(**settings: Any) -> CloudSettings:
    return CloudSettings(environment="production", secret_key="s" * 40, **settings)


def test_settings_refuse_loopback_pushes_and_a_borrowed_contact_in_production(
    tmp_path: Path,
) -> None:
    key = tmp_path / "vapid.pem"
    new_vapid_key_file(key)
    with pytest.raises(ValidationError, match="TRYGG_PUSH_ALLOW_LOOPBACK is for tests"):
        production(push_allow_loopback=True)
    for borrowed in ("", "mailto:development@trygg.invalid"):
        with pytest.raises(ValidationError, match="TRYGG_VAPID_SUBJECT must be a contact of"):
            production(vapid_key_file=key, vapid_subject=borrowed)
    for bad in (
        "drift@kommun.se",
        "mailto:nobody",
        "https://kommun.se/contact",
        "http://kommun.se",
    ):
        with pytest.raises(ValidationError, match="vapid_subject"):
            production(vapid_key_file=key, vapid_subject=bad)
    for good in ("mailto:drift@kommun.se", "https://trygg.kommun.se"):
        assert production(vapid_key_file=key, vapid_subject=good).vapid_subject == good
    assert production().vapid_subject == ""  # no key, no pushes: no contact needed
    assert CloudSettings(environment="development").vapid_subject.startswith("mailto:")


def test_a_vapid_key_file_must_be_a_p256_private_key(tmp_path: Path) -> None:
    key = tmp_path / "vapid.pem"
    public = new_vapid_key_file(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (
        load_vapid_key(CloudSettings(environment="development", vapid_key_file=key)).public
        == public
    )
    assert len(unb64url(public)) == 65 and unb64url(public)[0] == 4
    with pytest.raises(VapidKeyError, match="exists already"):
        new_vapid_key_file(key)
    others = {
        "garbage.pem": b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
        "empty.pem": b"",
        "ed25519.pem": ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "p384.pem": ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "huge.pem": b"x" * 100_000,
    }
    expected = {
        "garbage.pem": "not an unencrypted PEM private key",
        "empty.pem": "not an unencrypted PEM private key",
        "ed25519.pem": "not an EC P-256",
        "p384.pem": "not an EC P-256",
        "huge.pem": "too large",
    }
    for name, data in others.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(VapidKeyError, match=expected[name]):
            read_vapid_key(tmp_path / name)
    with pytest.raises(VapidKeyError, match="No such file"):
        read_vapid_key(tmp_path / "missing.pem")
    development = load_vapid_key(CloudSettings(environment="development"))
    assert development.ephemeral and development.public is not None
    off = load_vapid_key(production())
    assert (off.private, off.disabled) == (
        None,
        "Web Push is off: TRYGG_VAPID_KEY_FILE is not set",
    )


def test_push_key_cli_makes_a_key_and_never_overwrites(tmp_path: Path) -> None:
    from trygg.cli import app

    key = tmp_path / "vapid.pem"
    result = CliRunner().invoke(app, ["cloud", "push-key", f"--out={key}"])
    assert result.exit_code == 0, result.output
    assert read_vapid_key(key) is not None and "public key" in result.output
    before = key.read_bytes()
    result = CliRunner().invoke(app, ["cloud", "push-key", f"--out={key}"])
    assert result.exit_code == 2 and "exists already" in result.output
    assert key.read_bytes() == before


def alarm_numbered(n: int, priority: str = "critical") -> AlarmPublic:
    at = datetime(2026, 12, 4, 2, n, tzinfo=UTC)
    return AlarmPublic.model_validate(
        {
            "id": n,
            "kind": "alarm_button",
            "priority": priority,
            "state": "assigned",
            "gateway_id": GATEWAY_ID,
            "device_id": "pendant-1",
            "device_type": "alarm_button",
            "home_id": "home-12",
            "resident_id": "res-12",
            "event_count": 1,
            "occurred_at": at,
            "received_at": at,
            "updated_at": at,
            "assigned_to": "sara",
            "assigned_at": at,
            "escalation_level": 0,
        }
        | dict.fromkeys(
            [
                "restored_at",
                "acknowledged_by",
                "acknowledged_at",
                "claimed_by",
                "claimed_at",
                "on_site_at",
                "resolved_by",
                "resolved_at",
                "outcome",
                "resolution_note",
                "last_event_at",
                "latitude",
                "longitude",
                "escalated_at",
                "escalation",
            ]
        )
    )


async def test_a_full_queue_drops_the_oldest_push_and_counts_it(tmp_path: Path) -> None:
    """Nothing sends (the service is not started): the queue holds two, the oldest go."""
    settings = CloudSettings(environment="development", push_queue_size=2)
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    try:
        push = PushService(settings, async_sessionmaker(engine), load_vapid_key(settings))
        for n in range(1, 6):
            push.assigned("org-a", "sara", alarm_numbered(n))
        assert (dict(push.counts), push.waiting) == ({"queued": 5, "dropped": 3}, 2)
    finally:
        await engine.dispose()
