"""The Management UI: static files served from `/` on the admin port, no build step, no CDN.

The page is plain HTML, CSS and JavaScript modules under `static/ui/`; everything it shows comes
from the Management API with the admin token the operator signs in with (kept in the tab's
sessionStorage). The files themselves hold no secret, so they are served without a token.
"""

from __future__ import annotations

from aiohttp import web

from gateway.core.assets import asset

_TYPES = {
    "js": "text/javascript",
    "css": "text/css",
    "svg": "image/svg+xml",
    "html": "text/html",
}
# Nothing from elsewhere: the page works offline and no third party sees the admin's screens.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
}
# X-Content-Type-Options, X-Frame-Options and Cache-Control (no-store: an upgraded gateway
# serves its own UI at once) come with every admin answer (admin.SECURITY_HEADERS).


def add_ui(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get("/", index),
            web.get(r"/ui/{name:[a-z0-9-]+\.(js|css|svg)}", ui_file),
        ]
    )


async def index(request: web.Request) -> web.Response:
    return await _serve("index.html")


async def ui_file(request: web.Request) -> web.Response:
    return await _serve(request.match_info["name"])


async def _serve(name: str) -> web.Response:
    try:
        body = await asset(f"static/ui/{name}")
    except FileNotFoundError:
        raise web.HTTPNotFound() from None
    content_type = _TYPES[name.rsplit(".", 1)[1]]
    return web.Response(
        body=body, headers={**_HEADERS, "Content-Type": f"{content_type}; charset=utf-8"}
    )
