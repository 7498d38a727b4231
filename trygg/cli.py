"""The ``trygg`` command: gateway, dispatch service, simulator and demo."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .devices_cli import devices_app
from .runner import LogLevel, configure_logging, leave, run_until_signal
from .sim_cli import sim_app

if TYPE_CHECKING:
    from cloud.security import Role

app = typer.Typer(
    help="Trygg: open welfare technology for home care. Alarms, sensors, GPS, cameras and locks.",
    no_args_is_help=True,
    add_completion=False,
)
gateway_app = typer.Typer(help="The on-premise gateway.", no_args_is_help=True)
cloud_app = typer.Typer(help="The central dispatch service.", no_args_is_help=True)
command_key_app = typer.Typer(
    help="The key the dispatch service signs commands with (docs/commands.md).",
    no_args_is_help=True,
)
cloud_app.add_typer(command_key_app, name="command-key")
app.add_typer(gateway_app, name="gateway")
gateway_app.add_typer(devices_app, name="devices")
app.add_typer(cloud_app, name="cloud")
app.add_typer(sim_app, name="sim")


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="port of the operator console and API")] = 8000,
    mqtt_port: Annotated[int, typer.Option(help="port of the embedded MQTT broker")] = 18830,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option(help="where the demo keeps its databases")] = Path(
        ".trygg-demo"
    ),
    homes: Annotated[int, typer.Option(min=1, max=200, help="simulated homes")] = 2,
    alarm_every: Annotated[
        float, typer.Option(min=1.0, help="seconds between alarms per home")
    ] = 45.0,
    keep: Annotated[bool, typer.Option(help="keep the previous demo's data")] = False,
    log_level: LogLevel = "info",
) -> None:
    """Run everything on this machine: simulated homes, gateway, dispatch and console."""
    from .demo import DemoOptions, run_demo

    configure_logging(log_level)
    options = DemoOptions(host, port, mqtt_port, data_dir, homes, alarm_every, fresh=not keep)
    asyncio.run(run_demo(options))
    leave()


@gateway_app.command("run")
def gateway_run(
    config: Annotated[Path, typer.Option("--config", "-c", help="gateway TOML file")] = Path(
        "gateway.toml"
    ),
    log_level: LogLevel = "info",
) -> None:
    """Run the gateway with a TOML configuration (README.md, "Gateway", has an example)."""
    from gateway import ConfigError, Gateway, load_config

    configure_logging(log_level)
    try:
        settings = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    asyncio.run(run_until_signal(Gateway(settings).run_forever()))


@gateway_app.command("check-config")
def gateway_check_config(
    config: Annotated[Path, typer.Option("--config", "-c", help="gateway TOML file")] = Path(
        "gateway.toml"
    ),
) -> None:
    """Validate a gateway configuration and list its devices."""
    from gateway import ConfigError, load_config

    try:
        settings = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{config}: gateway {settings.gateway.id}, {len(settings.devices)} devices")
    commands = settings.commands
    if commands.trusted_keys is None:
        typer.echo("  signed commands: refused (no [commands] trusted_keys_file)")
    else:
        keys = ", ".join(sorted(commands.trusted_keys.keys))
        typer.echo(f"  signed commands: from keys {keys} ({commands.trusted_keys_file})")
    for d in settings.devices:
        typer.echo(f"  {d.id:24} {d.type.value:14} {d.transport}:{d.address}  home={d.home}")


@gateway_app.command("verify-log")
def gateway_verify_log(
    config: Annotated[Path, typer.Option("--config", "-c", help="gateway TOML file")] = Path(
        "gateway.toml"
    ),
    store: Annotated[
        Path | None,
        typer.Option(help="a store file to check instead of the configured one (one moved aside)"),
    ] = None,
) -> None:
    """Check the hash chain of the gateway's lock log (docs/audit.md), read from its store
    file (the gateway may be running). Exit status 0: valid; 1: broken, with the first
    broken entry and what is wrong there."""
    from gateway import ConfigError, StoreError, load_config, verify_store_file

    if store is None:
        try:
            store = load_config(config).store.path
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    try:
        verdict = verify_store_file(store)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{store} lock log: {verdict.describe()}")
    if not verdict.valid:
        raise typer.Exit(1)


@gateway_app.command("broker-acl")
def gateway_broker_acl(
    config: Annotated[Path, typer.Option("--config", "-c", help="gateway TOML file")] = Path(
        "gateway.toml"
    ),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write the ACL here (default: print it)")
    ] = None,
    zigbee2mqtt_user: Annotated[
        str, typer.Option(help="the username Zigbee2MQTT connects with")
    ] = "zigbee2mqtt",
) -> None:
    """Write the ACL of the home's MQTT broker: only Zigbee2MQTT and this gateway may
    connect, and only the gateway may publish a device's /set (docs/security.md)."""
    from gateway import ConfigError, load_config
    from gateway.homebroker import HomeBrokerError, home_broker_acl, paired_devices

    try:
        settings = load_config(config)
        acl = home_broker_acl(
            settings,
            paired_devices(settings.store.path),
            zigbee2mqtt_user=zigbee2mqtt_user,
            source=str(config),
        )
    except (ConfigError, HomeBrokerError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if out is None:
        typer.echo(acl, nl=False)
        return
    out.write_text(acl)
    typer.echo(f"{out}: ACL for {settings.zigbee2mqtt.username} and {zigbee2mqtt_user}", err=True)


@cloud_app.command("run")
def cloud_run(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    log_level: LogLevel = "info",
) -> None:
    """Run the dispatch service (settings from TRYGG_* environment variables)."""
    from cloud import CloudSettings, create_app

    from .serve import make_server, stop_on_signals

    configure_logging(log_level)
    server = make_server(create_app(CloudSettings()), host, port)

    async def serve() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        task = asyncio.create_task(server.serve())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        server.should_exit = True
        await task

    asyncio.run(serve())
    leave()


def _role(role: str) -> Role:
    from cloud.security import Role

    try:
        return Role(role)
    except ValueError:
        typer.echo(f"error: --role must be one of {', '.join(r.value for r in Role)}", err=True)
        raise typer.Exit(2) from None


def _password_ok(password: str) -> None:
    if len(password) < 10:
        typer.echo("error: a password is at least 10 characters", err=True)
        raise typer.Exit(2)


@cloud_app.command("add-user")
def cloud_add_user(
    org: Annotated[str, typer.Argument(help="organisation id (created if new)")],
    username: str,
    role: Annotated[str, typer.Option(help="operator, supervisor, staff, technician or admin")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    exists_ok: Annotated[
        bool,
        typer.Option(help="a user of that name, organisation and role is fine (setup scripts)"),
    ] = False,
) -> None:
    """Create a user in an organisation. A name that exists is refused (nothing changes):
    set-password, set-role and disable-user change an existing user."""
    from cloud import CloudSettings
    from cloud.admin import admin_session, ensure_organisation, ensure_user, find_user
    from cloud.db import Organisation

    parsed_role = _role(role)
    _password_ok(password)

    async def add() -> list[str]:
        said = []
        async with admin_session(CloudSettings()) as session:
            existing = await find_user(session, username)
            same = existing is not None and (existing.org_id, existing.role) == (
                org,
                parsed_role.value,
            )
            if existing is not None and same and exists_ok:
                return [f"user {username} exists: {existing.role} in {org}; nothing changed"]
            if existing is not None:
                where = "" if existing.org_id == org else " (another organisation)"
                typer.echo(
                    f"error: user {username} exists: {existing.role} in {existing.org_id}{where};"
                    " nothing changed (set-password, set-role or disable-user change it)",
                    err=True,
                )
                raise typer.Exit(1)
            if await session.get(Organisation, org) is None:
                said.append(f"organisation {org} created")
            await ensure_organisation(session, org, org)
            await ensure_user(session, org, username, password, parsed_role)
            await session.commit()
        return [*said, f"user {username} created: {parsed_role.value} in {org}"]

    for line in asyncio.run(add()):
        typer.echo(line)


@cloud_app.command("set-password")
def cloud_set_password(
    username: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Give a user a new password; every session of theirs ends."""

    _password_ok(password)
    typer.echo(_change_user(username, password=password))


@cloud_app.command("set-role")
def cloud_set_role(
    username: str,
    role: Annotated[str, typer.Option(help="operator, supervisor, staff, technician or admin")],
) -> None:
    """Change a user's role; every session of theirs ends (they sign in again as it)."""

    parsed = _role(role)
    typer.echo(_change_user(username, role=parsed))


@cloud_app.command("disable-user")
def cloud_disable_user(username: str) -> None:
    """Stop a user signing in; every session of theirs ends (a live console within seconds)."""

    typer.echo(_change_user(username, disabled=True))


@cloud_app.command("enable-user")
def cloud_enable_user(username: str) -> None:
    """Let a disabled user sign in again."""

    typer.echo(_change_user(username, disabled=False))


def _change_user(username: str, **changes: Any) -> str:
    from cloud import CloudSettings
    from cloud.admin import admin_session, change_user, find_user

    async def run() -> str:
        async with admin_session(CloudSettings()) as session:
            user = await find_user(session, username)
            if user is None:
                typer.echo(f"error: no user {username}", err=True)
                raise typer.Exit(1)
            said = await change_user(session, user, **changes)
            await session.commit()
            return said

    return asyncio.run(run())


@cloud_app.command("set-organisation")
def cloud_set_organisation(
    org: Annotated[str, typer.Argument(help="organisation id")],
    show_tests: Annotated[
        bool | None,
        typer.Option(help="test alarms in the operators' queue (marked), or only for technicians"),
    ] = None,
    staff_may_take: Annotated[
        bool | None,
        typer.Option(help="staff on duty may take their team's unassigned alarms themselves"),
    ] = None,
    position_retention_days: Annotated[
        int | None,
        typer.Option(min=30, max=720, help="days residents' positions are kept (30-720)"),
    ] = None,
) -> None:
    """Change an organisation's settings; what is not given stays as it is. Prints them."""
    from cloud import CloudSettings
    from cloud.admin import admin_session
    from cloud.db import Organisation

    async def run() -> str:
        async with admin_session(CloudSettings()) as session:
            organisation = await session.get(Organisation, org)
            if organisation is None:
                typer.echo(f"error: no organisation {org}", err=True)
                raise typer.Exit(1)
            if show_tests is not None:
                organisation.show_tests = show_tests
            if staff_may_take is not None:
                organisation.staff_may_take = staff_may_take
            if position_retention_days is not None:
                organisation.position_retention_days = position_retention_days
            await session.commit()
            return (
                f"{org}: show_tests={str(organisation.show_tests).lower()} "
                f"staff_may_take={str(organisation.staff_may_take).lower()} "
                f"position_retention_days={organisation.position_retention_days}"
            )

    typer.echo(asyncio.run(run()))


@cloud_app.command("import-visits")
def cloud_import_visits(
    org: Annotated[str, typer.Argument(help="organisation id")],
    file: Annotated[Path, typer.Argument(help="CSV, one row per visit (see docs/staff.md)")],
    dry_run: Annotated[bool, typer.Option(help="check the file, write nothing")] = False,
) -> None:
    """Import planned visits from a planning system's CSV export. All or nothing: every
    problem is named with its line, and then nothing is written. A visit imported again
    (its visit_id) is updated."""
    from cloud import CloudSettings
    from cloud.admin import admin_session
    from cloud.audit import audit
    from cloud.clock import database_now
    from cloud.db import Organisation, User
    from cloud.visits import VisitFileError, import_visits, parse_visits

    try:
        raw = file.read_bytes()
    except OSError as exc:
        typer.echo(f"error: {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        typer.echo(f"error: {file}: not UTF-8 (save the export as UTF-8 CSV)", err=True)
        raise typer.Exit(2) from None

    async def run() -> str:
        async with admin_session(CloudSettings()) as session:
            organisation = await session.get(Organisation, org)
            if organisation is None:
                typer.echo(f"error: no organisation {org}", err=True)
                raise typer.Exit(1)
            try:
                rows = parse_visits(text, organisation.time_zone)
                done = await import_visits(
                    session, org, rows, "import-visits", await database_now(session)
                )
            except VisitFileError as exc:
                for problem in exc.problems:
                    typer.echo(f"{file}: {problem}", err=True)
                raise typer.Exit(1) from None
            said = (
                f"{len(rows)} visits: {done.created} new, {done.updated} changed, "
                f"{done.unchanged} unchanged"
            )
            if dry_run:
                await session.rollback()
                return f"{said} (dry run: nothing written)"
            by = User(org_id=org, username="import-visits", role="admin")
            detail = {"file": file.name, "created": done.created, "updated": done.updated}
            audit(session, by, "visit.import", f"org:{org}", detail)
            await session.commit()
            return said

    typer.echo(asyncio.run(run()))


@cloud_app.command("add-gateway")
def cloud_add_gateway(
    org: Annotated[str, typer.Argument(help="organisation id (created if new)")],
    gateway_id: str,
    name: Annotated[str, typer.Option(help="a name people recognise")] = "",
    bundle: Annotated[
        Path | None,
        typer.Option(help="write the gateway's broker credentials here (a new password each time)"),
    ] = None,
    broker_host: Annotated[str, typer.Option(help="the broker's name as gateways reach it")] = "",
    broker_port: Annotated[int, typer.Option(help="the broker's TLS port")] = 8883,
    ca_cert: Annotated[
        Path | None, typer.Option(help="the broker's CA certificate (broker-config's ca.crt)")
    ] = None,
    ca_file_on_gateway: Annotated[
        str, typer.Option(help="where the technician puts ca.crt on the gateway")
    ] = "/etc/trygg/ca.crt",
) -> None:
    """Register a gateway so that its events are accepted; with --bundle, issue its broker
    password (only its hash is kept) and write what the technician copies to the gateway.
    The broker learns of it at the next `trygg cloud broker-config` and reload."""
    from cloud import CloudSettings
    from cloud.admin import (
        admin_session,
        ensure_gateway,
        ensure_organisation,
        issue_broker_password,
    )
    from cloud.commandkeys import CommandKeyError, load_command_keys
    from cloud.credentials import GatewayBundle, write_bundle
    from cloud.db import Gateway, Organisation

    if bundle is not None and (not broker_host or ca_cert is None):
        typer.echo("error: --bundle needs --broker-host and --ca-cert", err=True)
        raise typer.Exit(2)
    trusted_keys = None
    if bundle is not None:
        try:
            keys = load_command_keys(CloudSettings(), allow_ephemeral=False)
        except CommandKeyError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        trusted_keys = keys.trusted_keys_json() if keys.trusted else None
        if trusted_keys is None:
            typer.echo("no command key configured: the bundle has no trusted keys", err=True)
    ca_pem = b""
    if ca_cert is not None:
        try:
            ca_pem = ca_cert.read_bytes()
        except OSError as exc:
            typer.echo(f"error: --ca-cert {ca_cert}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None

    async def add() -> tuple[str | None, list[str]]:
        said = []
        async with admin_session(CloudSettings()) as session:
            if gateway_id.startswith("direct-"):
                typer.echo(f"error: {gateway_id}: ids starting with direct- are reserved", err=True)
                raise typer.Exit(2)
            existing = await session.get(Gateway, gateway_id)
            if existing is not None and existing.org_id != org:
                typer.echo(
                    f"error: gateway {gateway_id} belongs to another organisation; nothing changed",
                    err=True,
                )
                raise typer.Exit(2)
            if await session.get(Organisation, org) is None:
                said.append(f"organisation {org} created")
            await ensure_organisation(session, org, org)
            gateway = await ensure_gateway(session, org, gateway_id, name or gateway_id)
            if existing is None:
                said.append(f"gateway {gateway_id} registered in {org} ({gateway.name})")
            else:
                if name and name != gateway.name:
                    said.append(f"gateway {gateway_id} renamed: {gateway.name!r} -> {name!r}")
                    gateway.name = name
                elif bundle is None:
                    said.append(f"gateway {gateway_id} is registered in {org}: nothing changed")
            password = None if bundle is None else await issue_broker_password(session, gateway)
            if password is not None and existing is not None:
                said.append(f"gateway {gateway_id}: a new broker password (the old one ends)")
            await session.commit()
            return password, said

    password, said = asyncio.run(add())
    for line in said:
        typer.echo(line)
    if bundle is not None and password is not None:
        written = write_bundle(
            bundle,
            GatewayBundle(
                gateway_id,
                password,
                broker_host,
                broker_port,
                ca_pem,
                ca_file_on_gateway,
                trusted_keys=trusted_keys,
            ),
        )
        typer.echo(f"bundle for the technician: {', '.join(str(p) for p in written)}")
        typer.echo("rerun `trygg cloud broker-config` and reload the broker to let it in")


@cloud_app.command("verify-log")
def cloud_verify_log(
    org: Annotated[
        str | None, typer.Option(help="one organisation's logs (default: every organisation's)")
    ] = None,
) -> None:
    """Check the hash chains of the audit log and of every lock's log (docs/audit.md): each
    chain is valid, or its first broken entry is named with what is wrong there (altered,
    missing, out of order). Exit status 0: every chain valid; 1: one is broken."""
    from cloud import CloudSettings
    from cloud.admin import ChainReport, admin_session, verify_logs

    async def check() -> list[ChainReport]:
        async with admin_session(CloudSettings()) as session:
            return await verify_logs(session, org)

    try:
        reports = asyncio.run(check())
    except LookupError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None
    for report in reports:
        typer.echo(f"{report.org_id} {report.chain}: {report.verdict.describe()}")
    broken = [r for r in reports if not r.verdict.valid]
    if broken:
        typer.echo(f"{len(broken)} of {len(reports)} chains broken", err=True)
        raise typer.Exit(1)


@command_key_app.command("new")
def command_key_new(
    out: Annotated[Path, typer.Option(help="the new key's file (never overwritten)")],
) -> None:
    """Make a new signing key (PKCS8 PEM, readable by its owner only) and, beside it in
    OUT.pub, its public key for TRYGG_COMMAND_TRUSTED_KEY_FILES during a rotation."""
    from cloud.commandkeys import CommandKeyError, new_key_file, public_pem

    public = out.with_name(out.name + ".pub")
    if public.exists():
        typer.echo(f"error: {public} exists already: not overwritten", err=True)
        raise typer.Exit(2)
    try:
        key_id = new_key_file(out)
        public.write_bytes(public_pem(out))
    except CommandKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{out}: command key {key_id} (public key in {public})")


@command_key_app.command("public")
def command_key_public(
    key: Annotated[Path, typer.Option(help="a signing key file (PKCS8 PEM)")],
    out: Annotated[Path, typer.Option(help="where to write its public key (PEM)")],
) -> None:
    """Write a signing key's public key, for TRYGG_COMMAND_TRUSTED_KEY_FILES (a rotation)."""
    from cloud.commandkeys import CommandKeyError, public_pem

    try:
        out.write_bytes(public_pem(key))
    except CommandKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{out}: public key of {key}")


@command_key_app.command("export")
def command_key_export(
    out: Annotated[Path, typer.Option(help="the trusted keys file to write for gateways")],
) -> None:
    """Write the trusted keys file gateways load ([commands] trusted_keys_file): the key of
    TRYGG_COMMAND_KEY_FILE and those of TRYGG_COMMAND_TRUSTED_KEY_FILES."""
    from cloud.commandkeys import CommandKeyError, export_trusted_keys
    from cloud.settings import CommandKeySettings
    from devices.wire import key_id_of

    try:
        keys = export_trusted_keys(CommandKeySettings(), out)
    except CommandKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    ids = ", ".join(key_id_of(raw) for raw in keys.trusted)
    typer.echo(f"{out}: {len(keys.trusted)} trusted key(s): {ids}")


@cloud_app.command("push-key")
def cloud_push_key(
    out: Annotated[Path, typer.Option(help="the new key's file (never overwritten)")],
) -> None:
    """Make the VAPID key Web Push to staff phones is signed with (EC P-256, PKCS8 PEM,
    readable by its owner only), for TRYGG_VAPID_KEY_FILE (docs/staff.md)."""
    from cloud.vapid import VapidKeyError, new_vapid_key_file

    try:
        public = new_vapid_key_file(out)
    except VapidKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{out}: VAPID key, public key {public}")


@cloud_app.command("remove-gateway")
def cloud_remove_gateway(
    org: Annotated[str, typer.Argument(help="organisation id")],
    gateway_id: str,
) -> None:
    """Forget a gateway; its broker access ends at the next broker-config and reload."""
    from cloud import CloudSettings
    from cloud.admin import admin_session, remove_gateway

    async def remove() -> bool:
        async with admin_session(CloudSettings()) as session:
            removed = await remove_gateway(session, org, gateway_id)
            await session.commit()
            return removed

    if not asyncio.run(remove()):
        typer.echo(f"error: {org} has no gateway {gateway_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"gateway {gateway_id} removed from {org}")
    typer.echo("rerun `trygg cloud broker-config` and reload the broker (SIGHUP) to shut it out")


@cloud_app.command("broker-config")
def cloud_broker_config(
    out: Annotated[Path, typer.Option(help="directory for the broker's files")],
    hostname: Annotated[
        list[str] | None,
        typer.Option(help="a name or address gateways reach the broker by (repeatable)"),
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="the TLS listener's port")] = 8883,
    listen: Annotated[str, typer.Option(help="the address the broker listens on")] = "0.0.0.0",  # noqa: S104
    ca_cert: Annotated[Path | None, typer.Option(help="your CA certificate")] = None,
    server_cert: Annotated[Path | None, typer.Option(help="your server certificate")] = None,
    server_key: Annotated[Path | None, typer.Option(help="your server key")] = None,
    dispatch: Annotated[
        list[str] | None,
        typer.Option(help="a dispatch identity dispatch.NAME (repeatable; default: main)"),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="the broker's persistence directory (default OUT/data)")
    ] = None,
    client_certificates: Annotated[
        bool, typer.Option(help="require client certificates; their common name is the user")
    ] = False,
    run_as: Annotated[
        str | None, typer.Option(help="the user mosquitto runs as when started as root")
    ] = None,
) -> None:
    """Write the dispatch broker's mosquitto.conf, password file and ACL (every registered
    gateway, the dispatch identities) and, unless given, a CA and server certificate.
    Rerun it after adding or removing a gateway, then reload mosquitto (SIGHUP)."""
    from cloud import CloudSettings
    from cloud.admin import write_deployment_broker
    from cloud.brokerconf import BrokerConfigError, Listener

    listener = Listener(
        port=port,
        host=listen,
        data_dir=data_dir,
        client_certificates=client_certificates,
        run_as=run_as,
    )
    try:
        conf = asyncio.run(
            write_deployment_broker(
                CloudSettings(),
                out,
                listener,
                hostname or [],
                dispatch or ["main"],
                (ca_cert, server_cert, server_key),
            )
        )
    except BrokerConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {conf} and its password file and ACL; dispatch logins in {out}/*.env")
