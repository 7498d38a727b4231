"""The dispatch service: ingest, alarm queue, auth, persistence, REST and live stream."""

from .app import create_app, end_live_streams
from .settings import CloudSettings

__all__ = ["CloudSettings", "create_app", "end_live_streams"]
