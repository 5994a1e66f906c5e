"""A webhook receiver for tests: a real aiohttp server that records every request and answers
with the statuses a test scripts (200 when nothing is scripted)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

PATH = "/hooks/events"


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: Any  # the parsed JSON (None when it was not JSON)
    status: int  # what the double answered


class WebhookDouble:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: deque[int] = deque()
        self._changed = asyncio.Event()
        self._server: TestServer | None = None

    async def __aenter__(self) -> WebhookDouble:
        app = web.Application()
        app.router.add_post(PATH, self._receive)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "use `async with WebhookDouble()`"
        return str(self._server.make_url(PATH))

    def play(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, in order."""
        self._script.extend(statuses)

    def accepted_events(self) -> list[dict[str, Any]]:
        return [e for r in self.requests if 200 <= r.status < 300 for e in r.body["events"]]

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until `predicate()` holds (re-checked after every request and every 50 ms)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.05)

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        status = self._script.popleft() if self._script else 200
        self.requests.append(Received(dict(request.headers), body, status))
        self._changed.set()
        return web.json_response({"received": status < 300}, status=status)
