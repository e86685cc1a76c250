"""The console's files, served with headers that keep them to this origin.

The Content-Security-Policy allows scripts, styles, media and requests from this origin only
(no inline script, no third party), so an injected string can neither run nor call out;
``no-referrer`` keeps signed stream links out of Referer headers.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

ROOT = Path(__file__).parent / "static"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}


# What the API's metrics label these requests with (a mount is no route of its own).
ROUTE = SimpleNamespace(path="/console/{file}")


class ConsoleFiles(StaticFiles):
    def __init__(self) -> None:
        super().__init__(directory=ROOT, html=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = ROUTE

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in HEADERS]
                message["headers"] = raw + [(k.encode(), v.encode()) for k, v in HEADERS.items()]
            await send(message)

        await super().__call__(scope, receive, with_headers)
