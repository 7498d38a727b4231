"""The gateway's TOML configuration, validated once at start.

An error names the file, the key and what was expected; nothing deeper in the
gateway reads raw configuration.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices import DeviceType
from devices.wire import GATEWAY_ID_PATTERN

_NAME = r"^[A-Za-z0-9_.:-]{1,128}$"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Strict):
    id: str = Field(pattern=GATEWAY_ID_PATTERN)
    # SCAIP allows 1-1440 min between reports; the brief's default is 60 s.
    heartbeat_interval_s: int = Field(default=60, ge=60, le=86400)


class StoreSection(_Strict):
    path: Path = Path("trygg-gateway.db")
    # Readings are thinned, then dropped oldest first, to keep the database under this;
    # events are never dropped for it.
    budget_mb: float = Field(default=512, gt=0)


class BrokerSection(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None


class Zigbee2MqttSection(BrokerSection):
    base_topic: str = Field(default="zigbee2mqtt", pattern=r"^[^#+]+$")
    max_payload_bytes: int = Field(default=16 * 1024, ge=256, le=1024 * 1024)


class UplinkSection(BrokerSection):
    ack_timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_in_flight: int = Field(default=64, ge=1, le=1000)


class TimeSeriesSection(_Strict):
    """An InfluxDB v2 write API (InfluxDB 2, or anything speaking /api/v2/write)."""

    url: str = Field(pattern=r"^https?://")
    token: str = ""
    org: str = "trygg"
    bucket: str = "trygg"
    batch_size: int = Field(default=10_000, ge=1, le=100_000)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    poll_s: float = Field(default=1.0, gt=0, le=60)


class ApiSection(_Strict):
    """The gateway's local HTTP API: /healthz and /metrics."""

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)


class Zigbee2MqttDevice(_Strict):
    transport: Literal["zigbee2mqtt"] = "zigbee2mqtt"
    id: str = Field(pattern=_NAME)
    type: DeviceType
    address: str = Field(min_length=1, max_length=256, description="friendly name in Zigbee2MQTT")
    home: str = Field(pattern=_NAME)
    resident: str | None = Field(default=None, pattern=_NAME)


class GatewayConfig(_Strict):
    gateway: GatewaySection
    store: StoreSection = StoreSection()
    zigbee2mqtt: Zigbee2MqttSection = Zigbee2MqttSection()
    uplink: UplinkSection = UplinkSection()
    timeseries: TimeSeriesSection | None = None
    api: ApiSection | None = None
    devices: list[Zigbee2MqttDevice] = []

    @model_validator(mode="after")
    def _unique_devices(self) -> GatewayConfig:
        for attr in ("id", "address"):
            seen: set[str] = set()
            for device in self.devices:
                value = getattr(device, attr)
                if value in seen:
                    raise ValueError(f"two devices have the same {attr} {value!r}")
                seen.add(value)
        return self


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{key}: {item['msg']}")
    return "; ".join(lines)


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from exc


def load_config(path: Path) -> GatewayConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    return parse_config(text, str(path))
