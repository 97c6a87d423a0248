"""HTTP hardening for the study server, as one pure ASGI middleware: a request-body size limit
(413 before the app parses anything), a per-client limit on new raters (429), and security headers
on every response, errors included."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 64 * 1024  # an answer is ~150 bytes; nothing a rater sends comes near this
    new_raters_per_minute: int = 20  # per client address; a lab PC shared by a few raters stays well below
    max_raters: int = 10_000  # per study; far beyond any real 2AFC study, small enough for the SQLite file


def inline_hashes(page: str, tag: str) -> list[str]:
    """CSP source expressions ('sha256-…') for each inline <tag>…</tag> block of the page."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
    return [f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks]


def content_security_policy(page: str) -> str:
    """Only the page's own inline script and style (by hash), images and API calls from this origin,
    never framed (clickjacking a rater into answers), no plugins, forms or base-URI tricks."""
    return "; ".join([
        "default-src 'none'", f"script-src {' '.join(inline_hashes(page, 'script'))}",
        f"style-src {' '.join(inline_hashes(page, 'style'))}", "img-src 'self'", "connect-src 'self'",
        "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"])


class RateLimiter:
    """At most `per_minute` events per key in any sliding 60 s window."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self.events: dict[str, deque] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        now, q = self.clock(), self.events[key]
        while q and now - q[0] >= 60.0:
            q.popleft()
        if len(q) >= self.per_minute:
            return False
        q.append(now)
        return True


class Guard:
    def __init__(self, app, max_body_bytes: int, headers: dict[str, str]):
        self.app, self.limit = app, max_body_bytes
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def _reply(self, send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *self.headers]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = f"request body over {self.limit} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._reply(send, 413, too_big)
        # Read the body here, bounded (a chunked upload has no Content-Length), then replay it.
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._reply(send, 413, too_big)
            if not msg.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_with_headers(msg):
            if msg["type"] == "http.response.start":
                msg = dict(msg, headers=[*msg.get("headers", []), *self.headers])
            await send(msg)

        await self.app(scope, replay, send_with_headers)
