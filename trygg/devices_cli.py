"""``trygg gateway devices``: what a technician does at an installation, through the
running gateway's local API (its [api] section): list devices with their last
check-in, battery and signal; see what was heard but not paired; pair; remove."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

devices_app = typer.Typer(
    help="Devices of a running gateway: list, pair, remove, discovered.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="the gateway's TOML file (for its [api] section)")
]
UrlOption = Annotated[
    str | None, typer.Option(help="the gateway API's base URL, instead of reading --config")
]
TokenOption = Annotated[
    str | None,
    typer.Option(envvar="TRYGG_TECHNICIAN_TOKEN", help="the [api] technician_token, if one is set"),
]


class _Api:
    def __init__(self, config: Path, url: str | None, token: str | None) -> None:
        if url is None or token is None:
            from gateway import ConfigError, load_config

            try:
                settings = load_config(config)
            except ConfigError as exc:
                if url is None:
                    typer.echo(f"error: {exc}", err=True)
                    raise typer.Exit(2) from None
            else:
                api = settings.api
                if url is None:
                    if api is None:
                        typer.echo(f"error: {config} has no [api] section", err=True)
                        raise typer.Exit(2)
                    wildcard = api.host in ("0.0.0.0", "::")  # noqa: S104 - a comparison
                    host = "127.0.0.1" if wildcard else api.host
                    url = f"http://{host}:{api.port}"
                if token is None and api is not None:
                    token = api.technician_token
        assert url is not None
        if not url.startswith(("http://", "https://")):
            typer.echo(f"error: {url!r} is not an http(s) URL", err=True)
            raise typer.Exit(2)
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        # The scheme was checked to be http(s) when the URL was taken.
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail", exc.reason)
            except ValueError:
                detail = exc.reason
            typer.echo(f"error: {detail} (HTTP {exc.code})", err=True)
            raise typer.Exit(1) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            typer.echo(
                f"error: the gateway API at {self.url} is not answering ({reason}); "
                "is the gateway running, with an [api] section?",
                err=True,
            )
            raise typer.Exit(1) from None
        return json.loads(raw) if raw else None


def _signal(device: dict[str, Any]) -> str:
    if device.get("rssi_dbm") is not None:
        return f"{device['rssi_dbm']:.0f} dBm"
    if device.get("linkquality") is not None:
        return f"lqi {device['linkquality']:.0f}"
    return "-"


def _state(device: dict[str, Any]) -> str:
    if device.get("radio_lost"):
        return "RADIO LOST"
    if device.get("silent"):
        return "SILENT"
    return "ok" if device.get("last_seen") else "not heard yet"


@devices_app.command("list")
def list_devices(
    config: ConfigOption = Path("gateway.toml"),
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every device with its last check-in, battery, signal and firmware."""
    devices = _Api(config, url, token).call("GET", "/devices")
    if as_json:
        typer.echo(json.dumps(devices, indent=2))
        return
    typer.echo(
        f"{'ID':22} {'TYPE':13} {'TRANSPORT:ADDRESS':34} {'HOME':10} {'LAST SEEN':20} "
        f"{'BATT':>5} {'SIGNAL':>9} {'FIRMWARE':12} STATE"
    )
    for d in devices:
        seen = (d.get("last_seen") or "-")[:19]
        battery = "-" if d.get("battery_pct") is None else f"{d['battery_pct']:.0f}%"
        where = f"{d['transport']}:{d['address']}"
        typer.echo(
            f"{d['id']:22} {d['type']:13} {where:34} {d['home']:10} {seen:20} {battery:>5} "
            f"{_signal(d):>9} {(d.get('firmware') or '-'):12} {_state(d)}"
        )


@devices_app.command("show")
def show_device(
    device_id: str,
    config: ConfigOption = Path("gateway.toml"),
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """One device, everything the gateway knows of it, as JSON."""
    typer.echo(json.dumps(_Api(config, url, token).call("GET", f"/devices/{device_id}"), indent=2))


@devices_app.command("discovered")
def discovered(
    config: ConfigOption = Path("gateway.toml"),
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Devices the gateway heard but that are not paired: candidates to pair."""
    found = _Api(config, url, token).call("GET", "/devices/discovered")
    if not found:
        typer.echo("nothing heard from unpaired devices")
        return
    typer.echo(f"{'TRANSPORT':12} {'ADDRESS':36} {'LAST SEEN':20} MESSAGES")
    for d in found:
        typer.echo(
            f"{d['transport']:12} {d['address']:36} {d['last_seen'][:19]:20} {d['messages']}"
        )


@devices_app.command("pair")
def pair(
    device_id: Annotated[str, typer.Option("--id", help="a name for the device, unique here")],
    device_type: Annotated[str, typer.Option("--type", help="alarm_button, smoke, ...")],
    transport: Annotated[
        str, typer.Option(help="zigbee2mqtt, ble, ble_lock, radio, nmea or camera")
    ],
    home: Annotated[str, typer.Option(help="the home's id")],
    address: Annotated[
        str | None, typer.Option(help="friendly name (zigbee2mqtt) or MAC address (BLE)")
    ] = None,
    resident: Annotated[str | None, typer.Option(help="the resident's id")] = None,
    bindkey: Annotated[
        str | None, typer.Option(envvar="TRYGG_BINDKEY", help="BTHome key, 32 hex characters")
    ] = None,
    port: Annotated[str | None, typer.Option(help="[[serial]] port name (radio, nmea)")] = None,
    radio_address: Annotated[
        str | None, typer.Option(help="the radio device's address, e.g. 0x00A1B2C3")
    ] = None,
    camera_url: Annotated[str | None, typer.Option("--camera-url", help="RTSP/MJPEG URL")] = None,
    checkin_s: Annotated[
        int | None, typer.Option(help="check-in interval, instead of the type's")
    ] = None,
    config: ConfigOption = Path("gateway.toml"),
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Pair a device: the gateway starts listening to it at once and keeps it paired."""
    body: dict[str, object] = {
        "id": device_id,
        "type": device_type,
        "transport": transport,
        "home": home,
    }
    optional: dict[str, object | None] = {
        "address": address,
        "resident": resident,
        "bindkey": bindkey,
        "port": port,
        "url": camera_url,
        "checkin_s": checkin_s,
    }
    if radio_address is not None:
        try:
            optional["radio_address"] = int(radio_address, 0)
        except ValueError:
            typer.echo(f"error: --radio-address {radio_address!r} is not a number", err=True)
            raise typer.Exit(2) from None
    body.update({k: v for k, v in optional.items() if v is not None})
    device = _Api(config, url, token).call("POST", "/devices", body)
    typer.echo(f"paired {device['id']} ({device['transport']}:{device['address']})")


@devices_app.command("remove")
def remove(
    device_id: str,
    config: ConfigOption = Path("gateway.toml"),
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Unpair a device that was paired here (devices in the config file stay)."""
    _Api(config, url, token).call("DELETE", f"/devices/{device_id}")
    typer.echo(f"removed {device_id}")


__all__ = ["devices_app"]


@devices_app.command("credential")
def credential(
    device_id: Annotated[str, typer.Argument(help="the native device's id")],
) -> None:
    """A new credential for a native device (docs/native-api.md): the token goes into
    the device (and into the home broker's password file, for MQTT); only its SHA-256
    goes into the gateway's configuration, as the device's credential_sha256."""
    import secrets

    from devices.codecs.native import credential_digest

    token = secrets.token_urlsafe(32)
    typer.echo(f"credential (give it to the device, then forget it): {token}")
    typer.echo(f'credential_sha256 = "{credential_digest(token)}"')
    typer.echo(
        f"for MQTT on the home broker: mosquitto_passwd -b <password file> {device_id} <credential>"
    )
