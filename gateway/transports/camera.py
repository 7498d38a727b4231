"""Night cameras: frames from any RTSP or HTTP MJPEG URL, through OpenCV in a worker
thread, measured for motion and brightness on the gateway.

Frames live only in memory, one at a time: nothing here writes or sends an image.
Only ``analyse_fps`` frames a second are decoded; the rest are grabbed and skipped.
Each ``reading_interval_s`` the most motion seen and the mean brightness become
readings, which is also how supervision knows the camera is alive. A stream that
cannot be opened or stops is opened again with backoff, in the same thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2

from devices import UnexpectedValue
from devices.codecs import Decoded
from devices.codecs.camera import MotionMeter

from ..backoff import Backoff
from ..config import CameraDevice
from ..counters import DropReason
from ..registry import RegisteredDevice
from .plugin import Intake, TransportPlugin

log = logging.getLogger("trygg.gateway.camera")

OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 5000


class CameraError(Exception):
    """A camera stream could not be opened or stopped delivering frames."""


@dataclass(frozen=True, slots=True)
class CameraSummary:
    """What one reading interval saw."""

    frames: int
    max_motion: float  # 0..1
    brightness: float  # mean grey level 0..255
    low_light: bool

    def observations(self) -> Decoded:
        return Decoded(
            readings=(
                ("motion_pct", round(self.max_motion * 100, 3)),
                ("brightness", round(self.brightness, 1)),
                ("low_light", 1.0 if self.low_light else 0.0),
            )
        )


Deliver = Callable[[CameraSummary | CameraError], None]


class CameraTransport:
    def __init__(self, device: RegisteredDevice, pipeline: Intake) -> None:
        if not isinstance(device.config, CameraDevice):
            raise TypeError("a camera transport needs a camera device")
        self.device = device
        self.config: CameraDevice = device.config
        self.pipeline = pipeline
        self.connected = threading.Event()
        self.opens = 0
        self.frames_analysed = 0
        self._stop = threading.Event()
        self._queue: asyncio.Queue[CameraSummary | CameraError] = asyncio.Queue(100)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()

        def deliver(item: CameraSummary | CameraError) -> None:
            def put() -> None:
                if not self._queue.full():  # the loop is far behind: a summary can wait
                    self._queue.put_nowait(item)

            loop.call_soon_threadsafe(put)

        self._stop.clear()
        worker = threading.Thread(
            target=self._capture, args=(deliver,), name=f"camera-{self.device.id}", daemon=True
        )
        worker.start()
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, CameraError):
                    self.pipeline.counters.drop(DropReason.MALFORMED, self._source, str(item))
                    continue
                await self.pipeline.accept(self.device, item.observations(), source=self._source)
        finally:
            self._stop.set()
            await asyncio.to_thread(worker.join, 10)

    @property
    def _source(self) -> str:
        return f"camera:{self.device.id}"

    # -- the worker thread -------------------------------------------------------------
    def _capture(self, deliver: Deliver) -> None:
        backoff = Backoff(first_s=0.5, cap_s=30.0)
        while not self._stop.is_set():
            capture = cv2.VideoCapture(
                self.config.url,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    OPEN_TIMEOUT_MS,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    READ_TIMEOUT_MS,
                ],
            )
            try:
                if not capture.isOpened():
                    reason = "cannot open the stream"
                else:
                    self.opens += 1
                    self.connected.set()
                    backoff.reset()
                    log.info("camera %s: stream open", self.device.id)
                    reason = self._frames(capture, deliver)
            finally:
                capture.release()
                self.connected.clear()
            if self._stop.is_set():
                return
            delay = backoff.next_delay()
            log.warning("camera %s: %s; trying again in %.1f s", self.device.id, reason, delay)
            self._stop.wait(delay)

    def _frames(self, capture: cv2.VideoCapture, deliver: Deliver) -> str:
        meter = MotionMeter()
        every = 1.0 / self.config.analyse_fps
        next_analysis = 0.0
        interval_start = time.monotonic()
        frames, max_motion, brightness, low_light = 0, 0.0, 0.0, False
        while not self._stop.is_set():
            if not capture.grab():
                return "the stream stopped"
            now = time.monotonic()
            if now >= next_analysis:
                next_analysis = now + every
                ok, frame = capture.retrieve()
                if not ok:
                    return "a frame could not be decoded"
                try:
                    reading = meter.measure(frame)
                except UnexpectedValue as exc:
                    deliver(CameraError(f"unusable frame: {exc}"))
                    continue
                finally:
                    del frame  # the picture itself is never kept
                self.frames_analysed += 1
                frames += 1
                max_motion = max(max_motion, reading.motion)
                brightness += reading.brightness
                low_light = reading.low_light
            if now - interval_start >= self.config.reading_interval_s and frames:
                deliver(CameraSummary(frames, max_motion, brightness / frames, low_light))
                interval_start = now
                frames, max_motion, brightness = 0, 0.0, 0.0
        return "stopped"


# A camera's stream is its own link, opened when the camera is registered.
PLUGINS = {
    "camera": TransportPlugin(
        "camera", device_link=lambda _config, device, intake: CameraTransport(device, intake)
    )
}
