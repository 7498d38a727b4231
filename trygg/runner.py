"""What every ``trygg`` command shares: logging set-up and running until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import typer

T = TypeVar("T")

LogLevel = Annotated[str, typer.Option(help="debug, info, warning or error")]


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def run_until_signal(main: Coroutine[Any, Any, T]) -> T | None:
    """Run ``main`` until it ends (its result) or SIGINT/SIGTERM arrives (None, after
    cancelling it cleanly)."""
    from .serve import stop_on_signals

    stop = asyncio.Event()
    stop_on_signals(stop)
    task = asyncio.create_task(main)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        return await task
    return None


def leave(code: int = 0) -> NoReturn:
    """End the process once everything is stopped and closed: logs and output flushed,
    without the interpreter tearing down every module and object first, which on a busy
    host took 1-2 s more (seen) that a restart, or a supervisor, would wait for."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
