"""A test server that serves an app the way `gateway serve` does: through
`gateway.connections.start_server`, so every connection is a `GuardedRequestHandler`.

aiohttp's `TestServer` listens with a plain `SockSite` and aiohttp's own connection handler;
tests that use it never see the production deadlines, connection cap or quiet client faults.
This one plugs into `TestClient` the same way (`make_url`, `port`, `close`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import BaseTestServer
from yarl import URL

from gateway.serve import ConnectionGuard, start_server


class GuardedTestServer(BaseTestServer):
    def __init__(
        self,
        app: web.Application,
        guard: ConnectionGuard,
        *,
        shutdown_timeout_s: float,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host=host, port=0)
        self.app = app
        self._guard = guard
        self._shutdown_timeout_s = shutdown_timeout_s

    async def start_server(
        self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        # BaseTestServer.start_server always listens with a SockSite; this one does not.
        if self.runner:
            return
        self._loop = loop
        self.runner, site = await start_server(
            self.app,
            self.host,
            0,
            self._guard,
            shutdown_timeout_s=self._shutdown_timeout_s,
        )
        self.port = site.port
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        raise NotImplementedError("start_server() builds the runner as `gateway serve` does")
