"""Every route refuses the unauthenticated and the wrong role, and never crosses organisations."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx
import jwt
import pytest

from cloud.security import Role, TokenClaims, issue_token
from devices.wire import events_topic

from .conftest import GATEWAY_ID, USERS, RunningCloud, envelope, publish, publish_inventory
from .servers import Mosquitto, wait_until

pytestmark = pytest.mark.integration

# What a browser's PushSubscription.toJSON() gives (tests/test_web_push.py).
PUSH_SUBSCRIPTION: dict[str, object] = {
    "endpoint": "https://fcm.googleapis.com/fcm/send/api-test",
    "keys": {
        # The P-256 point 7 * G.
        "p256dh": "BI5TO2-gv3tGJbswZnwB-2B--fi4qA_vWzAGKHAxh7Kjc-"
        "sdveAzGDZtBp-DpvWQAFPHNjPLBBshxV4ahsH0ALQ",
        "auth": "AAECAwQFBgcICQoLDA0ODw",
    },
}
# (method, path, roles allowed, body); {id} is an alarm of org-a. Every route of the API is
# here (test_the_route_table_covers_the_whole_api checks), so each is checked for all roles.
HANDLERS = {"operator", "supervisor"}
STAFF = {"staff"}
VISIT: dict[str, object] = {
    "home_id": "home-12",
    "staff": "sara",
    "starts_at": "2026-12-03T08:00:00+01:00",
    "ends_at": "2026-12-03T08:30:00+01:00",
}
ROUTES: list[tuple[str, str, set[str], dict[str, object] | None]] = [
    ("GET", "/api/v1/alarms", {"operator", "supervisor", "admin"}, None),
    ("GET", "/api/v1/alarms/stream", {"operator", "supervisor", "admin"}, None),
    ("GET", "/api/v1/alarms/{id}", {"operator", "supervisor", "admin", "staff"}, None),
    ("POST", "/api/v1/alarms/{id}/claim", HANDLERS, None),
    ("POST", "/api/v1/alarms/{id}/release", HANDLERS, None),
    ("POST", "/api/v1/alarms/{id}/acknowledge", HANDLERS, None),
    ("POST", "/api/v1/alarms/{id}/assign", HANDLERS, {"staff": "sara"}),
    ("POST", "/api/v1/alarms/{id}/on-site", {"operator", "supervisor", "staff"}, None),
    ("POST", "/api/v1/alarms/{id}/resolve", HANDLERS, {"outcome": "help_given"}),
    ("GET", "/api/v1/statistics", {"supervisor", "admin"}, None),
    ("GET", "/api/v1/statistics/today", {"supervisor", "admin"}, None),
    ("GET", "/api/v1/me", {"operator", "supervisor", "admin", "staff", "technician"}, None),
    ("GET", "/api/v1/teams", {"admin", "supervisor", "operator"}, None),
    ("POST", "/api/v1/teams", {"admin"}, {"name": "Night patrol"}),
    ("GET", "/api/v1/users", {"admin", "supervisor", "operator"}, None),
    (
        "POST",
        "/api/v1/users",
        {"admin"},
        {"username": "nina", "password": "x" * 12, "role": "staff"},
    ),
    ("GET", "/api/v1/homes", {"admin", "supervisor", "operator", "technician"}, None),
    ("POST", "/api/v1/homes", {"admin"}, {"id": "home-new", "address": "Storgatan 1"}),
    ("PUT", "/api/v1/homes/{home_id}", {"admin"}, {"address": "Storgatan 2"}),
    ("GET", "/api/v1/residents", {"admin", "supervisor", "operator"}, None),
    ("GET", "/api/v1/residents/{resident_id}", {"admin", "supervisor", "operator"}, None),
    ("POST", "/api/v1/residents", {"admin"}, {"id": "r-new", "home_id": "home-12", "name": "E"}),
    ("PUT", "/api/v1/residents/{resident_id}", {"admin"}, {"home_id": "home-12", "name": "Ingrid"}),
    ("GET", "/api/v1/gateways", {"admin", "supervisor", "operator", "technician"}, None),
    ("POST", "/api/v1/gateways", {"admin"}, {"id": "gw-new", "name": "New"}),
    ("GET", "/api/v1/gateways/{gateway_id}/discovered", {"admin", "technician"}, None),
    ("GET", "/api/v1/gateways/{gateway_id}/events", {"admin", "technician"}, None),
    (
        "GET",
        "/api/v1/gateways/{gateway_id}/configuration",
        {"admin", "supervisor", "technician"},
        None,
    ),
    (
        "PUT",
        "/api/v1/gateways/{gateway_id}/configuration",
        {"admin", "technician"},
        {"base_version": None, "devices": []},
    ),
    ("GET", "/api/v1/devices", {"admin", "supervisor", "technician"}, None),
    (
        "POST",
        "/api/v1/devices",
        {"admin", "technician"},
        {"id": "d-new", "gateway_id": GATEWAY_ID, "home_id": "home-12", "type": "smoke"},
    ),
    ("GET", "/api/v1/audit", {"admin", "supervisor"}, None),
    ("POST", "/api/v1/devices/{device_id}/test", {"admin", "technician"}, {"minutes": 5}),
    ("DELETE", "/api/v1/devices/{device_id}/test", {"admin", "technician"}, None),
    ("GET", "/api/v1/devices/{device_id}/readings", {"admin", "technician"}, None),
    ("PUT", "/api/v1/homes/{home_id}/away", {"operator", "supervisor", "staff"}, {"away": False}),
    ("GET", "/api/v1/residents/{resident_id}/rules", {"admin", "supervisor", "operator"}, None),
    ("PUT", "/api/v1/residents/{resident_id}/rules", {"admin", "supervisor"}, {}),
    (
        "POST",
        "/api/v1/direct-devices",
        {"admin", "technician"},
        {"id": "lte-auth-1", "type": "gps_pendant", "home_id": "home-12"},
    ),
    ("POST", "/api/v1/users/{username}/disable", {"admin"}, None),
    ("POST", "/api/v1/users/{username}/enable", {"admin"}, None),
    (
        "POST",
        "/api/v1/gateways/{gateway_id}/commands",
        {"technician", "supervisor", "admin"},
        {"device_id": "lock-1", "action": "unlock"},
    ),
    (
        "GET",
        "/api/v1/gateways/{gateway_id}/commands",
        {"admin", "supervisor", "operator", "technician"},
        None,
    ),
    ("GET", "/api/v1/commands/stream", {"admin", "supervisor", "operator", "technician"}, None),
    (
        "GET",
        "/api/v1/commands/{command_id}",
        {"admin", "supervisor", "operator", "technician"},
        None,
    ),
    ("GET", "/api/v1/locks/{lock_id}/log", {"admin", "supervisor", "technician"}, None),
    # Home-care staff's own (cloud/api/staff.py): only the staff role.
    ("GET", "/api/v1/my/alarms", STAFF, None),
    ("GET", "/api/v1/my/alarms/{id}", STAFF, None),
    ("POST", "/api/v1/my/alarms/{id}/accept", STAFF, None),
    ("POST", "/api/v1/my/alarms/{id}/decline", STAFF, {"reason": "on another call"}),
    ("POST", "/api/v1/my/alarms/{id}/on-site", STAFF, None),
    ("POST", "/api/v1/my/alarms/{id}/resolve", STAFF, {"outcome": "help_given"}),
    ("POST", "/api/v1/my/alarms/{id}/take", STAFF, None),
    ("GET", "/api/v1/my/visits", STAFF, None),
    ("GET", "/api/v1/my/visits/{visit_id}", STAFF, None),
    ("POST", "/api/v1/my/locks/{lock_id}/unlock", STAFF, {"alarm_id": 1}),
    ("POST", "/api/v1/my/locks/{lock_id}/lock", STAFF, {"alarm_id": 1}),
    ("GET", "/api/v1/my/commands/{command_id}", STAFF, None),
    ("GET", "/api/v1/my/stream", STAFF, None),
    # Visits are planned by supervisors and administrators; operators read them.
    ("GET", "/api/v1/visits", {"admin", "supervisor", "operator"}, None),
    ("POST", "/api/v1/visits", {"admin", "supervisor"}, VISIT),
    ("PUT", "/api/v1/visits/{visit_id}", {"admin", "supervisor"}, VISIT),
    ("DELETE", "/api/v1/visits/{visit_id}", {"admin", "supervisor"}, None),
    ("GET", "/api/v1/residents/{resident_id}/consents", {"admin", "supervisor", "operator"}, None),
    (
        "POST",
        "/api/v1/residents/{resident_id}/consents",
        {"admin", "supervisor"},
        {"service": "lock", "given_by": "resident"},
    ),
    (
        "POST",
        "/api/v1/residents/{resident_id}/consents/{consent_id}/withdraw",
        {"admin", "supervisor"},
        None,
    ),
    ("GET", "/api/v1/my/push/key", STAFF, None),
    ("GET", "/api/v1/my/push/subscriptions", STAFF, None),
    ("POST", "/api/v1/my/push/subscriptions", STAFF, PUSH_SUBSCRIPTION),
    ("DELETE", "/api/v1/my/push/subscriptions/{subscription_id}", STAFF, None),
]
IDS = {
    "home_id": "home-12",
    "resident_id": "res-12",
    "gateway_id": GATEWAY_ID,
    "command_id": "no-such-command",
    "username": "bert",
    "device_id": "pendant-1",
    "lock_id": "lock-1",
    "visit_id": "1",
    "consent_id": "1",
    "subscription_id": "1",
}
UNAUTHENTICATED = {
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/session"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),  # this host, or TRYGG_METRICS_TOKEN (tests/test_dispatch_metrics.py)
    # A direct device's own credential, not a person's (tests/test_native_api.py).
    ("POST", "/api/v1/dev/{device_id}/{kind}"),
}
# Every signed-in person may sign out and set up a second factor (tests/test_sign_in.py).
OWN = {
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/second-factor"),
    ("POST", "/api/v1/auth/second-factor/confirm"),
}


async def make_alarm(cloud: RunningCloud, mosquitto: Mosquitto, n: int = 1) -> int:
    await publish_inventory(cloud, [f"pendant-{n}"])
    sent = envelope("api-test", n, device=f"pendant-{n}")
    await publish(mosquitto.port, events_topic(GATEWAY_ID), sent.model_dump_json())
    async with await cloud.authed("anna") as http:
        found: list[dict[str, object]] = []

        async def arrived() -> bool:
            found[:] = (await http.get("/api/v1/alarms")).json()
            return any(a["device_id"] == f"pendant-{n}" for a in found)

        await wait_until(arrived)
    alarm_id = next(a["id"] for a in found if a["device_id"] == f"pendant-{n}")
    assert isinstance(alarm_id, int)
    return alarm_id


def _unsigned_token(claims: dict[str, object]) -> str:
    """A token that says "alg": "none": it must be refused like any forgery."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def call(
    http: httpx.AsyncClient, method: str, path: str, body: dict[str, object] | None = None
) -> httpx.Response:
    if path.endswith("/stream"):
        async with http.stream(method, path) as res:
            if res.status_code != 200:
                await res.aread()  # an error has a body; a 200 stream is endless
            return res
    return await http.request(method, path, json=body)


async def test_the_route_table_covers_the_whole_api(sqlite_cloud: RunningCloud) -> None:
    async with sqlite_cloud.client() as http:
        spec = (await http.get("/openapi.json")).json()
    served = {
        (method.upper(), path.replace("{alarm_id}", "{id}"))
        for path, methods in spec["paths"].items()
        for method in methods
    }
    assert served == {(m, p) for m, p, _r, _b in ROUTES} | UNAUTHENTICATED | OWN


async def test_every_route_refuses_the_unauthenticated_and_bad_tokens(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    alarm_id = await make_alarm(sqlite_cloud, mosquitto)
    secret = sqlite_cloud.settings.secret_key
    expired = jwt.encode(
        {"sub": "1", "org": "org-a", "role": "operator", "exp": 1}, secret, algorithm="HS256"
    )
    forged = issue_token(
        TokenClaims(1, "org-a", Role.OPERATOR, "no-such-session"),
        "another-secret-of-thirty-two-chars!!",
        60,
        datetime.now(UTC),
    )
    unsigned = _unsigned_token({"sub": "1", "org": "org-a", "role": "operator", "exp": 9e9})
    for method, template, _roles, body in ROUTES:
        path = template.format(id=alarm_id, **IDS)
        for headers in (
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer garbage"},
            {"Authorization": f"Bearer {expired}"},
            {"Authorization": f"Bearer {forged}"},
            {"Authorization": f"Bearer {unsigned}"},
            {"Authorization": "Basic YW5uYTphbm5h"},
        ):
            async with httpx.AsyncClient(base_url=sqlite_cloud.url, headers=headers) as http:
                res = await call(http, method, path, body)
            assert res.status_code == 401, (method, path, headers)


@pytest.mark.parametrize("username", ["anna", "stina", "tove", "sara", "adam"])
async def test_every_route_refuses_the_roles_it_does_not_serve(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto, username: str
) -> None:
    role = USERS[username][2].value
    alarm_id = await make_alarm(sqlite_cloud, mosquitto)
    refused = [(m, t, b) for m, t, roles, b in ROUTES if role not in roles]
    async with await sqlite_cloud.authed(username) as http:
        for method, template, body in refused:
            res = await call(http, method, template.format(id=alarm_id, **IDS), body)
            assert res.status_code == 403, (username, method, template)
            assert "This needs one of the roles" in res.json()["detail"]


async def test_another_organisation_sees_nothing(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    alarm_id = await make_alarm(sqlite_cloud, mosquitto)
    for stranger in ("olle", "ulla"):  # an operator and a supervisor of org-b
        role = USERS[stranger][2].value
        async with await sqlite_cloud.authed(stranger) as http:
            for method, template, roles, body in ROUTES:
                if role not in roles:
                    continue
                res = await call(http, method, template.format(id=alarm_id, **IDS), body)
                if "{" in template:  # org-a's alarm, home or resident: not there for them
                    assert res.status_code == 404, (stranger, method, template)
                elif method == "GET" and not template.endswith("/stream"):
                    for org_a in ("anna", "Ingrid", "home-12", "res-12", GATEWAY_ID):
                        assert org_a not in res.text, (stranger, template)
            stats = (await http.get("/api/v1/statistics")).json() if role == "supervisor" else None
            assert stats is None or stats["total"]["alarms"] == 0
    async with await sqlite_cloud.authed("anna") as http:
        (alarm,) = (await http.get("/api/v1/alarms")).json()
        assert alarm["state"] == "new"


async def test_acknowledge_once_then_conflict(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    alarm_id = await make_alarm(sqlite_cloud, mosquitto)
    async with await sqlite_cloud.authed("anna") as http:
        first = await http.post(f"/api/v1/alarms/{alarm_id}/acknowledge")
        assert first.status_code == 200 and first.json()["state"] == "acknowledged"
        second = await http.post(f"/api/v1/alarms/{alarm_id}/acknowledge")
        assert second.status_code == 409
        assert "is acknowledged, claimed by anna" in second.json()["detail"]
        assert (await http.post("/api/v1/alarms/999999/acknowledge")).status_code == 404


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/v1/alarms?state=sleeping", "GET"),
        ("/api/v1/alarms?priority=urgent", "GET"),
        ("/api/v1/alarms?limit=0", "GET"),
        ("/api/v1/alarms?limit=abc", "GET"),
        ("/api/v1/alarms/not-a-number/acknowledge", "POST"),
        ("/api/v1/alarms/not-a-number", "GET"),
        ("/api/v1/alarms/1/assign", "POST"),
        ("/api/v1/alarms/1/resolve", "POST"),
    ],
)
async def test_bad_parameters_are_422(sqlite_cloud: RunningCloud, path: str, method: str) -> None:
    async with await sqlite_cloud.authed("anna") as http:
        res = await http.request(method, path)
    assert res.status_code == 422
    assert res.json()["detail"]


@pytest.mark.parametrize(
    "form",
    [
        {"username": "anna", "password": "wrong"},
        {"username": "nobody", "password": "anna-pass"},
        {"username": "anna", "password": ""},
    ],
)
async def test_login_refuses_wrong_credentials(
    sqlite_cloud: RunningCloud, form: dict[str, str]
) -> None:
    async with sqlite_cloud.client() as http:
        res = await http.post("/api/v1/auth/token", data=form)
    assert res.status_code in (401, 422)
    assert "access_token" not in res.text


async def test_login_gives_an_expiring_bearer_token(sqlite_cloud: RunningCloud) -> None:
    async with sqlite_cloud.client() as http:
        res = await http.post(
            "/api/v1/auth/token", data={"username": "anna", "password": "anna-pass"}
        )
    body = res.json()
    assert res.status_code == 200 and body["token_type"] == "bearer"
    claims = jwt.decode(
        body["access_token"], sqlite_cloud.settings.secret_key, algorithms=["HS256"]
    )
    assert claims["exp"] - claims["iat"] == sqlite_cloud.settings.token_ttl_s == body["expires_in"]
    assert "anna-pass" not in res.text


async def test_console_and_openapi_are_served(sqlite_cloud: RunningCloud) -> None:
    async with sqlite_cloud.client() as http:
        page = await http.get("/", follow_redirects=True)
        assert page.status_code == 200 and "Trygg" in page.text and "app.js" in page.text
        assert (await http.get("/console/app.js")).status_code == 200
        spec = (await http.get("/openapi.json")).json()
        assert "/api/v1/alarms/{alarm_id}/acknowledge" in spec["paths"]


def test_production_refuses_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from cloud import CloudSettings
    from cloud.settings import DEVELOPMENT_SECRET

    with pytest.raises(ValidationError, match="TRYGG_SECRET_KEY"):
        CloudSettings(environment="production")
    with pytest.raises(ValidationError, match="TRYGG_SECRET_KEY"):
        CloudSettings(environment="production", secret_key=DEVELOPMENT_SECRET)
    with pytest.raises(ValidationError, match="at least 32"):
        CloudSettings(environment="production", secret_key="short")
    CloudSettings(environment="production", secret_key="x" * 40)
    # Development is never the default: without TRYGG_ENVIRONMENT, no secret, no start.
    monkeypatch.delenv("TRYGG_ENVIRONMENT", raising=False)
    monkeypatch.delenv("TRYGG_SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="TRYGG_SECRET_KEY"):
        CloudSettings()
    monkeypatch.setenv("TRYGG_ENVIRONMENT", "development")
    assert CloudSettings().secret_key == DEVELOPMENT_SECRET


GARBAGE_BODIES: list[bytes] = [
    b"not json",
    b"[]",
    b"null",
    b'{"a": ' * 50 + b"1" + b"}" * 50,
    b'{"name": "' + b"x" * 100_000 + b'"}',
    b'{"outcome": 7, "staff": ["sara"], "id": {"$gt": ""}, "address": null}',
    '{"name": "\u0000\ud800"}'.encode("utf-8", "surrogatepass"),
]
GARBAGE_IDS = ["0", "-1", "99999999999999999999999", "a" * 300, "%00", "..%2f..%2fetc", "💥"]


async def test_garbage_on_every_route_is_refused_and_never_a_server_error(
    sqlite_cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    """Every route, with its allowed role, fed bodies and ids that are not what it takes:
    a 4xx with a reason every time, nothing stored, and the service still answers."""
    await make_alarm(sqlite_cloud, mosquitto)
    tried = 0
    clients = {u: await sqlite_cloud.authed(u) for u in ("anna", "stina", "adam", "sara")}
    try:
        for method, template, roles, _body in ROUTES:
            if method == "GET" and "{" not in template:
                continue  # nothing to garble but the query (test_bad_parameters_are_422)
            http = next(c for u, c in clients.items() if USERS[u][2].value in roles)
            ids = GARBAGE_IDS if "{" in template else [""]
            for bad_id in ids:
                path = template.format(
                    id=bad_id,
                    home_id=bad_id,
                    resident_id=bad_id,
                    gateway_id=bad_id,
                    command_id=bad_id,
                    username=bad_id,
                    device_id=bad_id,
                    lock_id=bad_id,
                    visit_id=bad_id,
                    consent_id=bad_id,
                    subscription_id=bad_id,
                )
                bodies = GARBAGE_BODIES if method in ("POST", "PUT") else [b""]
                for raw in bodies:
                    headers = {"Content-Type": "application/json"}
                    res = await http.request(method, path, content=raw, headers=headers)
                    tried += 1
                    assert 400 <= res.status_code < 500, (method, path, raw[:60], res.text)
                    if res.status_code == 422:
                        assert res.json()["detail"], (method, path)
        # Ids that are well formed but not there: 404 on every route that takes one.
        for method, template, roles, good in ROUTES:
            if "{" in template:
                http = next(c for u, c in clients.items() if USERS[u][2].value in roles)
                res = await call(http, method, template.format(id=424242, **_MISSING), good)
                assert res.status_code == 404, (method, template, res.text)
        assert (await clients["anna"].get("/api/v1/alarms")).status_code == 200
    finally:
        for client in clients.values():
            await client.aclose()
    assert tried > 300


_MISSING = {
    "home_id": "no-such-home",
    "resident_id": "no-such-resident",
    "gateway_id": "no-such-gateway",
    "command_id": "no-such-command",
    "username": "nobody",
    "device_id": "no-such-device",
    "lock_id": "no-such-lock",
    "visit_id": "424242",
    "consent_id": "424242",
    "subscription_id": "424242",
}


async def test_me_names_the_caller_and_their_organisations_console_settings(
    sqlite_cloud: RunningCloud,
) -> None:
    async with sqlite_cloud.client() as http:
        assert (await http.get("/api/v1/me")).status_code == 401
        bad = {"Authorization": "Bearer not-a-token"}
        assert (await http.get("/api/v1/me", headers=bad)).status_code == 401
    for username, org, role in (("anna", "org-a", "operator"), ("ulla", "org-b", "supervisor")):
        async with await sqlite_cloud.authed(username) as http:
            me = (await http.get("/api/v1/me")).json()
        assert me == {
            "username": username,
            "role": role,
            "org_id": org,
            "org_name": org.upper(),
            "answer_target_s": 60,
            "time_zone": "Europe/Stockholm",
            "map_tiles": None,
            "readings": False,
        }


async def test_every_response_carries_the_security_headers(sqlite_cloud: RunningCloud) -> None:
    paths = [p.replace("{id}", "1") for _m, p, _r, _b in ROUTES if not p.endswith("/stream")]
    paths += ["/", "/healthz", "/openapi.json", "/console/", "/console/app.js", "/no/such/page"]
    async with sqlite_cloud.client() as http:
        responses = [await http.get(path) for path in paths]
        responses.append(await http.post("/api/v1/auth/token", data={"username": "x"}))
        async with http.stream("GET", "/api/v1/alarms/stream") as stream:
            responses.append(stream)
    assert {r.status_code for r in responses} >= {200, 401, 404, 405, 422}
    for response in responses:
        headers = response.headers
        where = f"{response.request.method} {response.request.url.path}"
        policy = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in policy, where
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy, where
        assert headers.get("x-frame-options") == "DENY", where
        assert headers.get("referrer-policy") == "no-referrer", where
        assert headers.get("x-content-type-options") == "nosniff", where
    # The interactive docs would load scripts from a CDN: not served.
    async with sqlite_cloud.client() as http:
        assert (await http.get("/docs")).status_code == 404
