"""Running the dispatch service's ASGI app inside an asyncio program we own."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from cloud import end_live_streams

# A request still running this long after the stop began (a client that reads slowly) is
# cancelled: a stopping service exits within two seconds, and its port is free again.
GRACEFUL_STOP_S = 1


class EmbeddedServer(uvicorn.Server):
    """uvicorn, minus its signal handling (the program that embeds it decides when to
    stop), and with the dispatch service's live streams ended as the stop begins: uvicorn
    waits for open responses before the app's own shutdown, and consoles never leave."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        end_live_streams(self.app)
        await super().shutdown(sockets)


def make_server(app: FastAPI, host: str, port: int) -> EmbeddedServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_STOP_S,
    )
    return EmbeddedServer(config, app)


async def wait_started(
    server: uvicorn.Server, task: asyncio.Task[None], limit_s: float = 30
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the web server stopped while starting")
        if loop.time() > deadline:
            raise TimeoutError("the web server did not start in time")
        await asyncio.sleep(0.05)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """Whether the server could listen there. As the server does, with SO_REUSEADDR: the
    connections a stopped server closed linger in TIME_WAIT and must not count as in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
