"""The real Zigbee model catalogue (zigbee-herdsman-converters, scripts/zigbee-catalogue.sh)
and how much of it Trygg reads: every model's exposes, run through
devices/codecs/exposes.py. Used by the coverage test and by ``make bench``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.codecs.exposes import Expose, flatten, mapped, safety_relevant

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / ".cache" / "zhc" / "node_modules"
SCRIPT = Path(__file__).with_name("zigbee_catalogue.js")

# Published states (not settings) whose name speaks of the home's safety but which are
# not in the set (devices/codecs/exposes.py SAFETY): listed for review, so the set
# cannot quietly leave a real alarm out.
_SOUNDS_SAFE = re.compile(
    r"smoke|gas|carbon|leak|fall|sos|panic|emergency|fire|presence|occupancy|motion|vibration"
    r"|tamper|contact|door|window|lock|battery_low|alarm",
    re.IGNORECASE,
)


@dataclass
class Catalogue:
    version: str
    models: list[dict[str, Any]]

    @property
    def described(self) -> list[tuple[str, str, dict[str, Expose]]]:
        """(model, vendor, leaf exposes) of each model whose exposes could be read."""
        return [
            (m["model"], m["vendor"], flatten(m["exposes"])) for m in self.models if "exposes" in m
        ]


def load() -> Catalogue:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None or not (MODULES / "zigbee-herdsman-converters").is_dir():
        raise RuntimeError("the Zigbee catalogue is not installed: run scripts/zigbee-catalogue.sh")
    env = {**os.environ, "NODE_PATH": str(MODULES)}
    out = subprocess.run([node, str(SCRIPT)], capture_output=True, env=env, check=True, timeout=300)
    body = json.loads(out.stdout)
    return Catalogue(body["version"], body["models"])


@dataclass
class Coverage:
    definitions: int
    without_exposes: int  # definitions whose exposes need a real device to say
    total: int = 0  # models with at least one safety-relevant expose
    mapped: int = 0  # of those, the models whose every such expose Trygg reads
    unmapped: Counter[str] = field(default_factory=Counter)  # "property (type)" -> models
    candidates: Counter[str] = field(default_factory=Counter)  # sounds safe, not in the set


def coverage(catalogue: Catalogue) -> Coverage:
    found = Coverage(
        definitions=len(catalogue.models),
        without_exposes=sum(1 for m in catalogue.models if "exposes" not in m),
    )
    for model, _vendor, exposes in catalogue.described:
        relevant = [e for e in exposes.values() if safety_relevant(e, model)]
        for e in exposes.values():
            if (
                e.state
                and e.type in ("binary", "enum")
                and not safety_relevant(e, model)
                and _SOUNDS_SAFE.search(e.property)
            ):
                found.candidates[e.property] += 1
        if not relevant:
            continue
        found.total += 1
        missing = [e for e in relevant if not mapped(e, model)]
        if not missing:
            found.mapped += 1
        for e in missing:
            found.unmapped[f"{e.property} ({e.type}: {', '.join(e.values) or e.value_on})"] += 1
    return found
