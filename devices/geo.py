"""Distances on the earth and safe zones for GPS pendants. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance by the haversine formula; metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(slots=True)
class Geofence:
    """A circle around home. Leaving it counts at the edge; coming back only once well
    inside (``margin`` of the radius), so a walk along the edge is one exit, not fifty."""

    latitude: float
    longitude: float
    radius_m: float
    margin: float = 0.1
    outside: bool = False

    def update(self, latitude: float, longitude: float) -> bool:
        """Whether the position is outside, given where it was before."""
        d = distance_m(self.latitude, self.longitude, latitude, longitude)
        if self.outside:
            self.outside = d > self.radius_m * (1 - self.margin)
        else:
            self.outside = d > self.radius_m
        return self.outside
