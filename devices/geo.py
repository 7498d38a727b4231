"""Distances on the earth and safe zones for GPS pendants. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from shapely.geometry import Point, Polygon

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance by the haversine formula; metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


# A polygon zone is measured in metres on a plane through its first corner: over a
# garden, a block or a village (a few km) the error is centimetres.
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_320.0


@dataclass
class PolygonZone:
    """A safe zone drawn as a polygon of (latitude, longitude) corners (shapely)."""

    corners: Sequence[tuple[float, float]]
    _origin: tuple[float, float] = field(init=False)
    _shape: Polygon = field(init=False)
    _shrunk: dict[float, Polygon] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.corners) < 3:
            raise ValueError("a polygon zone has at least 3 corners")
        self._origin = self.corners[0]
        shape = Polygon([self._plane(lat, lon) for lat, lon in self.corners])
        if not shape.is_valid or shape.area <= 0:
            raise ValueError("a polygon zone's edges must not cross, and it must enclose an area")
        self._shape = shape

    def _plane(self, latitude: float, longitude: float) -> tuple[float, float]:
        lat0, lon0 = self._origin
        x = (longitude - lon0) * _M_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat0))
        return (x, (latitude - lat0) * _M_PER_DEG_LAT)

    def contains(self, latitude: float, longitude: float, margin_m: float = 0.0) -> bool:
        """Inside; with ``margin_m``, inside by at least that much (well inside)."""
        shape = self._shape
        if margin_m > 0:
            shape = self._shrunk.setdefault(margin_m, self._shape.buffer(-margin_m))
        return bool(shape.contains(Point(self._plane(latitude, longitude))))


@dataclass
class CircleZone:
    latitude: float
    longitude: float
    radius_m: float

    def contains(self, latitude: float, longitude: float, margin_m: float = 0.0) -> bool:
        d = distance_m(self.latitude, self.longitude, latitude, longitude)
        return d <= self.radius_m - margin_m


Zone = CircleZone | PolygonZone


@dataclass
class ZoneFence:
    """Several safe zones, each with its own margin: outside when in none of the zones
    that count now; back only once well inside one of them (``margin_m``), so a walk
    along an edge is one exit, not fifty."""

    outside: bool = False

    def update(
        self, latitude: float, longitude: float, zones: Sequence[tuple[Zone, float]]
    ) -> bool | None:
        """Whether outside, given where it was; ``zones``: each zone with its margin.
        None (and nothing changes) when no zone counts now."""
        if not zones:
            return None
        if self.outside:
            self.outside = not any(z.contains(latitude, longitude, m) for z, m in zones)
        else:
            self.outside = not any(z.contains(latitude, longitude) for z, _m in zones)
        return self.outside
