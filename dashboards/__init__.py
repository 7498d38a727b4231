"""Web consoles served by the dispatch service (static files; data comes from the API)."""

from pathlib import Path

OPERATOR_CONSOLE = Path(__file__).parent / "operator"
# Home-care staff on their phones; its service worker (sw.js) sits at the folder's root,
# so its scope is the whole page.
STAFF_CONSOLE = Path(__file__).parent / "staff"
# Technicians: gateways, their health and devices, what they hear but have not paired.
TECHNICIAN_CONSOLE = Path(__file__).parent / "technician"

__all__ = ["OPERATOR_CONSOLE", "STAFF_CONSOLE", "TECHNICIAN_CONSOLE"]
