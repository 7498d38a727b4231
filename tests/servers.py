"""Real servers for the tests: a private mosquitto, a throwaway PostgreSQL database,
and the dispatch service on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import paho.mqtt.client as paho

from cloud.brokerconf import (
    DISPATCH_RULES,
    Identity,
    Listener,
    TlsFiles,
    ensure_tls,
    gateway_local_rules,
    gateway_rules,
    write_broker_config,
    zigbee2mqtt_rules,
)
from cloud.credentials import generate_password, mosquitto_hash
from devices.brokertls import client_context

# Ports for servers the tests start are picked below the kernel's ephemeral range
# (32768-60999 on Linux), from which every client connection and every bind to port 0
# takes its port: a port picked there could be taken before the server binds it.
_PORTS = (20_000, 32_000)
_rng = random.Random()


def _free(kind: socket.SocketKind) -> int:
    for _ in range(1000):
        port = _rng.randrange(*_PORTS)
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def free_port() -> int:
    return _free(socket.SOCK_STREAM)


def free_udp_port() -> int:
    return _free(socket.SOCK_DGRAM)


def wait_port(port: int, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {limit_s} s")


# --- the secured broker ------------------------------------------------------------------
# Every test broker is configured as a deployment's is, by the product's own broker-config
# code: TLS only, no anonymous clients, one login per gateway limited to its own topics.
# The certificates and passwords are made once per test process.

# Gateway ids the tests use; each has a login on every test broker.
TEST_GATEWAYS = (
    "gw-test-1",
    "gw-test-2",
    "gw-b-1",
    "gw-1",
    "gw-2",
    "gw-sim",
    "gw-bench",
    "gw-other",
    "gw-stranger",
    "gw-nope",
    "gw-new",
    "gw-home-7",
    "gw-0042",
    "gw-demo-1",
)
ZIGBEE2MQTT = "zigbee2mqtt"  # the home's Zigbee2MQTT (and the simulator playing it)
DISPATCH = "dispatch.test"
BENCH_FLEET = "bench.fleet"  # tests/bench.py: many gateways' heartbeats on one connection


@dataclass(frozen=True)
class Logins:
    """The tests' CA, broker certificate and logins."""

    tls: TlsFiles
    passwords: dict[str, str]
    hashes: dict[str, str]
    shared_group: str


@functools.cache
def pki() -> Logins:
    import atexit
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="trygg-pki-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    tls = ensure_tls(directory, ["localhost", "127.0.0.1"])
    names = (*TEST_GATEWAYS, ZIGBEE2MQTT, DISPATCH, BENCH_FLEET)
    passwords = {name: generate_password() for name in names}
    hashes = {name: mosquitto_hash(pw) for name, pw in passwords.items()}
    return Logins(tls, passwords, hashes, f"trygg-{uuid.uuid4().hex}")


def identity(username: str, rules: tuple[str, ...]) -> Identity:
    return Identity(username, pki().hashes[username], rules)


def broker_identities() -> list[Identity]:
    """Every test gateway (on a broker that is both the dispatch broker and the home's, as
    in most tests), the home's Zigbee2MQTT, and the dispatch service."""
    gateways = [identity(g, gateway_rules(g) + gateway_local_rules()) for g in TEST_GATEWAYS]
    return [
        *gateways,
        identity(ZIGBEE2MQTT, zigbee2mqtt_rules()),
        identity(DISPATCH, DISPATCH_RULES),
    ]


def login(username: str) -> dict[str, str]:
    """A [uplink] / [zigbee2mqtt] login: username, password and the CA (so: TLS)."""
    return {
        "username": username,
        "password": pki().passwords[username],
        "ca_file": str(pki().tls.ca_cert),
    }


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    return client_context(ca_file or pki().tls.ca_cert, None, None)


def mqtt_client(port: int, username: str = ZIGBEE2MQTT, **options: Any) -> aiomqtt.Client:
    """A client that logs in as ``username`` (Zigbee2MQTT by default) over TLS."""
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=username,
        password=pki().passwords[username],
        tls_context=tls_context(),
        **options,
    )


def paho_login(client: paho.Client, username: str = ZIGBEE2MQTT) -> paho.Client:
    """The same login for a bare paho client."""
    client.username_pw_set(username, pki().passwords[username])
    client.tls_set_context(tls_context())
    return client


def cloud_broker(port: int) -> dict[str, Any]:
    """The dispatch service's TRYGG_MQTT_* settings for a test broker on ``port``."""
    return {
        "mqtt_port": port,
        "mqtt_username": DISPATCH,
        "mqtt_password": pki().passwords[DISPATCH],
        "mqtt_ca_file": pki().tls.ca_cert,
        "mqtt_shared_group": pki().shared_group,
    }


def cloud_env(port: int) -> dict[str, str]:
    """The same as environment variables, for ``trygg cloud run``."""
    return {f"TRYGG_{k.upper()}": str(v) for k, v in cloud_broker(port).items()}


class Mosquitto:
    """A private mosquitto on its own port; stop() and start() keep the port.

    Its configuration is what ``trygg cloud broker-config`` writes: TLS, logins, ACL."""

    def __init__(
        self,
        workdir: Path,
        *,
        max_queued: int = 100_000,
        max_inflight: int = 20,
        persistent: bool = False,
        identities: list[Identity] | None = None,
    ) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError(
                "mosquitto is not installed: run ./scripts/test.sh, which installs it"
            )
        self.binary = binary
        self.port = free_port()
        self.dir = workdir / f"mosquitto-{self.port}"
        self.listener = Listener(
            port=self.port,
            host="127.0.0.1",
            # Persistent: sessions and their queues survive a restart, as in production.
            persistence=persistent,
            max_queued=max_queued,
            max_inflight=max_inflight,
            # As root, mosquitto would switch to its own user, who cannot read here.
            run_as="root" if os.geteuid() == 0 else None,
        )
        self.configure(identities if identities is not None else broker_identities())
        self.log = workdir / f"mosquitto-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def configure(self, identities: list[Identity]) -> None:
        """(Re)write its configuration; a running broker takes it on reload()."""
        self.identities = identities
        self.config = write_broker_config(self.dir, self.listener, pki().tls, identities)

    def reload(self) -> None:
        """SIGHUP: mosquitto rereads its password and ACL files."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGHUP)

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

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = ()) -> None:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise RuntimeError("victoria-metrics is not installed: run ./scripts/test.sh")
        self.binary = binary
        self.port = free_port()
        self.data = workdir / f"vm-{self.port}"
        self.log = workdir / f"vm-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.extra_args = extra_args  # e.g. -promscrape.config=...

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
                    *self.extra_args,
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


@contextlib.asynccontextmanager
async def throwaway_database() -> AsyncIterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards; yields its URL."""
    name = await create_database()
    try:
        yield asyncpg_url(name)
    finally:
        await drop_database(name)


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


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, on a free port, that it may stop and start.

    The server refuses to run as root, so the cluster belongs to the ``postgres`` user.
    """

    def __init__(self) -> None:
        import glob
        import tempfile

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("PostgreSQL server binaries not found: run ./scripts/test.sh")
        if os.geteuid() != 0:
            raise RuntimeError("a private PostgreSQL cluster needs root (to run as 'postgres')")
        self.bin = Path(bins[-1])
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="trygg-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_postgres(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
        )

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def gateway_toml(
    *,
    gateway_id: str,
    store: Path,
    z2m_port: int,
    uplink_port: int,
    devices: list[dict[str, str]],
    extra: str = "",
) -> str:
    me = "".join(f'{key} = "{value}"\n' for key, value in login(gateway_id).items())
    lines = [
        f'[gateway]\nid = "{gateway_id}"\n',
        f'[store]\npath = "{store}"\n',
        f'[zigbee2mqtt]\nhost = "127.0.0.1"\nport = {z2m_port}\n{me}',
        f'[uplink]\nhost = "127.0.0.1"\nport = {uplink_port}\nack_timeout_s = 2\n{me}',
        extra,
    ]
    for d in devices:
        lines.append("[[devices]]\n" + "".join(f'{k} = "{v}"\n' for k, v in d.items()))
    return "\n".join(lines)


class GatewayProcess:
    """``trygg gateway run`` as a real process, to be killed the hard way."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import sys

        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "trygg", "gateway", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory so far (VmHWM)."""
        assert self._proc is not None
        for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc status")

    def terminate(self) -> int:
        if self._proc is None:
            return 0
        self._proc.terminate()
        code = self._proc.wait(20)
        self._proc = None
        return code

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def one_broker_gateway(
    workdir: Path,
    broker_port: int,
    gateway_id: str,
    devices: list[dict[str, str]],
    *,
    store: Path | None = None,
) -> GatewayProcess:
    """A gateway process whose devices and dispatch service share one broker."""
    config = workdir / "gateway.toml"
    config.write_text(
        gateway_toml(
            gateway_id=gateway_id,
            store=store or workdir / "gw.db",
            z2m_port=broker_port,
            uplink_port=broker_port,
            devices=devices,
        )
    )
    return GatewayProcess(config, workdir / "gateway.log")


async def run_trygg(
    *args: str, env: dict[str, str] | None = None, limit_s: float = 120
) -> tuple[int, str, str]:
    """``trygg ARGS`` as a person runs it: (exit code, stdout, stderr)."""
    import asyncio
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "trygg",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class DispatchProcess:
    """``trygg cloud run`` as a real process, on one port across its restarts."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = env
        self.log = workdir / f"dispatch-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> None:
        import sys

        command = [sys.executable, "-m", "trygg", "cloud", "run", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )

    async def ready(self, limit_s: float = 30.0) -> None:
        """Serving HTTP, and its ingest subscribed (it says so in its log)."""
        import httpx

        subscribed = self.text().count("ingest subscribed")

        async def up() -> bool:
            assert self.returncode() is None, self.text()
            if self.text().count("ingest subscribed") <= subscribed:
                return False
            async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

        await wait_until(up, limit_s=limit_s, interval_s=0.05)

    def returncode(self) -> int | None:
        assert self._proc is not None
        return self._proc.poll()

    async def exited_within(self, limit_s: float) -> float:
        """Seconds until the process ended; TimeoutError past ``limit_s``."""
        start = time.monotonic()
        await wait_until(lambda: self.returncode() is not None, limit_s=limit_s, interval_s=0.01)
        return time.monotonic() - start

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
