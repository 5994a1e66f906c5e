"""The ceiling: the least an aiohttp + uvloop server can do for a hit.

It reads the same JSON body, parses it (the standard library's `json`, as a bare aiohttp app
would), and answers 204 with one `Set-Cookie` (the browser id: kept when sent, else a new UUID).
No validation, no storage, no metrics, no access log: whatever the gateway costs beyond this is
the gateway's own.

    python -m bench.ceiling --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import uuid

from aiohttp import web

THIRTEEN_MONTHS_S = 395 * 86_400


async def hit(request: web.Request) -> web.Response:
    json.loads(await request.read())
    response = web.Response(status=204)
    ttp = request.cookies.get("_ttp") or str(uuid.uuid4())
    response.set_cookie("_ttp", ttp, max_age=THIRTEEN_MONTHS_S, path="/", samesite="Lax")
    return response


async def health(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app() -> web.Application:
    app = web.Application()
    for path in ("/v1/t", "/v1/p", "/v1/i", "/v1/batch"):
        app.router.add_post(path, hit)
    app.router.add_get("/healthz", health)
    return app


async def _serve(host: str, port: int) -> None:
    # The same server settings as the gateway's collection port (gateway/cli.py).
    runner = web.AppRunner(create_app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=2048).start()
    print(f"ceiling ready on {port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
