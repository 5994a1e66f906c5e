"""Connections on the gateway's ports: deadlines for slow clients, a cap on open connections,
and client faults counted in a metric instead of logged one by one.

aiohttp closes an idle keep-alive connection (`keepalive_timeout`), but on its own it waits
forever for a request head sent a byte at a time or for a body that stalls, accepts any number
of connections, and logs an ERROR with a traceback for every malformed request and every body
a client cut short. `GuardedSite` listens like `web.TCPSite`, but each connection is a
`GuardedRequestHandler`, which adds what is missing:

- a request head (line and headers) must be complete `header_timeout_s` after the connection
  opened or after the head's first byte; trickling bytes does not extend it;
- a body may not go `body_timeout_s` without a byte arriving;
- past `max_connections` open connections, a new one gets a 503 and is closed; the open ones
  are served as before;
- malformed requests, aborted bodies, timeouts and refused connections count in
  `gateway_client_faults_total{kind}` and log at most one line per kind a minute.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from prometheus_client import Counter

from gateway.core.logs import ThrottledLog
from gateway.core.settings import Settings

log = logging.getLogger(__name__)

# The kinds of `gateway_client_faults_total`.
MALFORMED: Final = "malformed"  # a request line, header or body that is not valid HTTP
ABORTED: Final = "aborted"  # the client went away in the middle of a request
HEADER_TIMEOUT: Final = "header_timeout"
BODY_TIMEOUT: Final = "body_timeout"
OVER_CAPACITY: Final = "over_capacity"

_FAULT_MESSAGES = {
    MALFORMED: "a request that is not valid HTTP was refused",
    ABORTED: "a client went away in the middle of a request",
    HEADER_TIMEOUT: "a connection that did not send a whole request head in time was closed",
    BODY_TIMEOUT: "a connection whose request body stalled was closed",
    OVER_CAPACITY: "a connection past GATEWAY_MAX_CONNECTIONS was refused",
}


def _error_body(code: str, message: str) -> bytes:
    return msgspec.json.encode({"error": {"code": code, "message": message}})


_OVER_CAPACITY_BODY = _error_body("over_capacity", "too many open connections; retry later")
# Written before the request is read, then the connection is closed: no handler, no parsing.
_OVER_CAPACITY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_OVER_CAPACITY_BODY)).encode() + b"\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n" + _OVER_CAPACITY_BODY
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            keepalive_timeout_s=settings.keepalive_timeout_s,
            max_connections=settings.max_connections,
        )


class ClientFaults:
    """Counts what clients got wrong, by kind, and says so in the log at most once a minute."""

    def __init__(self, counter: Counter, interval_s: float = 60.0) -> None:
        self._counter = counter
        self._log = ThrottledLog(log, interval_s)

    def record(self, kind: str) -> None:
        self._counter.labels(kind).inc()
        self._log.warning(kind, f"{_FAULT_MESSAGES[kind]} (gateway_client_faults_total)")


class ConnectionGuard:
    """One port's limits, its count of open connections and where faults are recorded."""

    def __init__(self, limits: ConnectionLimits, faults: ClientFaults) -> None:
        self.limits = limits
        self.faults = faults
        self.open_connections = 0

    def admit(self) -> bool:
        if self.open_connections >= self.limits.max_connections:
            return False
        self.open_connections += 1
        return True

    def release(self) -> None:
        self.open_connections -= 1


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with deadlines for the head and the body, and quiet faults.

    One timer per connection, re-armed lazily (as aiohttp's own keep-alive timer is): bytes of a
    body only move `_deadline`, they never touch the loop's timer heap.
    """

    __slots__ = (
        "_body",
        "_deadline",
        "_deadline_handle",
        "_fault_recorded",
        "_guard",
        "_peer_closed",
        "_rejected",
        "_waiting_for",
    )

    def __init__(self, manager: Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=guard.limits.keepalive_timeout_s, **kwargs)
        self._guard = guard
        self._rejected = False  # refused past the cap: aiohttp never saw it
        # Every fault ends its connection, so a connection counts one at most: a stalled body
        # is a body_timeout, not also the aborted request it then causes.
        self._fault_recorded = False
        self._peer_closed = False  # the client sent its EOF
        self._waiting_for: str | None = None  # HEADER_TIMEOUT or BODY_TIMEOUT while armed
        self._deadline = 0.0
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._body: Any = None  # the payload of the latest request, while it is arriving

    # -- connection --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit():
            self._rejected = True
            self._guard.faults.record(OVER_CAPACITY)
            assert isinstance(transport, asyncio.Transport)
            transport.write(_OVER_CAPACITY_RESPONSE)
            transport.close()
            return
        super().connection_made(transport)
        self._arm(HEADER_TIMEOUT, self._guard.limits.header_timeout_s)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._rejected:
            return
        self._guard.release()
        self._disarm()
        if self._deadline_handle is not None:  # nothing left to time on a closed connection
            self._deadline_handle.cancel()
            self._deadline_handle = None
        body = self._body
        cut_short = not self._body_complete() and (exc is not None or self._peer_closed)
        super().connection_lost(exc)
        if cut_short:
            self._record_fault(ABORTED)
            # aiohttp fails the body of a handler still running, but not one it drains after an
            # early answer (a 401, say): that would wait for bytes that never come.
            body.feed_eof()

    def eof_received(self) -> None:
        self._peer_closed = True
        super().eof_received()

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        if data and self._waiting_for is None and self._body_complete():
            # The first bytes of the next request on a kept-alive connection.
            self._arm(HEADER_TIMEOUT, self._guard.limits.header_timeout_s)
        heads_before = self._request_count
        super().data_received(data)
        if self._request_count != heads_before and self._messages:
            self._body = self._messages[-1][1]
            if self._body_complete():
                self._disarm()
            else:
                self._arm(BODY_TIMEOUT, self._guard.limits.body_timeout_s)
        elif self._waiting_for == BODY_TIMEOUT:
            if self._body_complete():
                self._disarm()
            else:
                self._deadline = self._loop.time() + self._guard.limits.body_timeout_s

    def _body_complete(self) -> bool:
        return self._body is None or bool(self._body.is_eof())

    # -- the deadline ------------------------------------------------------------------------
    def _arm(self, waiting_for: str, timeout_s: float) -> None:
        self._waiting_for = waiting_for
        self._deadline = self._loop.time() + timeout_s
        handle = self._deadline_handle
        if handle is not None and handle.when() > self._deadline:  # a shorter timeout now
            handle.cancel()
            handle = None
        if handle is None:
            self._deadline_handle = self._loop.call_at(self._deadline, self._deadline_reached)

    def _disarm(self) -> None:
        # The timer stays in the loop: cancelling it here and scheduling a new one for the next
        # request cost two timer operations a hit; when it fires with nothing awaited, it stops.
        self._waiting_for = None

    def _deadline_reached(self) -> None:
        self._deadline_handle = None
        waiting_for = self._waiting_for
        if waiting_for is None or self.transport is None:
            return
        now = self._loop.time()
        if waiting_for == BODY_TIMEOUT and self._reading_paused:
            # aiohttp stopped reading because the handler is behind: the client is not the one
            # stalling, so its time starts again.
            self._deadline = now + self._guard.limits.body_timeout_s
        if now < self._deadline:
            self._deadline_handle = self._loop.call_at(self._deadline, self._deadline_reached)
            return
        self._waiting_for = None
        # Counted once: the request that was waiting on this body fails as "aborted" next.
        self._record_fault(waiting_for)
        self.force_close()

    # -- faults ------------------------------------------------------------------------------
    def _record_fault(self, kind: str) -> None:
        if not self._fault_recorded:
            self._fault_recorded = True
            self._guard.faults.record(kind)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        kind = self._client_fault(exc)
        if kind is None:  # the gateway's own failure: aiohttp logs it with its traceback
            return super().handle_error(request, status, exc, message)
        self._record_fault(kind)
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started; the connection is closed")
        # For an aborted request nobody reads this answer; aiohttp's attempt to send it fails.
        response = web.Response(
            status=400,
            body=_error_body("malformed_request", "the request is not valid HTTP"),
            content_type="application/json",
        )
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's last resort, e.g. draining a body after the answer when its bytes are not
        valid or the client has gone: a client fault is counted there too, not logged."""
        exc = kw.get("exc_info")
        kind = self._client_fault(exc) if isinstance(exc, BaseException) else None
        if kind is None:
            super().log_exception(*args, **kw)
        else:
            self._record_fault(kind)

    def _client_fault(self, exc: BaseException | None) -> str | None:
        """The kind of client fault `exc` is, or None when the gateway itself failed."""
        if isinstance(exc, HttpProcessingError | web.RequestPayloadError):
            return MALFORMED  # raised only by parsing what the client sent
        # A connection error while the client is still connected is not the client's doing
        # (a library's socket to a backend, say): that stays a logged 500.
        if isinstance(exc, ConnectionError) and self.transport is None:
            return ABORTED
        return None


class GuardedSite(web.BaseSite):
    """A TCP listener like `web.TCPSite`, whose connections are `GuardedRequestHandler`s."""

    __slots__ = ("_bound_port", "_guard", "_host", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        reuse_port: bool = False,
        backlog: int = 2048,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard
        self._reuse_port = reuse_port
        self._bound_port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose when asked for port 0)."""
        return self._bound_port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        guard = self._guard

        def connection() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, guard, loop=loop, access_log=None)

        self._server = await loop.create_server(
            connection,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )
        if self._server.sockets:
            self._bound_port = int(self._server.sockets[0].getsockname()[1])


async def start_server(
    app: web.Application,
    host: str,
    port: int,
    guard: ConnectionGuard,
    *,
    shutdown_timeout_s: float,
    reuse_port: bool = False,
) -> tuple[web.AppRunner, GuardedSite]:
    """Serve `app` on host:port with `guard`'s limits; `runner.cleanup()` stops it."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout_s
    )
    await runner.setup()
    site = GuardedSite(runner, host, port, guard, reuse_port=reuse_port)
    await site.start()
    return runner, site
