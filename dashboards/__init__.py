"""Web consoles served by the dispatch service (static files; data comes from the API)."""

from pathlib import Path

OPERATOR_CONSOLE = Path(__file__).parent / "operator"

__all__ = ["OPERATOR_CONSOLE"]
