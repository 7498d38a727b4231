"""docker/ without a Docker engine: the compose file ships no secret and names only
commands that exist, and its setup steps (docker/entry.sh) run here as they would there,
giving a broker that lets the gateway in with its bundle and nobody without a login."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from gateway import load_config

from .servers import free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SECRET_WORDS = re.compile(r"PASSWORD|TOKEN|SECRET|KEY", re.IGNORECASE)


def test_the_compose_file_ships_no_secret_and_no_login() -> None:
    text = (DOCKER / "compose.yaml").read_text()
    # No fallback values: "${X:-something}" is how a default secret gets shipped.
    assert ":-" not in text
    for name, service in COMPOSE["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_WORDS.search(key):
                assert key.endswith("_FILE"), f"{name}: {key} is given in the file"
                assert str(value).startswith("/secrets/"), f"{name}: {key}"
    assert "operator" not in text
    for path in DOCKER.rglob("*"):
        if path.is_file():
            content = path.read_text(errors="replace")
            assert "dev-only" not in content, path
            assert "development-secret" not in content, path


def test_every_service_that_stays_up_has_a_healthcheck_and_what_it_mounts_exists() -> None:
    named_volumes = set(COMPOSE["volumes"])
    for name, service in COMPOSE["services"].items():
        if service.get("restart") != "no":  # the one-shot steps (secrets, setup) end
            check = service.get("healthcheck", {}).get("test")
            assert check and check[0] in ("CMD", "CMD-SHELL"), name
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).resolve().exists(), (name, source)
            else:
                assert source in named_volumes, (name, source)
        for other, condition in (service.get("depends_on") or {}).items():
            if isinstance(condition, dict) and condition["condition"] == "service_healthy":
                assert "healthcheck" in COMPOSE["services"][other], (name, other)
    # Grafana reads its provisioning, and the dashboards where the provider looks.
    grafana = COMPOSE["services"]["grafana"]["volumes"]
    provider = yaml.safe_load(
        (ROOT / "dashboards/grafana/provisioning/dashboards/trygg.yaml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert any(m.endswith(f":{path}:ro") for m in grafana), grafana
    # VictoriaMetrics scrapes the dispatch service with the token the secrets step makes.
    scrape = yaml.safe_load((DOCKER / "victoria-metrics-scrape.yaml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["bearer_token_file"] == "/secrets/metrics-token"
    assert job["static_configs"][0]["targets"] == ["cloud:8000"]
    assert "metrics-token" in (DOCKER / "entry.sh").read_text()


def test_the_image_copies_only_what_exists_and_vendors_the_consoles_libraries() -> None:
    """docker/Dockerfile: each COPY names a path of the repository (or of an earlier
    stage), and the vendored browser libraries come from the stage that runs
    scripts/vendor.sh, to where the consoles load them."""
    stages: set[str] = set()
    copied_from_stage: list[str] = []
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM" and len(words) == 4 and words[2] == "AS":
            stages.add(words[3])
        if words[0] == "RUN" and "scripts/vendor.sh" in line:
            assert "vendor" in stages
        if words[0] != "COPY":
            continue
        sources = words[1:-1]
        if sources and sources[0].startswith("--from="):
            assert sources[0].removeprefix("--from=") in stages, line
            copied_from_stage.extend(sources[1:])
            continue
        for source in sources:
            assert (ROOT / source).exists(), line
    vendor = (ROOT / "scripts" / "vendor.sh").read_text()
    for library in ("dashboards/operator/vendor", "dashboards/technician/vendor"):
        assert f"/src/{library}" in copied_from_stage, library
        assert library in vendor, library
    technician = (ROOT / "dashboards" / "technician" / "index.html").read_text()
    for path in re.findall(r'(?:src|href)="(vendor/[^"]+)"', technician):
        assert (ROOT / "dashboards" / "technician" / path).is_file(), path


def test_every_trygg_command_in_the_stack_exists() -> None:
    for name, service in COMPOSE["services"].items():
        if service.get("image") != "trygg:dev" and "build" not in service:
            continue
        command = service.get("command", [])
        entrypoint = service.get("entrypoint")
        if entrypoint == ["/app/docker/entry.sh"]:
            assert command[0] in {"secrets", "setup", "cloud"}, name
            continue
        words = " ".join(command).split() if entrypoint else command
        start = words.index("trygg") + 1 if "trygg" in words else 0
        subcommand = [w for w in words[start:] if not w.startswith("-")][:2]
        result = subprocess.run(
            [sys.executable, "-m", "trygg", *subcommand, "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert result.returncode == 0, (name, subcommand, result.stderr)
        for option in (w for w in words[start:] if w.startswith("--")):
            assert option in result.stdout, (name, option)


@pytest.fixture
def stack(tmp_path: Path) -> dict[str, str]:
    """docker/entry.sh secrets and setup, run twice as a stack's restarts would."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "TRYGG_SECRETS_DIR": str(tmp_path / "secrets"),
        "TRYGG_BROKER_DIR": str(tmp_path / "broker"),
        "TRYGG_GATEWAY_DIR": str(tmp_path / "gateway-config"),
        "TRYGG_HOME_BROKER_DIR": str(tmp_path / "home-broker"),
        "TRYGG_GATEWAY_TEMPLATE": str(DOCKER / "gateway.toml"),
        "TRYGG_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}",
        "TRYGG_BROKER_HOST": "localhost",
        "TRYGG_BROKER_PORT": str(free_port()),
        "TRYGG_BROKER_LISTEN": "127.0.0.1",
    }
    env.pop("TRYGG_ENVIRONMENT", None)  # the stack runs as production
    if os.geteuid() == 0:
        env["TRYGG_BROKER_RUN_AS"] = "root"
    for _ in range(2):
        for step in ("secrets", "setup"):
            result = subprocess.run(
                ["sh", str(DOCKER / "entry.sh"), step], env=env, capture_output=True, text=True
            )
            assert result.returncode == 0, result.stdout + result.stderr
    return env


@pytest.fixture
def stack_broker(stack: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """The dispatch broker as the setup configured it."""
    conf = tmp_path / "broker" / "mosquitto.conf"
    assert "allow_anonymous false" in conf.read_text()
    port = int(stack["TRYGG_BROKER_PORT"])
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    wait_port(port)
    yield port
    broker.terminate()
    broker.wait(10)


async def test_the_stacks_setup_runs_without_docker_and_its_broker_holds(
    stack_broker: int, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    made = {p.name: p.read_text() for p in secrets.iterdir()}
    assert len(set(made.values())) == len(made)  # each its own, none reused
    assert {"secret-key", "admin-password"} <= set(made)
    assert all(len(v.strip()) >= 32 for v in made.values())
    assert oct((secrets / "secret-key").stat().st_mode & 0o777) == "0o640"

    config = load_config(tmp_path / "gateway-config" / "gateway.toml")
    rendered = (tmp_path / "gateway-config" / "gateway.toml").read_text()
    assert not re.search(r'"@[A-Z_]+@"', rendered)
    assert config.uplink.username == "gw-0042"
    assert config.uplink.password
    assert config.zigbee2mqtt.password == made["gateway-home-password"].strip()

    assert config.uplink.ca_file is not None
    tls = ssl.create_default_context(cafile=str(config.uplink.ca_file))
    async with aiomqtt.Client(
        "localhost",
        stack_broker,
        username="gw-0042",
        password=config.uplink.password,
        tls_context=tls,
    ) as client:
        await client.publish("trygg/v1/gw/gw-0042/status", b"{}", qos=1)
    for username, password in ((None, None), ("gw-0042", "guessed")):
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(
                "localhost", stack_broker, username=username, password=password, tls_context=tls
            ):
                pass
    acl = (tmp_path / "home-broker" / "acl").read_text()
    assert "user trygg-gateway" in acl and "user zigbee2mqtt" in acl


def test_the_dispatch_service_reaches_the_time_series_store_to_delete_positions() -> None:
    """It deletes tracked positions there past each organisation's retention
    (cloud/retention.py), so it must be told where the store is."""
    import yaml

    compose = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "docker" / "compose.yaml").read_text()
    )
    store = compose["services"]["victoria-metrics"]["command"]
    (listen,) = [f.split("=", 1)[1] for f in store if f.startswith("-httpListenAddr=")]
    url = compose["services"]["cloud"]["environment"]["TRYGG_READINGS_QUERY_URL"]
    assert url == f"http://victoria-metrics{listen}"
