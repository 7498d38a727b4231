"""A simulated GPS watch on LTE: it speaks Trygg's native device API over HTTPS (or HTTP
on loopback) to a gateway or the dispatch service, as a real one would: a position now
and then while it has a fix, a heartbeat at its check-in interval, and an SOS (or a fall)
that carries its latest fix, its accuracy and its age. An alarm whose answer does not
come is sent again with the same id until it is answered (docs/native-api.md)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from .serial import GpsWalk

log = logging.getLogger("trygg.sim.watch")


def sim_credential(seed: int, device_id: str) -> str:
    """A simulated watch's credential, derived from its scenario (both the gateway's
    configuration and the simulator compute it). A simulation's; never a real one's."""
    return hashlib.sha256(f"trygg-sim/{seed}/{device_id}".encode()).hexdigest()


@dataclass
class GpsWatch:
    device_id: str
    credential: str
    walk: GpsWalk
    accuracy_m: float = 6.0
    battery_pct: float = 100.0
    # Its last fix: where, and when (simulated time), if it has had one.
    fix: dict[str, Any] | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def locate(self, now: datetime) -> dict[str, Any] | None:
        """A position message while outdoors (a fix); None indoors (no fix)."""
        if self.walk.indoors:
            return None
        self.fix = {
            "latitude": round(self.walk.latitude, 7),
            "longitude": round(self.walk.longitude, 7),
            "accuracy_m": self.accuracy_m,
            "satellites": self.walk.satellites,
            "speed_kmh": self.walk.speed_kmh,
            "at": now.isoformat(),
        }
        return {"id": self._next("p"), **self.fix}

    def alarm(self, alarm: str = "sos", *, test: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self._next("a"), "alarm": alarm}
        if test:
            body["test"] = True
        if self.fix is not None:
            body["position"] = dict(self.fix)
        return body

    def heartbeat(self) -> dict[str, Any]:
        return {"id": self._next("h"), "battery_pct": round(self.battery_pct)}

    def _next(self, prefix: str) -> str:
        return f"{self.device_id}-{prefix}{next(self._ids)}"


class NativeUplink:
    """Where a watch's messages go: ``POST <url>/dev/v1/<device_id>/<kind>``. An alarm is
    retried until answered; other messages are sent once (the next one follows)."""

    def __init__(self, url: str, verify: ssl.SSLContext | bool = True, prefix: str = "") -> None:
        self.url = url.rstrip("/")
        self.prefix = prefix or "/dev/v1"
        self._client = httpx.AsyncClient(verify=verify, timeout=10.0)
        self.sent = 0
        self.refused = 0

    async def send(self, watch: GpsWatch, kind: str, body: dict[str, Any]) -> int | None:
        """The answer's status, or None when nothing answered (a non-alarm is not resent)."""
        url = f"{self.url}{self.prefix}/{watch.device_id}/{kind}"
        headers = {"Authorization": f"Bearer {watch.credential}"}
        delay = 0.2
        while True:
            try:
                answer = await self._client.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                if kind != "alarm":
                    log.info("%s: %s not sent: %s", watch.device_id, kind, exc)
                    return None
                log.warning("%s: alarm not answered (%s); sending it again", watch.device_id, exc)
            else:
                if answer.status_code == 202:
                    self.sent += 1
                    return 202
                if answer.status_code < 500 or kind != "alarm":
                    self.refused += 1
                    log.warning("%s: %s refused: %s", watch.device_id, kind, answer.text[:200])
                    return answer.status_code
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def aclose(self) -> None:
        await self._client.aclose()
