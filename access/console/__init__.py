"""The web console: a static front end (HTML, CSS, vanilla JS modules) over the JSON API.

    GET /                                   redirect to the console
    GET /favicon.ico                        redirect to the console's icon (/console/favicon.svg)
    GET /console/...                        the pages and their scripts (no build step, no CDN)
    GET /console/api/me                     who is signed in and which pages they may use
    GET /console/api/recordings/{id}        the recording's detail and what the user may do with it

The pages call the same API as any client, with the bearer token the user pasted (kept in
``sessionStorage``): every action is decided and audited by the API's own views, so the
console can only *hide* what the policy forbids, never allow it. Audio plays from signed
stream links (``POST /copies/{id}/stream-link``), since an ``<audio>`` element cannot send a
bearer.
"""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    # Imported here: the views import the API package, which imports this one.
    from .static import ConsoleFiles
    from .views import router

    app.include_router(router)
    app.mount("/console", ConsoleFiles(), name="console")
