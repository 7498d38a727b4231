"""``trygg sim``: simulated devices on their real transports, scenarios, and load."""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .runner import LogLevel, configure_logging, run_until_signal

if TYPE_CHECKING:
    from trygg_sim.broker import BrokerLogin
    from trygg_sim.play import Wiring
    from trygg_sim.scenario import Scenario

sim_app = typer.Typer(
    help="Simulated devices speaking the real transports: scenarios, demo homes and load.",
    no_args_is_help=True,
)

Host = Annotated[str, typer.Option(help="MQTT broker (the one the gateway listens to)")]
Port = Annotated[int, typer.Option(help="MQTT broker port", min=1, max=65535)]
BlePort = Annotated[
    int, typer.Option(help="UDP port of the gateway's BLE sim backend (its ble.sim_port)")
]
GattPort = Annotated[
    int,
    typer.Option(
        help="TCP port the simulated BLE locks' GATT is served on (its ble.sim_gatt_port)"
    ),
]
SerialDir = Annotated[Path, typer.Option(help="where the simulated serial ports are linked")]
CameraPort = Annotated[int, typer.Option(help="HTTP port of the first simulated camera")]
NativePort = Annotated[
    int,
    typer.Option(help="the gateway API's port, where GPS watches post (its [api] port)"),
]
ScenarioArg = Annotated[
    str, typer.Argument(help="a shipped scenario (see 'trygg sim list') or a scenario file")
]
SERIAL_DIR = Path(tempfile.gettempdir()) / "trygg-sim"
# A secured broker (``trygg cloud broker-config``, or a home's) wants a login and TLS.
MqttUsername = Annotated[
    str | None, typer.Option(help="the simulator's broker username (e.g. zigbee2mqtt)")
]
MqttPassword = Annotated[
    str | None, typer.Option(envvar="TRYGG_SIM_MQTT_PASSWORD", help="(or TRYGG_SIM_MQTT_PASSWORD)")
]
MqttCaFile = Annotated[
    Path | None, typer.Option(help="the broker's CA certificate: connect with TLS")
]


def _login(username: str | None, password: str | None, ca_file: Path | None) -> BrokerLogin:
    from trygg_sim.broker import BrokerLogin

    if ca_file is not None and not ca_file.is_file():
        typer.echo(f"error: --mqtt-ca-file {ca_file}: no such file", err=True)
        raise typer.Exit(2)
    return BrokerLogin(username, password, ca_file)


def _wiring(
    host: str,
    port: int,
    ble_port: int,
    serial_dir: Path,
    camera_port: int,
    login: BrokerLogin | None = None,
    gatt_port: int = 9751,
    native_port: int = 8081,
) -> Wiring:
    from trygg_sim.broker import ANONYMOUS
    from trygg_sim.play import Wiring

    return Wiring(
        broker_host=host,
        broker_port=port,
        ble_port=ble_port,
        ble_gatt_port=gatt_port,
        serial_dir=serial_dir,
        camera_port=camera_port,
        login=login or ANONYMOUS,
        native_port=native_port,
    )


def _scenario(name: str) -> Scenario:
    from trygg_sim.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(name)
    except ScenarioError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@sim_app.command("list")
def sim_list() -> None:
    """The scenarios that come with Trygg, and the alarms each expects."""
    from trygg_sim.scenario import load_scenario, shipped

    for name in sorted(shipped()):
        scenario = load_scenario(name)
        minutes = scenario.duration.total_seconds() / 60
        typer.echo(f"{name:14} {scenario.name}: {scenario.description}")
        typer.echo(
            f"{'':14} {scenario.start}-{scenario.end} ({minutes:.0f} min at {scenario.speed:g}x), "
            f"{len(scenario.device)} devices, {len(scenario.step)} steps"
        )
        for expect in scenario.expect:
            times = f" x{expect.count}" if expect.count > 1 else ""
            typer.echo(f"{'':14}   expects {expect.kind} from {expect.device}{times}")


@sim_app.command("config")
def sim_config(
    scenario: Annotated[
        str | None, typer.Argument(help="a shipped scenario or a scenario file")
    ] = None,
    load_homes: Annotated[
        int | None, typer.Option(help="instead of a scenario: the homes of 'sim load'", min=1)
    ] = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    ble_port: BlePort = 9750,
    gatt_port: GattPort = 9751,
    serial_dir: SerialDir = SERIAL_DIR,
    camera_port: CameraPort = 8554,
    native_port: NativePort = 8081,
    speed: Annotated[
        float | None,
        typer.Option(help="the speed 'sim run' will play at (home rules' timers scale with it)"),
    ] = None,
    gateway_id: Annotated[str, typer.Option(help="the gateway's id")] = "gw-sim",
    store: Annotated[Path, typer.Option(help="the gateway's store")] = Path("trygg-gateway.db"),
    out: Annotated[Path | None, typer.Option(help="write here instead of printing")] = None,
    gateway_username: Annotated[
        str | None, typer.Option(help="the gateway's login on a secured broker")
    ] = None,
    gateway_password: Annotated[
        str | None,
        typer.Option(envvar="TRYGG_SIM_GATEWAY_PASSWORD", help="(or TRYGG_SIM_GATEWAY_PASSWORD)"),
    ] = None,
    gateway_ca_file: Annotated[
        Path | None, typer.Option(help="the broker's CA certificate: the gateway uses TLS")
    ] = None,
) -> None:
    """Write the gateway configuration that hears a scenario's devices (or a load's)."""
    from trygg_sim.play import gateway_config, to_toml

    wiring = _wiring(
        host, port, ble_port, serial_dir, camera_port, gatt_port=gatt_port, native_port=native_port
    )
    given = {
        "username": gateway_username,
        "password": gateway_password,
        "ca_file": None if gateway_ca_file is None else str(gateway_ca_file),
    }
    me = {key: value for key, value in given.items() if value is not None}
    if (scenario is None) == (load_homes is None):
        typer.echo("error: give a scenario or --load-homes, not both or neither", err=True)
        raise typer.Exit(2)
    if scenario is not None:
        played = _scenario(scenario)
        config = gateway_config(
            played, wiring, gateway_id=gateway_id, store=store, speed=speed, gateway_login=me
        )
        header = f"Gateway for the scenario '{played.name}' (trygg sim config {scenario})."
    else:
        from trygg_sim.load import LoadPlan

        assert load_homes is not None
        config = {
            "gateway": {"id": gateway_id},
            "store": {"path": str(store)},
            "zigbee2mqtt": {"host": host, "port": port, **me},
            "uplink": {"host": host, "port": port, **me},
            "devices": LoadPlan(homes=load_homes).gateway_devices(),
        }
        header = f"Gateway for 'trygg sim load --homes {load_homes}'."
    text = to_toml(config, header + "\nRun it with: trygg gateway run -c <this file>")
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}", err=True)


@sim_app.command("run")
def sim_run(
    scenario: ScenarioArg,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    ble_port: BlePort = 9750,
    gatt_port: GattPort = 9751,
    serial_dir: SerialDir = SERIAL_DIR,
    camera_port: CameraPort = 8554,
    native_port: NativePort = 8081,
    speed: Annotated[
        float | None, typer.Option(help="times faster than real time (default: the scenario's)")
    ] = None,
    wait: Annotated[
        float, typer.Option(help="seconds between plugging the devices in and the first step")
    ] = 3.0,
    cloud: Annotated[
        str | None,
        typer.Option(help="dispatch service URL: check it received exactly the expected alarms"),
    ] = None,
    user: Annotated[str, typer.Option(help="who signs in to the dispatch service")] = "operator",
    settle: Annotated[
        float, typer.Option(min=0, help="seconds to wait for the alarms to arrive")
    ] = 15.0,
    password: Annotated[
        str | None, typer.Option(envvar="TRYGG_PASSWORD", help="(or TRYGG_PASSWORD)")
    ] = None,
    mqtt_username: MqttUsername = None,
    mqtt_password: MqttPassword = None,
    mqtt_ca_file: MqttCaFile = None,
    log_level: LogLevel = "info",
) -> None:
    """Play a scenario against a gateway (configured by 'trygg sim config').

    Give both commands the same options. With --cloud, then check that the dispatch
    service holds exactly the expected alarms; exit 1 if not."""
    from trygg_sim.play import ScenarioRun

    configure_logging(log_level)
    played = _scenario(scenario)
    login = _login(mqtt_username, mqtt_password, mqtt_ca_file)
    wiring = _wiring(host, port, ble_port, serial_dir, camera_port, login, gatt_port, native_port)
    if cloud is not None and password is None:
        password = typer.prompt(f"password for {user}", hide_input=True)
    started = datetime.now(UTC)

    async def play() -> None:
        async with ScenarioRun(played, wiring, speed=speed, on_step=typer.echo) as run:
            typer.echo(
                f"{played.name}: devices plugged in ({_where(played, wiring)}); "
                f"first step in {wait:g} s, at {run.speed:g}x"
            )
            await asyncio.sleep(wait)
            report = await run.play()
            typer.echo(report.summary())

    import aiomqtt

    try:
        asyncio.run(run_until_signal(play()))
    except (OSError, aiomqtt.MqttError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if cloud is None:
        for expect in played.expect:
            typer.echo(f"expected: {expect.kind} from {expect.device} x{expect.count}")
        return
    from trygg_sim.check import CheckError, check_cloud

    assert password is not None
    try:
        problems = asyncio.run(
            check_cloud(cloud, user, password, played, since=started, settle_s=settle)
        )
    except CheckError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if problems:
        for problem in problems:
            typer.echo(f"MISMATCH {problem}")
        raise typer.Exit(1)
    typer.echo(f"OK: the dispatch service holds exactly the {len(played.expect)} expected alarms")


def _where(scenario: Scenario, wiring: Wiring) -> str:
    parts = []
    if scenario.devices_on("zigbee2mqtt"):
        parts.append(f"MQTT {wiring.broker_host}:{wiring.broker_port}")
    if scenario.devices_on("ble"):
        parts.append(f"BLE udp {wiring.ble_host}:{wiring.ble_port}")
    if scenario.devices_on("ble_lock"):
        parts.append(f"BLE lock GATT tcp {wiring.ble_host}:{wiring.ble_gatt_port}")
    if scenario.devices_on("radio", "nmea"):
        parts.append(f"serial {wiring.serial_dir}/")
    if scenario.devices_on("camera"):
        parts.append(f"cameras from http://{wiring.camera_host}:{wiring.camera_port}/")
    return ", ".join(parts)


@sim_app.command("homes")
def sim_homes(
    host: Host = "127.0.0.1",
    port: Port = 1883,
    homes: Annotated[int, typer.Option(min=1, max=1000)] = 1,
    alarm_every: Annotated[
        float, typer.Option(min=1.0, help="seconds between alarms per home")
    ] = 45.0,
    seed: Annotated[int | None, typer.Option(help="seed for a reproducible run")] = None,
    mqtt_username: MqttUsername = None,
    mqtt_password: MqttPassword = None,
    mqtt_ca_file: MqttCaFile = None,
    log_level: LogLevel = "info",
) -> None:
    """Play the demo's Zigbee2MQTT homes until stopped.

    Devices are home-N/pendant, home-N/front_door, ...: sensors report, and now and then
    a resident needs help."""
    from trygg_sim import SimulatedHome, run_homes

    configure_logging(log_level)
    sims = [
        SimulatedHome(
            f"home-{i}", alarm_every_s=alarm_every, seed=None if seed is None else seed + i
        )
        for i in range(1, homes + 1)
    ]
    login = _login(mqtt_username, mqtt_password, mqtt_ca_file)
    asyncio.run(run_until_signal(run_homes(host, port, sims, login=login)))


@sim_app.command("load")
def sim_load(
    homes: Annotated[int, typer.Option(min=1, max=100_000, help="simulated homes")] = 1000,
    duration: Annotated[float, typer.Option(min=0.5, help="seconds to run")] = 30.0,
    report_every: Annotated[
        float, typer.Option(min=0.01, help="seconds between one device's reports, on average")
    ] = 60.0,
    alarms_per_hour: Annotated[
        float, typer.Option(min=0.0, help="alarms per home per hour, on average")
    ] = 0.1,
    mix: Annotated[
        str, typer.Option(help="device types of every home, comma-separated")
    ] = "alarm_button,door_contact,motion,bed_sensor,smoke,water_leak",
    seed: Annotated[int, typer.Option(help="same seed, same messages")] = 0,
    connections: Annotated[int, typer.Option(min=1, max=64, help="MQTT connections")] = 4,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the report here as JSON")
    ] = None,
    mqtt_username: MqttUsername = None,
    mqtt_password: MqttPassword = None,
    mqtt_ca_file: MqttCaFile = None,
    log_level: LogLevel = "warning",
) -> None:
    """Load a gateway with many homes' Zigbee2MQTT traffic, then report what was sent.

    'trygg sim config --load-homes N' writes the gateway configuration that accepts it."""
    from trygg_sim.load import LoadPlan, LoadReport, run_load

    from devices import DeviceType

    configure_logging(log_level)
    login = _login(mqtt_username, mqtt_password, mqtt_ca_file)
    try:
        kinds = tuple(DeviceType(name.strip()) for name in mix.split(",") if name.strip())
        plan = LoadPlan(
            homes=homes,
            report_every_s=report_every,
            alarms_per_home_per_hour=alarms_per_hour,
            mix=kinds,
            seed=seed,
            connections=connections,
        )
    except ValueError as exc:
        known = ", ".join(t.value for t in DeviceType)
        typer.echo(f"error: {exc} (device types: {known})", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"loading {host}:{port} for {duration:g} s: {plan.homes} homes, {plan.devices} devices, "
        f"{plan.target_messages_per_s:,.0f} reports/s, "
        f"{plan.target_alarms_per_s * 3600:,.1f} alarms/h"
    )

    def progress(report: LoadReport) -> None:
        typer.echo(f"  {report.elapsed_s:5.1f} s: {report.messages:,} messages sent")

    report = asyncio.run(
        run_until_signal(run_load(plan, host, port, duration, progress=progress, login=login))
    )
    if report is None:
        raise typer.Exit(130)
    typer.echo(report.summary())
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
