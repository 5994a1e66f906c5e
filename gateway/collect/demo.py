"""The demo shop at `/demo` on the collection port: a page that installs the tag as a site does.

It lets a new user see events flow (page view, product view, add to cart, purchase) without
writing a page. It names a source (`?source_id=`, else the README's `src_abc123`) and sends real
hits to it, nothing more than anyone can send to the public collection API; it is marked
`noindex` so crawlers leave it alone.
"""

from __future__ import annotations

import html
import re

from aiohttp import web

from gateway.core.assets import asset

DEMO_SOURCE_ID = "src_abc123"  # the quick start's source
_SOURCE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


async def handle_demo(request: web.Request) -> web.Response:
    source_id = request.query.get("source_id", DEMO_SOURCE_ID)
    if not _SOURCE_ID.fullmatch(source_id):
        error = {"code": "invalid_field", "message": "source_id must be a source's id"}
        return web.json_response({"error": error}, status=400)
    template = (await asset("static/demo.html")).decode()
    page = template.replace("{{source_id}}", html.escape(source_id))
    return web.Response(
        text=page,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"},
    )
