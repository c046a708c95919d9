"""The search page at ``/`` and the API docs at ``/docs``: static files shipped in the package
(``search_service/static/``), no asset from the internet.

The page is plain HTML, CSS and JavaScript talking to the JSON API (``static/app.js``); ``/docs``
renders ``/openapi.json`` with a small self-contained viewer (``static/docs.js``) that can send
requests, because no pinned dependency ships Swagger UI or ReDoc. Both pages and their files are
served without the API key (they hold no data); the page asks for the key when the API answers 401
and keeps it for the tab (``sessionStorage``).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

# The pages change with the code, not per request: revalidate (cheap 304s through the ETag).
_HEADERS = {"Cache-Control": "no-cache"}


async def index_page(request: Request) -> FileResponse:
    """``GET /``: the search page."""
    return FileResponse(STATIC_DIR / "index.html", headers=_HEADERS)


async def docs_page(request: Request) -> FileResponse:
    """``GET /docs``: the interactive view of ``/openapi.json``."""
    return FileResponse(STATIC_DIR / "docs.html", headers=_HEADERS)


def page_routes() -> list[BaseRoute]:
    """The routes of the page, the docs and their static files."""
    return [
        Route("/", index_page, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
