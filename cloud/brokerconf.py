"""The dispatch broker's configuration for mosquitto 2: a TLS listener, no anonymous
clients, one identity per gateway in a password file, and an ACL that keeps each
identity to its own topics (``trygg cloud broker-config``).

Who may do what (devices/wire.py names the topics):
  gateway <id>     publishes  trygg/v1/gw/<id>/{events,status,inventory,devices,results}
                   reads      trygg/v1/gw/<id>/{acks,commands}, trygg/v1/dispatch/status
  dispatch.<name>  reads      trygg/v1/gw/+/{events,status,inventory,devices,results}
                   publishes  trygg/v1/gw/+/{acks,commands}
                   both       trygg/v1/dispatch/status, trygg/v1/dispatch/changes

mosquitto reads a shared subscription (``$share/<group>/<filter>``) as its filter, so
the dispatch rules above cover the replicas' shared subscription. But mosquitto 2.0's
acl_file grants every SUBSCRIBE and checks read access only when it delivers: a gateway
that joined the replicas' group would receive nothing, yet be handed its share of the
events and have them dropped, so each would wait for its resend. Hence the group's name
is a secret of the dispatch identities (see dispatch_identities). A last will is an
ordinary publish by its client when it goes, so a gateway's retained "offline" is allowed
on its own status topic only. mosquitto rereads the password and ACL files on SIGHUP and
then applies them to the clients already connected: a removed gateway's connection is
closed (tests/test_broker_security.py shows it).

Rerunning keeps what it made before: the CA, the server certificate (unless its names no
longer cover ``--hostname``), and each dispatch identity's password.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devices.wire import (
    DISPATCH_CHANGES_TOPIC,
    DISPATCH_STATUS_TOPIC,
    TOPIC_ROOT,
)

from .credentials import DISPATCH_PREFIX, generate_password, mosquitto_hash

GATEWAY_PUBLISHES = ("events", "status", "inventory", "devices", "results")
GATEWAY_READS = ("acks", "commands")
DISPATCH_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"

CONF = "mosquitto.conf"
PASSWORDS = "passwords"
ACL = "acl"
CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"


@dataclass(frozen=True)
class Identity:
    """A broker login and its ACL lines (``topic read|write|readwrite <filter>``)."""

    username: str
    password_hash: str
    rules: tuple[str, ...]


def gateway_rules(gateway_id: str) -> tuple[str, ...]:
    own = f"{TOPIC_ROOT}/{gateway_id}"
    return (
        *(f"topic write {own}/{kind}" for kind in GATEWAY_PUBLISHES),
        *(f"topic read {own}/{kind}" for kind in GATEWAY_READS),
        f"topic read {DISPATCH_STATUS_TOPIC}",
    )


DISPATCH_RULES = (
    *(f"topic read {TOPIC_ROOT}/+/{kind}" for kind in GATEWAY_PUBLISHES),
    *(f"topic write {TOPIC_ROOT}/+/{kind}" for kind in GATEWAY_READS),
    f"topic readwrite {DISPATCH_STATUS_TOPIC}",
    f"topic readwrite {DISPATCH_CHANGES_TOPIC}",
)


def zigbee2mqtt_rules(base_topic: str = "zigbee2mqtt") -> tuple[str, ...]:
    """A home's local broker: Zigbee2MQTT itself, all of its own tree."""
    return (f"topic readwrite {base_topic}/#",)


def gateway_local_rules(base_topic: str = "zigbee2mqtt") -> tuple[str, ...]:
    """A home's local broker: the gateway reads every device (Zigbee2MQTT's and the
    native devices', docs/native-api.md) and alone may set one."""
    return (
        f"topic read {base_topic}/#",
        f"topic write {base_topic}/+/set",
        "topic read trygg/v1/dev/+/+",
    )


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class Listener:
    """Where and how the broker runs."""

    port: int = 8883
    host: str = "0.0.0.0"  # noqa: S104 (the dispatch broker serves the homes' gateways)
    data_dir: Path | None = None  # None: no persistence (tests); default: <out>/data
    persistence: bool = True
    max_queued: int = 100_000
    max_inflight: int = 20
    client_certificates: bool = False
    run_as: str | None = None  # mosquitto's ``user``: whom it runs as when started as root
    extra: Sequence[str] = field(default_factory=tuple)


class BrokerConfigError(Exception):
    """A broker-config input is missing or unusable; the message names it."""


def write_broker_config(
    out: Path, listener: Listener, tls: TlsFiles, identities: Iterable[Identity]
) -> Path:
    """Write mosquitto.conf, the password file and the ACL into ``out``; returns the conf."""
    out.mkdir(parents=True, exist_ok=True)
    people = sorted(identities, key=lambda i: i.username)
    passwords = "".join(f"{i.username}:{i.password_hash}\n" for i in people)
    _write(out / PASSWORDS, passwords, 0o640)
    acl = ["# Written by trygg cloud broker-config; rerun it rather than editing."]
    for identity in people:
        acl += ["", f"user {identity.username}", *identity.rules]
    _write(out / ACL, "\n".join(acl) + "\n", 0o640)
    conf = out / CONF
    _write(conf, _conf_text(out, listener, tls), 0o644)
    return conf


def _conf_text(out: Path, listener: Listener, tls: TlsFiles) -> str:
    lines = [
        "# Written by trygg cloud broker-config; rerun it rather than editing.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {out.resolve() / PASSWORDS}",
        f"acl_file {out.resolve() / ACL}",
        f"listener {listener.port} {listener.host}",
        f"cafile {tls.ca_cert.resolve()}",
        f"certfile {tls.server_cert.resolve()}",
        f"keyfile {tls.server_key.resolve()}",
        "tls_version tlsv1.2",  # the lowest accepted; 1.3 is taken when the client has it
    ]
    if listener.client_certificates:
        # The certificate's common name is the username (the gateway id, or dispatch.<name>).
        lines += ["require_certificate true", "use_identity_as_username true"]
    if listener.persistence:
        data = (listener.data_dir or out / "data").resolve()
        data.mkdir(parents=True, exist_ok=True)
        lines += ["persistence true", f"persistence_location {data}/"]
    else:
        lines.append("persistence false")
    lines += [
        f"max_queued_messages {listener.max_queued}",
        f"max_inflight_messages {listener.max_inflight}",
        # No Nagle delay for small packets (acks, alarms) on the alarm's path.
        "set_tcp_nodelay true",
    ]
    if listener.run_as is not None:
        lines.append(f"user {listener.run_as}")
    return "\n".join([*lines, *listener.extra]) + "\n"


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(mode)


# --- dispatch identities ---------------------------------------------------------------


def dispatch_identities(out: Path, names: Sequence[str]) -> list[Identity]:
    """``dispatch.<name>`` for each name, its password made once and kept in
    ``<out>/dispatch.<name>.env`` for the dispatch service to read: TRYGG_MQTT_USERNAME,
    TRYGG_MQTT_PASSWORD, TRYGG_MQTT_CA_FILE and TRYGG_MQTT_SHARED_GROUP.

    The shared-subscription group is a secret shared by the dispatch identities only:
    mosquitto grants any subscription and checks the ACL when it delivers, so a client
    in the replicas' group would be handed its share of the gateways' events and have
    them dropped there. Nobody outside can join a group whose name they cannot guess."""
    for name in names:
        if not re.match(DISPATCH_NAME, name):
            raise BrokerConfigError(f"--dispatch {name!r}: expected {DISPATCH_NAME}")
    envs = {name: out / f"{DISPATCH_PREFIX}{name}.env" for name in names}
    kept = [_kept(env) for env in envs.values() if env.exists()]
    group = next((k["TRYGG_MQTT_SHARED_GROUP"] for k in kept), f"trygg-{secrets.token_hex(16)}")
    identities = []
    for name, env in envs.items():
        username = f"{DISPATCH_PREFIX}{name}"
        if env.exists():
            password = _kept(env)["TRYGG_MQTT_PASSWORD"]
        else:
            password = generate_password()
            values = {
                "TRYGG_MQTT_USERNAME": username,
                "TRYGG_MQTT_PASSWORD": password,
                "TRYGG_MQTT_CA_FILE": str((out / CA_CERT).resolve()),
                "TRYGG_MQTT_SHARED_GROUP": group,
            }
            out.mkdir(parents=True, exist_ok=True)
            _write(env, "".join(f"{k}={v}\n" for k, v in values.items()), 0o600)
        identities.append(Identity(username, mosquitto_hash(password), DISPATCH_RULES))
    return identities


def _kept(env: Path) -> dict[str, str]:
    values = {}
    for line in env.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    for key in ("TRYGG_MQTT_PASSWORD", "TRYGG_MQTT_SHARED_GROUP"):
        if not values.get(key):
            raise BrokerConfigError(f"{env}: has no {key}; delete it to make a new one")
    return values


# --- TLS material ------------------------------------------------------------------------


def ensure_tls(
    out: Path,
    hostnames: Sequence[str],
    *,
    ca_cert: Path | None = None,
    server_cert: Path | None = None,
    server_key: Path | None = None,
) -> TlsFiles:
    """The deployment's own CA and server certificate when given (all three), otherwise a
    CA and a server certificate for ``hostnames`` made in ``out`` once and kept."""
    given = (ca_cert, server_cert, server_key)
    if any(given):
        if not all(given):
            raise BrokerConfigError("--ca-cert, --server-cert and --server-key go together")
        for option, path in zip(("--ca-cert", "--server-cert", "--server-key"), given, strict=True):
            assert path is not None
            if not path.is_file():
                raise BrokerConfigError(f"{option} {path}: no such file")
        assert ca_cert and server_cert and server_key
        return TlsFiles(ca_cert, server_cert, server_key)
    if not hostnames:
        raise BrokerConfigError("--hostname: name at least one host the gateways connect to")
    out.mkdir(parents=True, exist_ok=True)
    ca_key = _key(out / CA_KEY)
    ca = _ca(out / CA_CERT, ca_key)
    files = TlsFiles(out / CA_CERT, out / SERVER_CERT, out / SERVER_KEY)
    if not _covers(files.server_cert, ca, hostnames):
        key = _key(files.server_key, fresh=True)
        cert = _issue(ca, ca_key, key.public_key(), hostnames)
        files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def make_ca(cert: Path, key: Path) -> x509.Certificate:
    """A CA of its own (tests use one to play a stranger's broker or client)."""
    return _ca(cert, _key(key))


def _key(path: Path, *, fresh: bool = False) -> ec.EllipticCurvePrivateKey:
    if path.exists() and not fresh:
        loaded = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise BrokerConfigError(f"{path}: not an EC private key")
        return loaded
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


# A CA signs certificates and revocation lists, nothing else.
_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _ca(path: Path, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    if path.exists():
        return x509.load_pem_x509_certificate(path.read_bytes())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Trygg broker CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue_certificate(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    common_name: str,
    *,
    hostnames: Sequence[str] = (),
    client: bool = False,
) -> x509.Certificate:
    """A certificate signed by the CA: a server's for ``hostnames``, or a client's whose
    common name is its broker username (``use_identity_as_username``)."""
    now = datetime.now(UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if hostnames:
        names = [_general_name(h) for h in hostnames]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    hostnames: Sequence[str],
) -> x509.Certificate:
    return issue_certificate(ca, ca_key, public_key, hostnames[0], hostnames=hostnames)


def _covers(path: Path, ca: x509.Certificate, hostnames: Sequence[str]) -> bool:
    """Whether the kept server certificate is the CA's and names every host asked for."""
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.issuer != ca.subject:
        return False
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = set(names)
    return all(_general_name(h) in have for h in hostnames)
