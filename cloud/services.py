"""What one running dispatch service holds: settings, database, hub and workers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .clockwatch import ClockWatch
from .commands import CommandService
from .configuration import ConfigurationService
from .doors import DoorService, DoorWatch
from .escalation import Escalator
from .hub import AlarmHub, CommandHub
from .ingest import IngestWorker
from .push import PushService
from .retention import PositionRetention
from .settings import CloudSettings
from .supervision import GatewaySupervisor


@dataclass(slots=True)
class Services:
    settings: CloudSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hub: AlarmHub
    ingest: IngestWorker
    supervisor: GatewaySupervisor
    escalator: Escalator
    clock_watch: ClockWatch
    commands: CommandService
    command_hub: CommandHub
    doors: DoorService
    door_watch: DoorWatch
    push: PushService
    configuration: ConfigurationService
    retention: PositionRetention
