"""The dispatch service's settings, read once from the environment (``TRYGG_*``)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from devices.brokertls import check_link, readable_file

DEVELOPMENT_SECRET = "development-only-secret-change-me-0000000000"  # noqa: S105
# Secrets that were ever shipped in this repository: never accepted outside development.
PUBLISHED_SECRETS = frozenset({"", DEVELOPMENT_SECRET, "compose-development-secret-0000000000"})
# Web Push: the contact a push service may write to about our pushes (RFC 8292 "sub"), in
# the forms push services (and py_vapid) accept: mailto: an address, or an https origin.
_DOMAIN = r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
VAPID_SUBJECT = rf"^(mailto:[^@\s]+@{_DOMAIN}|https://{_DOMAIN})$"
DEVELOPMENT_VAPID_SUBJECT = "mailto:development@trygg.invalid"
# The browsers' own push services (Chrome/Android, Firefox, Edge, Safari): a subscription
# names one of these hosts (or a subdomain), so staff cannot make the service post anywhere.
PUSH_SERVICE_HOSTS = (
    "fcm.googleapis.com,push.services.mozilla.com,notify.windows.com,push.apple.com"
)


class CommandKeySettings(BaseSettings):
    """What the command keys need (cloud/commandkeys.py): enough for ``trygg cloud
    command-key`` on a machine that holds none of the service's other secrets."""

    model_config = SettingsConfigDict(env_prefix="TRYGG_", extra="ignore")

    # Development must be asked for: a deployment that forgets this runs as production and
    # so refuses to start without secrets of its own.
    environment: Literal["development", "production"] = "production"
    # Signed commands (cloud/commands.py, docs/commands.md): the Ed25519 key commands are
    # signed with (PKCS8 PEM). Without it, commands are off (in development, a key of
    # this process's own is made). The trusted key files (public PEM, comma-separated)
    # are exported to gateways beside it: a key being rotated in or out.
    command_key_file: Path | None = None
    command_trusted_key_files: str = Field(default="", max_length=4096)

    @property
    def command_trusted_key_paths(self) -> list[Path]:
        return [Path(p.strip()) for p in self.command_trusted_key_files.split(",") if p.strip()]


class CloudSettings(CommandKeySettings):
    database_url: str = "sqlite+aiosqlite:///./trygg-cloud.db"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    # TLS (1.2+) when a CA is given or TRYGG_MQTT_TLS is true: the broker's certificate is
    # checked against the CA; a client certificate is presented when one is set. Plain
    # TCP only to a loopback broker (development).
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    mqtt_tls: bool | None = None
    # Each replica needs its own, stable across its restarts (it keeps a broker session).
    mqtt_client_id: str = Field(default_factory=lambda: f"trygg-cloud-{socket.gethostname()}")
    # Replicas in one group share the gateways' messages (MQTT shared subscriptions);
    # empty: this replica takes them all.
    mqtt_shared_group: str = Field(default="trygg-dispatch", pattern=r"^[A-Za-z0-9_-]{0,64}$")
    # Signs access tokens; no default outside development (the development one is public).
    secret_key: str = Field(default="", max_length=512)
    token_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 86400)
    # The operator's map: a tile server (a municipality's own), as a URL template with
    # {z}/{x}/{y}; none: the map draws zones, positions and homes on a plain background.
    map_tile_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s'\"]+\{z\}[^\s'\"]*$", max_length=500
    )
    map_attribution: str = Field(default="", max_length=300)
    # Roles that always sign in with a second factor (cloud/signin.py), comma-separated;
    # an organisation may ask it of everyone besides.
    second_factor_roles: str = Field(
        default="admin,supervisor,staff", pattern=r"^[a-z]*(,[a-z]+)*$"
    )
    # How often to look for gateways silent past two heartbeat intervals.
    supervision_every_s: float = Field(default=5.0, gt=0, le=60)
    # Escalation (cloud/escalation.py): how long an alarm may wait at each stage.
    escalate_unclaimed_critical_s: int = Field(default=30, ge=1, le=86400)
    escalate_unclaimed_high_s: int = Field(default=120, ge=1, le=86400)
    escalate_unassigned_s: int = Field(default=300, ge=1, le=86400)
    escalate_not_on_site_s: int = Field(default=1800, ge=1, le=86400)
    escalation_every_s: float = Field(default=1.0, gt=0, le=60)
    escalation_webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    # GET /metrics (cloud/metrics.py): with a token, for whoever sends it; without, this
    # host only.
    metrics_token: str | None = Field(default=None, min_length=16, max_length=200)
    # The time-series store's PromQL query API (VictoriaMetrics: http://host:8428), where
    # the gateways write readings: a device's readings in the technician console
    # (cloud/readings.py). None: the console says no store is configured.
    readings_query_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    readings_query_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # A clock (this host's, or the database's) that moves more than this much more or
    # less than monotonic time between two looks a second apart has been stepped.
    clock_step_limit_s: float = Field(default=2.0, gt=0, le=3600)
    # Repeated events from one device within this time join its open alarm (a count).
    alarm_merge_window_s: int = Field(default=600, ge=0, le=86400)
    # A command with no final result this long after it expired is marked expired; more
    # than the clock difference a gateway accepts (devices.wire.COMMAND_CLOCK_SKEW_S).
    command_expiry_grace_s: float = Field(default=45.0, ge=0, le=3600)
    command_sweep_every_s: float = Field(default=1.0, gt=0, le=60)
    # How often to look for doors to lock again after a visit or an alarm (cloud/doors.py).
    door_watch_every_s: float = Field(default=5.0, gt=0, le=300)
    # How often positions past the organisation's retention are removed (cloud/retention.py).
    retention_every_s: float = Field(default=3600.0, gt=0, le=86400)
    # Web Push to staff phones (cloud/push.py, docs/staff.md): the service's VAPID key (an
    # EC P-256 private key, PEM; `trygg cloud push-key --out FILE` makes one) and the
    # contact push services see. Without a key, production sends no pushes; development
    # makes a key of this process's own (subscriptions made with it end at its restart).
    vapid_key_file: Path | None = None
    vapid_subject: str = Field(default="", max_length=200, pattern=VAPID_SUBJECT + "|^$")
    # Host names (each also its subdomains) a subscription's endpoint may name.
    push_service_hosts: str = Field(
        default=PUSH_SERVICE_HOSTS, max_length=2000, pattern=r"^[a-z0-9.-]+(,[a-z0-9.-]+)*$"
    )
    # Endpoints on this machine (http or https), for tests only: refused in production.
    push_allow_loopback: bool = False
    # How long a push service keeps a push for a phone that is off (the assignment is
    # escalated long before it would matter), how long one push may take, and how many
    # assignments wait to be pushed (past that the oldest waiting is dropped, counted).
    push_ttl_s: int = Field(default=1800, ge=0, le=86400)
    push_timeout_s: float = Field(default=10.0, gt=0, le=120)
    push_queue_size: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file")
    @classmethod
    def _readable(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is None:
            return None
        try:
            return readable_file(path)
        except ValueError as exc:
            raise ValueError(f"TRYGG_{str(info.field_name).upper()}: {exc}") from None

    @model_validator(mode="after")
    def _secure_broker_link(self) -> CloudSettings:
        try:
            self.mqtt_uses_tls  # noqa: B018 (checks the combination)
        except ValueError as exc:
            keys = "TRYGG_MQTT_HOST / TRYGG_MQTT_TLS / TRYGG_MQTT_CA_FILE"
            raise ValueError(f"{keys}: {exc}") from None
        return self

    @property
    def mqtt_uses_tls(self) -> bool:
        s = self
        return check_link(
            s.mqtt_host, s.mqtt_tls, s.mqtt_ca_file, s.mqtt_cert_file, s.mqtt_key_file
        )

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> CloudSettings:
        if not self.secret_key and self.environment == "development":
            self.secret_key = DEVELOPMENT_SECRET
        if self.environment == "production" and self.secret_key in PUBLISHED_SECRETS:
            raise ValueError(
                "TRYGG_SECRET_KEY must be set to a secret of your own "
                "(TRYGG_ENVIRONMENT=development allows the public development one)"
            )
        if len(self.secret_key) < 32:
            raise ValueError("TRYGG_SECRET_KEY must be at least 32 characters")
        return self

    @model_validator(mode="after")
    def _push_contact_and_endpoints(self) -> CloudSettings:
        if self.environment == "development":
            self.vapid_subject = self.vapid_subject or DEVELOPMENT_VAPID_SUBJECT
            return self
        if self.push_allow_loopback:
            raise ValueError("TRYGG_PUSH_ALLOW_LOOPBACK is for tests and development only")
        own_contact = self.vapid_subject not in ("", DEVELOPMENT_VAPID_SUBJECT)
        if self.vapid_key_file is not None and not own_contact:
            raise ValueError(
                "TRYGG_VAPID_SUBJECT must be a contact of your own (mailto:someone@your.domain"
                " or https://your.domain) when TRYGG_VAPID_KEY_FILE is set"
            )
        return self

    @property
    def push_hosts(self) -> tuple[str, ...]:
        return tuple(h.strip(".") for h in self.push_service_hosts.split(",") if h.strip("."))
