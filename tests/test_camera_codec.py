"""The camera motion measure on synthetic bedroom scenes (numpy frames, never files)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from devices import UnexpectedValue
from devices.codecs.camera import MotionMeter


def room(brightness: int, person_x: int | None, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A still room with furniture, and a person-sized block at ``person_x`` if given."""
    frame = np.full((*size, 3), brightness, np.uint8)
    frame[300:420, 40:260] = min(255, brightness + 40)  # the bed
    frame[100:200, 450:600] = max(0, brightness - 20)  # a wardrobe
    if person_x is not None:
        frame[150:450, person_x : person_x + 80] = min(255, brightness + 60)
    return frame


def settle(meter: MotionMeter, frame: np.ndarray, n: int = 30) -> float:
    motion = 1.0
    for _ in range(n):
        motion = meter.measure(frame).motion
    return motion


def test_a_still_room_shows_no_motion() -> None:
    meter = MotionMeter()
    assert settle(meter, room(120, None)) == 0.0


def test_a_person_walking_shows_motion() -> None:
    meter = MotionMeter()
    settle(meter, room(120, None))
    readings = [meter.measure(room(120, x)) for x in range(100, 500, 40)]
    assert all(r.motion > 0.02 for r in readings)
    assert not any(r.low_light for r in readings)


def test_a_person_moving_in_the_dark_still_shows() -> None:
    meter = MotionMeter()
    settle(meter, room(12, None))
    reading = meter.measure(room(12, 300))
    assert reading.low_light and reading.brightness < 40
    assert reading.motion > 0.02


def test_motion_fades_when_the_person_lies_still() -> None:
    meter = MotionMeter()
    settle(meter, room(120, None))
    lying = room(120, 200)
    first = meter.measure(lying).motion
    later = settle(meter, lying, 120)
    assert first > 0.02 and later < first / 4


def test_greyscale_and_single_channel_frames_are_accepted() -> None:
    meter = MotionMeter()
    grey = room(100, None)[:, :, 0]
    meter.measure(grey)
    assert meter.measure(grey[:, :, None]).motion == 0.0


def test_a_new_frame_size_starts_a_new_scene() -> None:
    meter = MotionMeter()
    settle(meter, room(120, 300))
    assert meter.measure(room(120, 300, size=(240, 320))).motion == 0.0


def test_readings_are_named() -> None:
    meter = MotionMeter()
    meter.measure(room(120, None))
    readings = dict(meter.measure(room(120, 300)).observations().readings)
    assert set(readings) == {"motion_pct", "brightness"} and readings["motion_pct"] > 2


@pytest.mark.parametrize(
    "frame",
    [
        None,
        b"jpeg bytes",
        np.zeros((480, 640), np.float32),
        np.zeros((8, 8), np.uint8),
        np.zeros((480, 640, 4), np.uint8),
        np.zeros(100, np.uint8),
    ],
)
def test_what_is_not_a_frame_is_refused(frame: object) -> None:
    with pytest.raises(UnexpectedValue):
        MotionMeter().measure(frame)


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(16, 64), st.integers(16, 64), st.just(3))))
def test_arbitrary_frames_give_bounded_readings(frame: np.ndarray) -> None:
    meter = MotionMeter(height=16)
    for _ in range(2):
        reading = meter.measure(frame)
        assert 0.0 <= reading.motion <= 1.0 and 0.0 <= reading.brightness <= 255.0
