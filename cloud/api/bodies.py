"""Request bodies: bounded before they are read, and JSON that is JSON.

Bounds: the app refuses any body over ``SMALL_BODY_BYTES`` with 413, from its declared
Content-Length before a byte is read, or by counting a streamed (chunked) body and
stopping at the limit (Starlette's ``RequestBodyLimitMiddleware``, set through FastAPI's
``max_body_size``). A route that takes longer texts says so with
``max_body_size=TEXT_BODY_BYTES``. FastAPI reads a body before it checks the caller, so
without a bound a stranger's 400 MB POST was held in memory whole.

JSON: Python's parser takes ``NaN`` and ``Infinity``, which JSON does not have, and the
parsed value then failed later (a 500). Every route of the API parses bodies with
``StrictJsonRoute``: non-finite numbers, invalid UTF-8, lone surrogates and NUL characters
(which no text column can hold) are a 422 with the reason, like any other bad body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

SMALL_BODY_BYTES = 16 * 1024
# Notes, addresses and contacts: 2,000-character texts, each character up to a 12-byte
# JSON escape (a surrogate pair), with room for the rest.
TEXT_BODY_BYTES = 64 * 1024


class _NotJson(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a number in JSON")


def _check(value: Any) -> None:
    """Walk the parsed value (without recursion) for text that JSON may spell but no
    field can take."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise _NotJson("text holds a NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _NotJson("text holds a lone surrogate escape (not a Unicode character)") from exc


def parse_json(body: bytes) -> Any:
    """``body`` as strict JSON (RFC 8259 in UTF-8), or ``json.JSONDecodeError`` saying why:
    FastAPI answers that with 422."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        doc = body.decode("utf-8", "replace")
        raise json.JSONDecodeError(f"invalid UTF-8 at byte {exc.start}", doc, exc.start) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
        _check(value)
    except _NotJson as exc:
        raise json.JSONDecodeError(exc.reason, text, 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    return value


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is parsed by ``parse_json``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handle(StrictJsonRequest(request.scope, request.receive))

        return strict
