"""The on-premise gateway: transports, pipeline, local store and uplinks."""

from .config import ConfigError, GatewayConfig, load_config, parse_config
from .counters import DropReason, InputCounters
from .locklog import LockLogEntry
from .pipeline import Pipeline
from .registry import Registry
from .service import Gateway
from .store import Store, StoreError, verify_store_file
from .uplink import DispatchUplink

__all__ = [
    "ConfigError",
    "DispatchUplink",
    "DropReason",
    "Gateway",
    "GatewayConfig",
    "InputCounters",
    "LockLogEntry",
    "Pipeline",
    "Registry",
    "Store",
    "StoreError",
    "load_config",
    "parse_config",
    "verify_store_file",
]
