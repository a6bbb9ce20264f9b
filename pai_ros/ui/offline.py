"""Keep the browser page off the internet.

Gradio's page template asks the browser to preconnect to Google Fonts and to load a script from
cdnjs (for embedding in iframes, which a local tool does not need). This ASGI middleware removes
those tags from HTML responses and sends a Content-Security-Policy that lets the page load and
connect to this server only, so whatever else a Gradio release adds is blocked by the browser
instead of fetched. It has no Gradio import: it is plain ASGI.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Same origin only; inline scripts/styles and eval are what Gradio's front end itself needs,
# data:/blob: are how it shows plots and images it already holds.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; "
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; "
    "media-src 'self' data: blob:; "
    "font-src 'self' data:; "
    "connect-src 'self'; "
    "worker-src 'self' blob:; "
    "frame-src 'self'; "
    "form-action 'self'; "
    "base-uri 'self'"
)

# <link ... href="http(s)://..."> (preconnect, stylesheets) and <script src="http(s)://..."></script>.
_EXTERNAL_TAGS = re.compile(
    rb"<link\b[^>]*\bhref\s*=\s*[\"']https?://[^>]*>"
    rb"|<script\b[^>]*\bsrc\s*=\s*[\"']https?://[^>]*>\s*</script>",
    re.IGNORECASE,
)


def strip_external_tags(html: bytes) -> bytes:
    """``html`` without the tags that make a browser contact another host."""
    return _EXTERNAL_TAGS.sub(b"", html)


class OfflinePageMiddleware:
    """Add the CSP header to every response; strip external tags from HTML ones."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"content-security-policy"]
                headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message = {**message, "headers": headers}
                content_type = {k.lower(): v for k, v in headers}.get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    start = message  # hold it back: the length changes once the body is rewritten
                    return
                await send(message)
            elif message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _send_rewritten(send, start, strip_external_tags(b"".join(body)))
            else:
                await send(message)

        await self.app(scope, receive, send_wrapper)


async def _send_rewritten(send: Send, start: Message, body: bytes) -> None:
    headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
