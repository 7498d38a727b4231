"""Request bodies are bounded before they are read, and JSON bodies are strict JSON.

A stranger's huge POST, declared or streamed in chunks, is refused with 413 by a real
dispatch service process whose memory stays flat; every route that takes JSON answers
NaN, Infinity, invalid UTF-8, lone surrogates and NUL characters with 422, never a 500.
The JSON routes are read from the service's own OpenAPI, so a new route is covered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.api import SMALL_BODY_BYTES
from cloud.api.strict import TEXT_BODY_BYTES, parse_json

from .conftest import USERS, RunningCloud
from .servers import Mosquitto, cloud_env, free_port, wait_until

pytestmark = pytest.mark.integration

HUGE_BYTES = 400 * 1024 * 1024
CHUNK = bytes(1024 * 1024)
# Far below what a 400 MB body held in memory costs (the service grew by 570 MB before).
RSS_GROWTH_LIMIT_MB = 25


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@contextlib.asynccontextmanager
async def dispatch_process(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    """``trygg cloud run`` as a process of its own: (pid, port)."""
    port = free_port()
    env = {
        **os.environ,
        "TRYGG_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}",
        **cloud_env(mosquitto.port),
        "TRYGG_MQTT_CLIENT_ID": f"bodies-{port}",
    }
    command = [sys.executable, "-m", "trygg", "cloud", "run", f"--port={port}"]
    with (tmp_path / "cloud.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:

        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(f"http://127.0.0.1:{port}/healthz")).is_success
            except httpx.TransportError:
                return False

        await wait_until(healthy, 60, 0.1)
        yield proc.pid, port
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)


async def zeros(total: int) -> AsyncIterator[bytes]:
    """A body streamed in chunks, of a length nobody declares (chunked transfer coding)."""
    for _ in range(total // len(CHUNK)):
        yield CHUNK


def declared_only(port: int, method: str, path: str) -> bytes:
    """Send only the head of a request declaring a 400 MB body; what comes back, unsent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {HUGE_BYTES}\r\n\r\n"
        )
        sock.sendall(head.encode())
        return sock.recv(65536)


async def test_a_huge_body_is_refused_before_it_is_read_and_memory_stays_flat(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with dispatch_process(mosquitto, tmp_path) as (pid, port):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            # The same routes with small bodies first, so that what they load is loaded.
            assert (await http.post("/api/v1/teams", json={"name": "x"})).status_code == 401
            sign_in = {"username": "nobody", "password": "nothing-here"}
            assert (await http.post("/api/v1/auth/token", data=sign_in)).status_code == 401
            before = rss_mb(pid)
            for path, content_type in (
                ("/api/v1/teams", "application/json"),  # JSON, no token
                ("/api/v1/auth/token", "application/x-www-form-urlencoded"),  # a form
            ):
                res = await http.post(
                    path, content=zeros(HUGE_BYTES), headers={"Content-Type": content_type}
                )
                assert res.status_code == 413, (path, res.text)
                assert res.json() == {"detail": "Content Too Large"}
            grown = rss_mb(pid) - before
            assert grown < RSS_GROWTH_LIMIT_MB, f"the service grew by {grown:.0f} MB"
        # Declared too large: refused from the head alone, on every kind of route.
        for method, path in (
            ("POST", "/api/v1/teams"),
            ("PUT", "/api/v1/residents/res-12"),
            ("POST", "/api/v1/auth/token"),
            ("POST", "/api/v1/alarms/1/claim"),
            ("GET", "/api/v1/alarms"),
            ("POST", "/no/such/route"),
        ):
            answer = await asyncio.to_thread(declared_only, port, method, path)
            assert answer.startswith(b"HTTP/1.1 413 "), (method, path, answer[:80])
        assert rss_mb(pid) - before < RSS_GROWTH_LIMIT_MB
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path", "limit"),
    [
        ("POST", "/api/v1/teams", SMALL_BODY_BYTES),
        ("POST", "/api/v1/users", SMALL_BODY_BYTES),
        ("PUT", "/api/v1/residents/res-12", TEXT_BODY_BYTES),
        ("POST", "/api/v1/alarms/1/resolve", TEXT_BODY_BYTES),
    ],
)
async def test_each_route_reads_a_body_up_to_its_limit_and_refuses_one_byte_more(
    sqlite_cloud: RunningCloud, method: str, path: str, limit: int
) -> None:
    async with await sqlite_cloud.authed("adam") as http:
        padding = b'{"name": "' + b" " * (limit - 12) + b'"}'
        assert len(padding) == limit
        at_limit = await http.request(method, path, content=padding)
        assert at_limit.status_code != 413, at_limit.text  # read, then judged on its merits
        over = await http.request(method, path, content=padding + b" ")
        assert over.status_code == 413, over.text


NOT_JSON: list[tuple[bytes, str]] = [
    (b'{"name": NaN}', "NaN is not a JSON number"),
    (b'{"name": Infinity}', "Infinity is not a JSON number"),
    (b'{"contacts": [{"phone": -Infinity}]}', "-Infinity is not a JSON number"),
    (b'{"name": "\xff"}', "invalid UTF-8 at byte 10"),
    (b'{"name": "\xed\xa0\x80"}', "invalid UTF-8 at byte 10"),  # a surrogate, UTF-8 encoded
    (b'{"name": "\xc3"}', "invalid UTF-8 at byte 10"),  # cut in the middle of a character
    (b'{"name": "\\ud800"}', "a lone surrogate escape, which is not a character"),
    (b'{"name": "a\\u0000b"}', "a NUL character (\\u0000) in text"),
    (b'{"a\\u0000": 1}', "a NUL character (\\u0000) in text"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
]
PATH_VALUES = {
    "alarm_id": "1",
    "home_id": "home-12",
    "resident_id": "res-12",
    "username": "bert",
    "gateway_id": "gw-test-1",
    "command_id": "cmd-no-such-one",
    "device_id": "pendant-1",
    "lock_id": "lock-1",
    "visit_id": "1",
    "consent_id": "1",
    "subscription_id": "1",
    "kind": "alarm",  # a direct device's message (docs/native-api.md)
}


async def test_non_finite_numbers_and_bad_text_are_422_on_every_json_route(
    sqlite_cloud: RunningCloud,
) -> None:
    async with sqlite_cloud.client() as http:
        spec = (await http.get("/openapi.json")).json()
    json_routes = [
        (method.upper(), path.format(**PATH_VALUES))
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert len(json_routes) >= 10, json_routes
    # Every role: whichever a route serves, its callers get the 422 too.
    roles = {role: name for name, (_org, _pw, role) in USERS.items()}
    clients = [await sqlite_cloud.authed(name) for name in roles.values()]
    try:
        for method, path in json_routes:
            for body, reason in NOT_JSON:
                for http in clients:
                    res = await http.request(
                        method, path, content=body, headers={"Content-Type": "application/json"}
                    )
                    assert res.status_code == 422, (method, path, body[:40], res.text)
                    assert res.json()["detail"] == f"body: bad JSON ({reason})"
    finally:
        for client in clients:
            await client.aclose()


async def test_bad_json_on_any_route_is_never_a_server_error(sqlite_cloud: RunningCloud) -> None:
    """Routes that take no JSON body (or a form) are fed the same: a 4xx or ignored."""
    async with sqlite_cloud.client() as http:
        spec = (await http.get("/openapi.json")).json()
    routes = [
        (method.upper(), path.format(**PATH_VALUES))
        for path, methods in spec["paths"].items()
        for method in methods
        if not path.endswith("/stream")  # a 200 there is an endless stream
    ]
    async with await sqlite_cloud.authed("stina") as http:
        for method, path in routes:
            for body, _reason in NOT_JSON:
                for content_type in ("application/json", "application/x-www-form-urlencoded"):
                    res = await http.request(
                        method, path, content=body, headers={"Content-Type": content_type}
                    )
                    assert res.status_code < 500, (method, path, body[:40], res.text)


async def test_a_nul_in_any_parameter_or_form_is_422_and_never_reaches_the_database(
    cloud: RunningCloud,
) -> None:
    """PostgreSQL refuses NUL in any text: it was a 500 on every route that looked a path
    or query parameter up, and on sign-in. Every parameter of every route, from the OpenAPI."""
    async with cloud.client() as http:
        spec = (await http.get("/openapi.json")).json()
        sign_in = {"username": "ad\x00am", "password": "adam-pass"}
        res = await http.post("/api/v1/auth/token", data=sign_in)
        assert res.status_code == 422, res.text
        assert res.json()["detail"] == "form: holds a NUL character (\\u0000)"
    tried = 0
    async with await cloud.authed("adam") as http:
        for template, methods in spec["paths"].items():
            for method, operation in methods.items():
                for param in operation.get("parameters", []):
                    name, kind = param["name"], param["in"]
                    if kind == "path":
                        path = template.format(**(PATH_VALUES | {name: "a%00b"}))
                        params = {}
                    elif kind == "query":
                        path, params = template.format(**PATH_VALUES), {name: "a\x00b"}
                    else:
                        continue
                    res = await http.request(method.upper(), path, params=params)
                    assert res.status_code == 422, (method, path, params, res.text)
                    expected = f"{kind}.{name}: holds a NUL character (\\u0000)"
                    assert expected in res.json()["detail"], res.text
                    tried += 1
        assert (await http.get("/api/v1/alarms")).status_code == 200
    assert tried >= 15


# -- parse_json on any bytes ---------------------------------------------------------------

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _texts_and_numbers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value] + [x for v in value.values() for x in _texts_and_numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _texts_and_numbers(v)]
    return [value]


@given(st.one_of(st.binary(max_size=200), json_like.map(lambda v: json.dumps(v).encode())))
def test_parse_json_gives_clean_json_or_a_decode_error_for_any_bytes(raw: bytes) -> None:
    """Whatever arrives: a value with no NaN, Infinity, NUL or lone surrogate in it, or a
    JSONDecodeError (FastAPI's 422), never any other exception."""
    try:
        value = parse_json(raw)
    except json.JSONDecodeError:
        return
    for leaf in _texts_and_numbers(value):
        if isinstance(leaf, float):
            assert math.isfinite(leaf)
        if isinstance(leaf, str):
            assert "\x00" not in leaf
            leaf.encode("utf-8")
    json.dumps(value, allow_nan=False)
