"""``trygg demo`` as a person runs it: starts, serves the console, raises alarms, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.security import Role
from trygg.demo import LOGINS, RESIDENTS

from .servers import free_port

pytestmark = pytest.mark.e2e


def test_demo_starts_serves_the_console_raises_alarms_and_stops_cleanly(tmp_path: Path) -> None:
    port, mqtt_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trygg",
                "demo",
                "--port",
                str(port),
                "--mqtt-port",
                str(mqtt_port),
                "--data-dir",
                str(tmp_path / "data"),
                "--alarm-every",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 90
        while "Press Ctrl-C to stop" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert f"http://127.0.0.1:{port}/" in text and "operator / operator" in text
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            page = http.get("/", follow_redirects=True)
            assert page.status_code == 200 and "alarm queue" in page.text
            token = http.post(
                "/api/v1/auth/token", data={"username": "operator", "password": "operator"}
            )
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            alarms: list[dict[str, object]] = []
            while not alarms:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
                alarms = http.get("/api/v1/alarms", headers=headers).json()
            assert alarms[0]["gateway_id"] == "gw-demo-1"
            # A real small centre: the alarm's resident, address and contacts are there.
            detail = http.get(f"/api/v1/alarms/{alarms[0]['id']}", headers=headers).json()
            assert detail["resident"]["name"] in {r["name"] for r in RESIDENTS}
            assert detail["home"]["address"].endswith("Malmö")
            assert detail["resident"]["contacts"]
            # A printed login for every role, each of which signs in.
            for username, role, _team, _what in LOGINS:
                assert f"{username} / {username}" in text
                signed = http.post(
                    "/api/v1/auth/token", data={"username": username, "password": username}
                )
                assert signed.status_code == 200, (username, signed.text)
                me = http.get(
                    "/api/v1/me",
                    headers={"Authorization": f"Bearer {signed.json()['access_token']}"},
                )
                assert me.json()["role"] == role.value
            assert {role for _u, role, _t, _w in LOGINS} == set(Role)

            # The GPS pendant's wearer walks out of the safe zone: on the map, with the zone.
            def wandered() -> list[dict[str, Any]]:
                found = http.get("/api/v1/alarms", headers=headers).json()
                return [a for a in found if a["kind"] == "geofence_exit"]

            while not wandered():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
            away = wandered()[0]
            seen = http.get(f"/api/v1/alarms/{away['id']}", headers=headers).json()
            assert seen["positions"] and seen["zone"]["radius_m"] == 250.0
            assert seen["resident"]["name"] == RESIDENTS[1]["name"]
            assert seen["home"]["latitude"] is not None
            teams = http.get("/api/v1/teams", headers=headers).json()
            assert {t["name"] for t in teams} == {"Larmcentralen", "Hemtjänst Centrum", "Teknik"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
        assert "Trygg demo stopped." in log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "trygg",
                "demo",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert result.returncode != 0
    assert f"port {port}" in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args",
    [["--help"], ["gateway", "--help"], ["cloud", "--help"], ["sim", "--help"], ["demo", "--help"]],
)
def test_help_is_clear(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trygg", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
