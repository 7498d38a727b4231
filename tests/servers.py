"""Real servers for the tests: a private mosquitto, a throwaway PostgreSQL database,
and the dispatch service on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {limit_s} s")


class Mosquitto:
    """A private mosquitto on its own port; stop() and start() keep the port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError(
                "mosquitto is not installed: run ./scripts/test.sh, which installs it"
            )
        self.binary = binary
        self.port = free_port()
        self.config = workdir / f"mosquitto-{self.port}.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\n"
        )
        self.log = workdir / f"mosquitto-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=log, stderr=log
            )
        wait_port(self.port)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None


class VictoriaMetrics:
    """A private victoria-metrics: it accepts the InfluxDB v2 write API on /api/v2/write."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise RuntimeError("victoria-metrics is not installed: run ./scripts/test.sh")
        self.binary = binary
        self.port = free_port()
        self.data = workdir / f"vm-{self.port}"
        self.log = workdir / f"vm-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    f"-storageDataPath={self.data}",
                    "-retentionPeriod=100y",
                    "-search.latencyOffset=0s",
                ],
                stdout=log,
                stderr=log,
            )
        wait_port(self.port)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(20)
            self._proc = None

    def export(self) -> dict[tuple[str, str], list[float]]:
        """Every stored series as (metric, device) -> values."""
        import json
        import urllib.request

        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()  # noqa: S310
        request = urllib.request.Request(  # noqa: S310
            f"{self.url}/api/v1/export", data=b'match[]={__name__=~"trygg.*"}'
        )
        body = urllib.request.urlopen(request, timeout=10).read().decode()  # noqa: S310
        out: dict[tuple[str, str], list[float]] = {}
        for line in body.splitlines():
            item = json.loads(line)
            key = (item["metric"]["__name__"], item["metric"].get("device", ""))
            out.setdefault(key, []).extend(item["values"])
        return out


PG_ADMIN_DSN = os.environ.get("TRYGG_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def create_database() -> str:
    name = f"trygg_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def asyncpg_url(name: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def wait_until(predicate: object, limit_s: float = 10.0, interval_s: float = 0.02) -> None:
    """Poll an async or sync predicate until it is truthy."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        result = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {limit_s} s")
        await asyncio.sleep(interval_s)
