"""A night camera serving HTTP MJPEG, rendering a synthetic bedroom with OpenCV.

Scenes: an empty room, the resident asleep (breathing), getting up, walking, and lying
on the floor; any of them in low light. Frames are drawn in memory and sent; nothing
is written to disk. ``url`` is what a gateway's camera device points at.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]
BOUNDARY = b"trygg-frame"


class Scene(StrEnum):
    EMPTY = "empty"
    ASLEEP = "asleep"
    GETTING_UP = "getting_up"
    WALKING = "walking"
    ON_FLOOR = "on_floor"


class BedroomCamera:
    def __init__(
        self,
        *,
        width: int = 640,
        height: int = 480,
        fps: float = 10.0,
        scene: Scene = Scene.EMPTY,
        low_light: bool = False,
        seed: int = 0,
    ) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.scene = scene
        self.low_light = low_light
        self.frames_sent = 0
        self._rng = np.random.default_rng(seed)
        self._scene_since = time.monotonic()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._room = self._draw_room()

    def set_scene(self, scene: Scene) -> None:
        self.scene = scene
        self._scene_since = time.monotonic()

    # -- drawing -----------------------------------------------------------------------
    def _draw_room(self) -> Frame:
        w, h = self.width, self.height
        room = np.zeros((h, w, 3), np.uint8)
        room[: h * 3 // 5] = (150, 160, 170)  # wall
        room[h * 3 // 5 :] = (90, 110, 130)  # floor
        cv2.rectangle(room, (w // 20, h // 2), (w * 9 // 20, h * 4 // 5), (200, 190, 180), -1)
        cv2.rectangle(room, (w // 20, h // 2), (w // 8, h * 4 // 5), (120, 100, 90), -1)
        cv2.rectangle(room, (w * 3 // 5, h // 8), (w * 4 // 5, h * 2 // 5), (210, 220, 230), -1)
        return room

    def render(self, t: float | None = None) -> Frame:
        """One frame of the current scene, ``t`` seconds into it."""
        if t is None:
            t = time.monotonic() - self._scene_since
        frame = self._room.copy()
        w, h = self.width, self.height
        skin, cloth = (150, 170, 210), (60, 70, 160)
        if self.scene is Scene.ASLEEP:
            breath = 1 + 0.03 * math.sin(t * 2 * math.pi / 4)  # one breath in four seconds
            cv2.ellipse(
                frame, (w // 4, h * 3 // 5), (int(w / 7 * breath), h // 16), 0, 0, 360, cloth, -1
            )
            cv2.circle(frame, (w // 8 + 15, h * 3 // 5), h // 22, skin, -1)
        elif self.scene is Scene.GETTING_UP:
            rise = min(1.0, t / 3.0)
            x = int(w // 4 + rise * w // 5)
            top = int(h * 3 // 5 - rise * h // 3)
            cv2.rectangle(frame, (x - w // 30, top), (x + w // 30, h * 4 // 5), cloth, -1)
            cv2.circle(frame, (x, top - h // 22), h // 22, skin, -1)
        elif self.scene is Scene.WALKING:
            x = int(w * 0.3 + (w * 0.5) * (0.5 + 0.5 * math.sin(t * 2 * math.pi / 6)))
            top = h // 4
            cv2.rectangle(frame, (x - w // 30, top), (x + w // 30, h * 9 // 10), cloth, -1)
            cv2.circle(frame, (x, top - h // 22), h // 22, skin, -1)
        elif self.scene is Scene.ON_FLOOR:
            cv2.ellipse(frame, (w * 2 // 3, h * 7 // 8), (w // 6, h // 18), 0, 0, 360, cloth, -1)
            cv2.circle(frame, (w * 2 // 3 + w // 6 + 10, h * 7 // 8), h // 22, skin, -1)
        if self.low_light:
            frame = (frame.astype(np.float32) * 0.12).astype(np.uint8)
        noise = self._rng.integers(0, 4, frame.shape, dtype=np.uint8)  # sensor noise
        return np.asarray(cv2.add(frame, noise), dtype=np.uint8)

    def jpeg(self) -> bytes:
        ok, data = cv2.imencode(".jpg", self.render(), [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:  # pragma: no cover - encoding a valid array does not fail
            raise RuntimeError("JPEG encoding failed")
        return data.tobytes()

    # -- serving -----------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/snapshot.jpg"):
                    body = camera.jpeg()
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if not self.path.startswith("/stream.mjpg"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
                )
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    while camera._server is not None:
                        body = camera.jpeg()
                        self.wfile.write(
                            b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body) + body + b"\r\n"
                        )
                        camera.frames_sent += 1
                        time.sleep(1 / camera.fps)

            def log_message(self, format: str, *args: object) -> None:
                return None

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="sim-camera", daemon=True)
        self._thread.start()
        return self.url

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
