"""What every route takes: bodies bounded before they are read, JSON that is JSON, and
no NUL character anywhere.

Bounds: the app refuses any body over ``SMALL_BODY_BYTES`` with 413, from its declared
Content-Length before a byte is read, or by counting a streamed (chunked) body and
stopping at the limit (Starlette's ``RequestBodyLimitMiddleware``, set through FastAPI's
``max_body_size``). A route that takes longer texts says so with
``max_body_size=TEXT_BODY_BYTES``. FastAPI reads a body before it checks the caller, so
without a bound a stranger's 400 MB POST was held in memory whole.

JSON: Python's parser takes ``NaN`` and ``Infinity``, which JSON does not have, and the
parsed value then failed later (a 500). Every route of the API parses bodies with
``StrictRoute``: non-finite numbers, invalid UTF-8, lone surrogates and NUL characters
are a 422 with the reason, like any other bad body.

NUL: no PostgreSQL text can hold one, so a NUL in a path parameter, a query parameter or
a form (``%00``) reached the database and failed there (a 500). It is a 422 here, before
any route runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
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
    raise _NotJson(f"{name} is not a JSON number")


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
        raise _NotJson("a NUL character (\\u0000) in text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _NotJson("a lone surrogate escape, which is not a character") from exc


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


class StrictRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
NUL_ERROR = "string_nul"


async def _refuse_nul(request: Request) -> None:
    """A 422 naming each parameter that holds a NUL character (or the form that does)."""
    where: list[tuple[str, ...]] = [
        ("path", name)
        for name, value in request.path_params.items()
        if isinstance(value, str) and "\x00" in value
    ]
    where += [
        ("query", name)
        for name, value in request.query_params.multi_items()
        if "\x00" in name or "\x00" in value
    ]
    if request.headers.get("content-type", "").startswith(FORMS):
        body = await request.body()  # bounded like any body; the form is parsed from it
        if b"\x00" in body or b"%00" in body:
            where.append(("body", "form"))
    if where:
        raise RequestValidationError(
            [
                {"type": NUL_ERROR, "loc": loc, "msg": "holds a NUL character (\\u0000)"}
                for loc in where
            ]
        )


class StrictRoute(APIRoute):
    """A route that refuses NUL characters in its parameters and forms, and parses its
    JSON body with ``parse_json``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def strict(request: Request) -> Response:
            checked = StrictRequest(request.scope, request.receive)
            await _refuse_nul(checked)
            return await handle(checked)

        return strict
