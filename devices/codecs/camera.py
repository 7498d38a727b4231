"""A cheap motion and presence measure per camera frame, for night checks.

Each frame is shrunk, turned grey and blurred, then compared with a running average
of the frames before it; the share of pixels that changed is the motion. In low light
the frame's contrast is stretched first, so a person moving in a dark bedroom still
shows. Frames are arrays in memory: nothing here writes or keeps an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from ..errors import UnexpectedValue
from .common import Decoded, total

LOW_LIGHT = 40.0  # mean grey level (0-255) below which a scene counts as dark


@dataclass(frozen=True, slots=True)
class MotionReading:
    motion: float  # share of the picture that changed, 0..1
    brightness: float  # mean grey level, 0..255
    low_light: bool

    def observations(self) -> Decoded:
        return Decoded(
            readings=(("motion_pct", round(self.motion * 100, 3)), ("brightness", self.brightness))
        )


class MotionMeter:
    """One per camera: it keeps the running average of that camera's scene."""

    def __init__(self, height: int = 120, alpha: float = 0.05, threshold: int = 25) -> None:
        if not 16 <= height <= 1080 or not 0 < alpha <= 1 or not 1 <= threshold <= 255:
            raise ValueError("height 16-1080, alpha in (0, 1], threshold 1-255")
        self.height = height
        self.alpha = alpha
        self.threshold = threshold
        self._average: npt.NDArray[np.float32] | None = None
        self._source_shape: tuple[int, ...] = ()

    @total("camera frame")
    def measure(self, frame: object) -> MotionReading:
        grey = self._grey(frame)
        width = max(1, round(grey.shape[1] * self.height / grey.shape[0]))
        small = cv2.resize(grey, (width, self.height), interpolation=cv2.INTER_AREA)
        brightness = float(small.mean())
        low_light = brightness < LOW_LIGHT
        if low_light:
            low, high = int(small.min()), int(small.max())
            if high > low:  # stretch what little contrast there is over the full range
                stretched = (small.astype(np.float32) - low) * (255.0 / (high - low))
                small = stretched.astype(np.uint8)
        small = cv2.GaussianBlur(small, (5, 5), 0)
        if self._average is None or self._source_shape != grey.shape:
            # A new scene (first frame, or the camera changed resolution): nothing moved yet.
            self._average = small.astype(np.float32)
            self._source_shape = grey.shape
            return MotionReading(0.0, brightness, low_light)
        delta = cv2.absdiff(small, cv2.convertScaleAbs(self._average))
        cv2.accumulateWeighted(small, self._average, self.alpha)
        changed = float(np.count_nonzero(delta > self.threshold)) / delta.size
        return MotionReading(changed, brightness, low_light)

    @staticmethod
    def _grey(frame: object) -> npt.NDArray[np.uint8]:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            raise UnexpectedValue("a frame is a uint8 image array")
        grey: npt.NDArray[np.uint8] = frame
        if frame.ndim == 3 and frame.shape[2] == 3:
            grey = np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        elif frame.ndim == 3 and frame.shape[2] == 1:
            grey = frame[:, :, 0]
        if grey.ndim != 2 or min(grey.shape) < 16:
            raise UnexpectedValue(f"a frame of shape {frame.shape} is not an image")
        return grey
