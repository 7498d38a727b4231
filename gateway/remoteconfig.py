"""The dispatch service's configuration of this gateway: its devices, homes and heartbeat
(docs/configuration.md).

A ``configure`` command carries the whole configuration and a version. It is checked by
the rules of the gateway's own file (each device and home as a ``[[devices]]`` or
``[[homes]]`` entry, then the whole as a ``GatewayConfig``: ids, addresses, serial ports,
the transports this gateway runs), then kept in the store and applied to the running
gateway, or refused with the reason, the configuration in force untouched:

- ``stale_version``: older than the one in force (or the same version, different);
- ``invalid_config``: what the file's rules refuse, named by its key.

Who wins where the two meet:

- The gateway's file wins: a device or home it declares cannot be configured from the
  dispatch service (``invalid_config`` naming it), because the installer's file is
  read at every start and one of the two would silently lose.
- The dispatch service wins over a pairing made on the gateway (its local API, during an
  installation without network): a configured device with the same id, or the same
  transport and address, replaces the local pairing, which is forgotten in the same
  transaction that keeps the configuration. A local pairing the configuration does not
  name stays, and is reported in the inventory for the centre to take over or remove.
- A device the previous configuration named and this one does not is removed.

The same version again (a resend that crossed the gateway's heartbeat) is ``done``
without any change. What was applied is read back at start; the version in force is in
every heartbeat (``GatewayHealth.config_version``), so the dispatch service sends again
what a gateway has not applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from devices.wire import Command, GatewayConfiguration

from . import transports
from .actions import ActResult
from .config import DeviceConfig, GatewayConfig, HomeSection, describe_error
from .registry import Registry
from .rules import HomeRules
from .store import Store, StoreError

log = logging.getLogger("trygg.gateway.configuration")

HOMES: TypeAdapter[list[HomeSection]] = TypeAdapter(list[HomeSection])
DEVICES: TypeAdapter[list[DeviceConfig]] = TypeAdapter(list[DeviceConfig])


class Invalid(Exception):
    """A configuration the file's rules refuse."""


@dataclass(frozen=True, slots=True)
class Checked:
    """A configuration that passed every rule, and what applying it changes."""

    version: int
    digest: str
    devices: list[DeviceConfig]
    homes: list[HomeSection]
    heartbeat_interval_s: int | None
    replaces_paired: list[str]  # local pairings it takes over or displaces


def _digest(configuration: GatewayConfiguration) -> str:
    body = configuration.model_dump(mode="json", exclude={"version"})
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Configurator:
    """Checks, keeps and applies configure commands; ``version`` is the one in force."""

    def __init__(
        self,
        file: GatewayConfig,
        registry: Registry,
        store: Store,
        rules: HomeRules,
        set_heartbeat: Callable[[float], None],
    ) -> None:
        self.file = file
        self.registry = registry
        self.store = store
        self.rules = rules
        self.set_heartbeat = set_heartbeat
        self.version: int | None = None
        self.digest: str | None = None
        self.applied = 0
        self.refused = 0

    # -- at start --------------------------------------------------------------------
    async def load(self) -> None:
        """Apply what was kept. A kept configuration the file now refuses (the file
        changed under it) is not applied, and said why: the dispatch service sees no
        version in force, sends it again, and is told the reason."""
        body = await self.store.meta("configuration")
        if body is None:
            return
        try:
            configuration = GatewayConfiguration.model_validate_json(body)
            checked = self.check(configuration, _digest(configuration), stored=True)
        except (ValidationError, Invalid) as exc:
            log.error("the kept configuration is not applied: %s", exc)
            return
        self._apply(checked)
        log.info("configuration version %d applied from the store", checked.version)

    # -- a command -------------------------------------------------------------------
    async def __call__(self, command: Command) -> ActResult:
        configuration = command.configuration
        assert configuration is not None  # the command's own validator holds it
        digest = _digest(configuration)
        if self.version is not None and configuration.version <= self.version:
            if configuration.version == self.version and digest == self.digest:
                return ActResult("done", None, f"version {self.version} is in force already")
            self.refused += 1
            why = f"version {configuration.version}; version {self.version} is in force"
            log.warning("configuration refused (stale_version): %s", why)
            return ActResult("refused", "stale_version", why)
        try:
            checked = self.check(configuration, digest)
        except Invalid as exc:
            self.refused += 1
            log.warning("configuration %d refused (invalid_config): %s", configuration.version, exc)
            return ActResult("refused", "invalid_config", str(exc)[:500])
        try:
            await self.store.save_configuration(
                checked.version, configuration.model_dump_json(), checked.replaces_paired
            )
        except StoreError as exc:
            return ActResult("failed", "store_fault", f"the configuration cannot be kept: {exc}")
        self._apply(checked)
        self.applied += 1
        for device in checked.devices:  # paired now: no longer "heard but not paired"
            with contextlib.suppress(StoreError):
                await self.store.forget_discovered(device.transport, device.address)
        log.info(
            "configuration version %d applied by %s: %d devices, %d homes",
            checked.version,
            command.issued_by,
            len(checked.devices),
            len(checked.homes),
        )
        return ActResult("done", None, f"version {checked.version} applied")

    def check(
        self, configuration: GatewayConfiguration, digest: str, *, stored: bool = False
    ) -> Checked:
        """Every rule of the gateway's file; raises Invalid naming the first broken one."""
        try:
            devices = DEVICES.validate_python(configuration.devices)
        except ValidationError as exc:
            raise Invalid(f"devices.{describe_error(exc)}") from None
        try:
            homes = HOMES.validate_python(configuration.homes)
        except ValidationError as exc:
            raise Invalid(f"homes.{describe_error(exc)}") from None
        file_devices = {d.id for d in self.file.devices}
        file_homes = {h.id for h in self.file.homes}
        for device in devices:
            if device.id in file_devices:
                raise Invalid(f"device {device.id} is declared in the gateway's file")
            refused = transports.plugin(device.transport).pairing(self.file, device)
            if refused is not None:
                raise Invalid(f"device {device.id}: {refused}")
        for home in homes:
            if home.id in file_homes:
                raise Invalid(f"home {home.id} is declared in the gateway's file")
        ids = {d.id for d in devices}
        addresses = {(d.transport, d.address) for d in devices}
        kept: list[DeviceConfig] = []
        replaces: list[str] = []
        for registered in self.registry:
            if registered.origin != "paired":
                continue
            key = (registered.config.transport, registered.config.address)
            if registered.id in ids or key in addresses:
                replaces.append(registered.id)
            else:
                kept.append(registered.config)
        whole: dict[str, Any] = {
            name: getattr(self.file, name) for name in GatewayConfig.model_fields
        }
        whole["devices"] = [*self.file.devices, *kept, *devices]
        whole["homes"] = [*self.file.homes, *homes]
        try:
            GatewayConfig.model_validate(whole)
        except ValidationError as exc:
            raise Invalid(describe_error(exc)) from None
        return Checked(
            configuration.version,
            digest,
            devices,
            homes,
            configuration.heartbeat_interval_s,
            [] if stored else replaces,
        )

    # -- applying --------------------------------------------------------------------
    def _apply(self, checked: Checked) -> None:
        """Bring the running gateway to ``checked`` (kept already): nothing here can be
        refused any more, since every rule was checked against this very registry."""
        wanted = {d.id: d for d in checked.devices}
        for registered in self.registry:
            replaced = registered.id in checked.replaces_paired
            gone = registered.origin == "remote" and registered.id not in wanted
            if replaced or gone:
                self.registry.remove(registered.id)
        for config in checked.devices:
            old = self.registry.get(config.id)
            if old is not None and old.config == config:
                continue
            if old is not None:
                self.registry.remove(config.id)
            added = self.registry.add(config, origin="remote")
            if old is not None:
                added.status = old.status  # what was heard of it stays true
        self.rules.replace([*self.file.homes, *checked.homes])
        self.set_heartbeat(
            float(checked.heartbeat_interval_s or self.file.gateway.heartbeat_interval_s)
        )
        self.version = checked.version
        self.digest = checked.digest
