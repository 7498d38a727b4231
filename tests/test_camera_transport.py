"""Night cameras: the simulator's MJPEG bedroom served on loopback, captured by OpenCV
in the gateway's worker thread, measured, and turned into readings."""

from __future__ import annotations

import asyncio

import pytest
from trygg_sim.camera import BedroomCamera, Scene

from gateway import GatewayConfig, InputCounters, Pipeline, Registry, Store
from gateway.readings import ReadingsBuffer
from gateway.transports.camera import CameraTransport

from .servers import free_port, wait_until


@pytest.fixture
def camera() -> object:
    cam = BedroomCamera(fps=15)
    cam.start()
    yield cam
    cam.stop()


def rig(store: Store, url: str) -> tuple[Pipeline, CameraTransport]:
    config = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1"},
            "devices": [
                {
                    "id": "cam-1",
                    "transport": "camera",
                    "type": "camera",
                    "url": url,
                    "home": "home-1",
                    "analyse_fps": 10,
                    "reading_interval_s": 0.5,
                }
            ],
        }
    )
    pipeline = Pipeline(
        "gw-1", Registry(config.devices), store, InputCounters(), readings=ReadingsBuffer(store)
    )
    device = pipeline.registry.get("cam-1")
    assert device is not None
    return pipeline, CameraTransport(device, pipeline)


async def motion(pipeline: Pipeline, store: Store, after_seq: int = 0) -> list[tuple[int, float]]:
    assert pipeline._readings is not None
    await pipeline._readings.flush()
    return [
        (r.seq, r.value)
        for r in await store.readings(100_000)
        if r.metric == "motion_pct" and r.seq > after_seq
    ]


async def settle_on(pipeline: Pipeline, store: Store, readings: int = 3) -> list[float]:
    """The motion readings of the next few intervals after now."""
    start = max([s for s, _ in await motion(pipeline, store)], default=0)
    got: list[tuple[int, float]] = []

    async def enough() -> bool:
        nonlocal got
        got = await motion(pipeline, store, start)
        return len(got) >= readings

    await wait_until(enough, limit_s=20)
    return [v for _, v in got[1:]]  # the first may straddle the scene change


async def test_motion_tells_a_walking_resident_from_a_still_room(
    store: Store, camera: BedroomCamera
) -> None:
    pipeline, transport = rig(store, camera.url)
    task = asyncio.create_task(transport.run())
    try:
        camera.set_scene(Scene.WALKING)
        walking = await settle_on(pipeline, store)
        camera.set_scene(Scene.ON_FLOOR)
        await asyncio.sleep(3.0)  # the running average forgets the walk
        still = await settle_on(pipeline, store)
        assert min(walking) > 1.0, walking  # percent of the picture changing
        assert max(still) < 0.5, still
        device = pipeline.registry.get("cam-1")
        assert device is not None and device.status.last_seen is not None
        assert transport.frames_analysed > 0
        assert pipeline.counters.accepted["reading"] >= 6
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_walk_in_low_light_still_shows(store: Store, camera: BedroomCamera) -> None:
    camera.low_light = True
    camera.set_scene(Scene.WALKING)
    pipeline, transport = rig(store, camera.url)
    task = asyncio.create_task(transport.run())
    try:
        walking = await settle_on(pipeline, store)
        assert min(walking) > 1.0, walking
        assert pipeline._readings is not None
        await pipeline._readings.flush()
        dark = [r.value for r in await store.readings(100_000) if r.metric == "low_light"]
        assert dark and all(v == 1.0 for v in dark)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_stream_that_stops_is_opened_again(store: Store) -> None:
    port = free_port()
    camera = BedroomCamera(fps=15)
    camera.start(port=port)
    _, transport = rig(store, camera.url)
    task = asyncio.create_task(transport.run())
    try:
        await wait_until(lambda: transport.frames_analysed > 3, limit_s=20)
        camera.stop()
        await wait_until(lambda: not transport.connected.is_set(), limit_s=20)
        camera = BedroomCamera(fps=15, scene=Scene.WALKING)
        camera.start(port=port)
        await wait_until(lambda: transport.opens >= 2, limit_s=30)
        before = transport.frames_analysed
        await wait_until(lambda: transport.frames_analysed > before + 3, limit_s=20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        camera.stop()


async def test_a_camera_nobody_serves_is_retried_without_harm(store: Store) -> None:
    _, transport = rig(store, f"http://127.0.0.1:{free_port()}/stream.mjpg")
    task = asyncio.create_task(transport.run())
    try:
        await asyncio.sleep(1.5)
        assert not task.done()
        assert transport.opens == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert transport._stop.is_set()
