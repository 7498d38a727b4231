"""Security headers on every response the dispatch service sends.

The consoles load nothing from elsewhere and run no inline script, so the policy allows
only this origin (the staff page's service worker and web app manifest too); no page may
frame them (clickjacking a "claim" or an "open the door"), no address leaks to other
sites, and no response is sniffed into another type.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def content_security_policy(image_origins: tuple[str, ...] = ()) -> str:
    """The policy; ``image_origins``: where else images may come from (a tile server)."""
    images = " ".join(("'self'", "data:", *image_origins))
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {images}; "
        "media-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; "
        "worker-src 'self'; manifest-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


CONTENT_SECURITY_POLICY = content_security_policy()
HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


class SecurityHeaders:
    """ASGI middleware (not Starlette's BaseHTTPMiddleware, which would buffer the live
    streams): adds ``HEADERS`` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, image_origins: tuple[str, ...] = ()) -> None:
        self.app = app
        headers = {"Content-Security-Policy": content_security_policy(image_origins), **HEADERS}
        self._raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self._raw if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
