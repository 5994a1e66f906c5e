"""Slow, idle, malformed and too many clients, over raw sockets against the servers as the CLI
starts them (gateway.connections.start_server) with short limits set through settings.

Every wait on the server is bounded (`CLOSE_WITHIN_S`): a connection the gateway leaves open
fails the test instead of hanging it. No assertion is about how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.collect.app import create_collect_app
from gateway.core.errors import SettingsError
from gateway.core.logs import ThrottledLog
from gateway.core.settings import Settings
from gateway.serve import ClientFaults, ConnectionGuard, ConnectionLimits, start_server
from gateway.wiring import Wired, wire
from tests.conftest import ADMIN_TOKEN, Gateway, MakeGateway, base_env
from tests.tiktok_double import TikTokDouble

CLOSE_WITHIN_S = 10.0
# Short head and body timeouts; the keep-alive timeout is long, so it is not what closes.
SHORT = {
    "GATEWAY_HEADER_TIMEOUT_S": "0.5",
    "GATEWAY_BODY_TIMEOUT_S": "0.5",
    "GATEWAY_KEEPALIVE_TIMEOUT_S": "60",
}
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"
POST_HEAD = (
    b"POST /v1/p HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n"
)


@dataclass
class Served:
    port: int
    wired: Wired
    guard: ConnectionGuard

    def faults(self, kind: str) -> float:
        value = self.wired.metrics.registry.get_sample_value(
            "gateway_client_faults_total", {"kind": kind}
        )
        return value or 0.0


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, tiktok: TikTokDouble, **env: str) -> AsyncIterator[Served]:
    """The collection app on a loopback port, behind the same guard `gateway serve` uses."""
    settings = Settings.from_mapping({**base_env(tmp_path / "data", tiktok.url), **env})
    async with wire(settings, run_worker=False) as wired:
        guard = ConnectionGuard(
            ConnectionLimits.from_settings(settings), ClientFaults(wired.metrics.client_faults)
        )
        runner, site = await start_server(
            create_collect_app(wired.collect), "127.0.0.1", 0, guard, shutdown_timeout_s=1.0
        )
        try:
            yield Served(site.port, wired, guard)
        finally:
            await runner.cleanup()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes; fails if it keeps the connection open."""
    try:
        return await asyncio.wait_for(reader.read(), CLOSE_WITHIN_S)
    except TimeoutError:
        raise AssertionError(f"the gateway kept the connection open {CLOSE_WITHIN_S} s") from None
    except ConnectionResetError:
        return b""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP response (status, body) from a kept-alive connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSE_WITHIN_S)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await asyncio.wait_for(reader.readexactly(length), CLOSE_WITHIN_S)


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll a condition on the server's side (a counter, a slot freed), for a bounded time."""
    for _ in range(int(CLOSE_WITHIN_S / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {CLOSE_WITHIN_S} s: {what}")


# -- slow and idle clients ---------------------------------------------------------------------


async def test_idle_socket_is_closed(tmp_path: Path, tiktok: TikTokDouble) -> None:
    async with serving(tmp_path, tiktok, **SHORT) as served:
        reader, writer = await connect(served.port)
        assert await read_until_closed(reader) == b""
        writer.close()
        assert served.faults("header_timeout") == 1


async def test_half_request_line_is_closed(tmp_path: Path, tiktok: TikTokDouble) -> None:
    async with serving(tmp_path, tiktok, **SHORT) as served:
        reader, writer = await connect(served.port)
        writer.write(b"POST /v1/p HT")
        assert await read_until_closed(reader) == b""
        writer.close()
        assert served.faults("header_timeout") == 1


async def test_headers_trickled_byte_by_byte_are_closed(
    tmp_path: Path, tiktok: TikTokDouble
) -> None:
    # Slowloris: every header line arrives well within the timeout, the head never ends.
    async with serving(tmp_path, tiktok, **SHORT) as served:
        reader, writer = await connect(served.port)
        writer.write(b"POST /v1/p HTTP/1.1\r\n")

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for n in range(10_000):
                    writer.write(f"X-Slow-{n}: 1\r\n".encode())
                    await writer.drain()
                    await asyncio.sleep(0.05)

        trickling = asyncio.create_task(trickle())
        try:
            assert await read_until_closed(reader) == b""
        finally:
            trickling.cancel()
            writer.close()
        assert served.faults("header_timeout") == 1


async def test_stalled_body_is_closed_and_counted_once(
    tmp_path: Path, tiktok: TikTokDouble
) -> None:
    async with serving(tmp_path, tiktok, **SHORT) as served:
        reader, writer = await connect(served.port)
        writer.write(POST_HEAD + b"\r\n" + b'{"source_id":')  # 13 of 100 bytes, then nothing
        assert await read_until_closed(reader) == b""
        writer.close()
        await wait_until(lambda: served.faults("body_timeout") == 1, "body_timeout counted")
        assert served.faults("aborted") == 0


async def test_slow_body_that_keeps_moving_is_served(tmp_path: Path, tiktok: TikTokDouble) -> None:
    # The body timeout is about a stall, not the whole body: 20 pieces, 0.1 s apart (2 s in
    # all) against a 1 s body timeout.
    async with serving(tmp_path, tiktok, GATEWAY_BODY_TIMEOUT_S="1") as served:
        body = b'{"source_id": "src_none", "event": "x"}'.ljust(100)
        reader, writer = await connect(served.port)
        writer.write(POST_HEAD + b"\r\n")
        for n in range(20):
            writer.write(body[n * 5 : n * 5 + 5])
            await writer.drain()
            await asyncio.sleep(0.1)
        status, _ = await read_response(reader)
        writer.close()
    assert 400 <= status < 500  # an unknown source: answered, not cut off
    assert served.faults("body_timeout") == 0


async def test_idle_keep_alive_connection_is_closed(tmp_path: Path, tiktok: TikTokDouble) -> None:
    async with serving(
        tmp_path, tiktok, GATEWAY_KEEPALIVE_TIMEOUT_S="0.5", GATEWAY_HEADER_TIMEOUT_S="60"
    ) as served:
        reader, writer = await connect(served.port)
        writer.write(HEALTH)
        status, _ = await read_response(reader)
        assert status == 200
        assert await read_until_closed(reader) == b""
        writer.close()
        # An idle connection between requests is no client's fault.
        assert served.faults("header_timeout") == 0


async def test_connection_cap_refuses_new_connections_and_serves_open_ones(
    tmp_path: Path, tiktok: TikTokDouble
) -> None:
    async with serving(tmp_path, tiktok, GATEWAY_MAX_CONNECTIONS="2") as served:
        first = await connect(served.port)
        second = await connect(served.port)
        for reader, writer in (first, second):  # both accepted and kept alive
            writer.write(HEALTH)
            assert (await read_response(reader))[0] == 200

        reader, writer = await connect(served.port)
        refused = await read_until_closed(reader)
        writer.close()
        assert refused.startswith(b"HTTP/1.1 503 ") or refused == b""
        assert served.faults("over_capacity") == 1

        # The connections already open are served as before.
        first[1].write(HEALTH)
        assert (await read_response(first[0]))[0] == 200

        # A connection that closes makes room for a new one.
        second[1].close()
        await wait_until(lambda: served.guard.open_connections < 2, "the closed one's slot freed")
        reader, writer = await connect(served.port)
        writer.write(HEALTH)
        assert (await read_response(reader))[0] == 200
        writer.close()
        first[1].close()


# -- faults: counted, logged at most once per kind ---------------------------------------------

MALFORMED = b"GET /healthz HTTP/1.1\r\nHost gateway\r\n\r\n"  # a header line without a colon
ABORTS = 20


async def test_malformed_and_aborted_requests_are_counted_not_logged_each(
    tmp_path: Path, tiktok: TikTokDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(tmp_path, tiktok) as served:
        answers = []
        for _ in range(ABORTS):
            reader, writer = await connect(served.port)
            writer.write(MALFORMED)
            answers.append(await read_until_closed(reader))
            writer.close()

        for _ in range(ABORTS):
            # `Expect: 100-continue` makes the gateway say when its handler is about to read the
            # body: the client goes away in the middle of it, every time.
            reader, writer = await connect(served.port)
            writer.write(POST_HEAD + b"Expect: 100-continue\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSE_WITHIN_S)
            writer.write(b'{"source_id":')
            await writer.drain()
            writer.transport.abort()

        await wait_until(lambda: served.faults("aborted") == ABORTS, "every abort counted")
        assert served.faults("malformed") == ABORTS

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r for r in warnings if r.exc_info or r.exc_text] == []
    assert [r.levelname for r in warnings if r.levelno >= logging.ERROR] == []
    lines = [r.getMessage() for r in warnings]
    assert sum(line.startswith("malformed:") for line in lines) == 1, lines
    assert sum(line.startswith("aborted:") for line in lines) == 1, lines
    for answer in answers:
        assert answer.split(b" ", 2)[1] == b"400"
        assert b'"malformed_request"' in answer  # the JSON error shape, not aiohttp's text


def test_limits_are_validated_with_the_variable_named() -> None:
    defaults = Settings.from_mapping({})
    assert (defaults.header_timeout_s, defaults.body_timeout_s) == (10.0, 10.0)
    assert (defaults.keepalive_timeout_s, defaults.max_connections) == (75.0, 10_000)
    for name, bad in (
        ("GATEWAY_HEADER_TIMEOUT_S", "0"),
        ("GATEWAY_BODY_TIMEOUT_S", "soon"),
        ("GATEWAY_KEEPALIVE_TIMEOUT_S", "-1"),
        ("GATEWAY_MAX_CONNECTIONS", "0"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_mapping({name: bad})


def test_throttled_log_says_how_many_lines_it_skipped(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttled = ThrottledLog(logging.getLogger("test.throttled"), 60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        for second in range(0, 130, 10):  # 13 faults of one kind, 10 s apart
            now[0] = float(second)
            throttled.warning("aborted", "gone")
        throttled.warning("malformed", "bad")
    assert [r.getMessage() for r in caplog.records] == [
        "aborted: gone",
        "aborted: gone; 5 more like it since the last such line",
        "aborted: gone; 5 more like it since the last such line",
        "malformed: bad",
    ]


# -- the in-process gateway every other test uses ----------------------------------------------


def gateway_faults(gw: Gateway, kind: str) -> float:
    value = gw.wired.metrics.registry.get_sample_value(
        "gateway_client_faults_total", {"kind": kind}
    )
    return value or 0.0


async def test_in_process_gateway_serves_both_ports_through_the_guard(
    make_gateway: MakeGateway,
) -> None:
    """`make_gateway` serves as `gateway serve` does, so the other tests exercise the same
    connection handler: client faults counted with the JSON answer, the connection cap."""
    async with make_gateway(GATEWAY_MAX_CONNECTIONS="1") as gw:
        for port in (gw.collect.server.port, gw.admin.server.port):
            assert port is not None
            reader, writer = await connect(port)
            writer.write(MALFORMED)
            answer = await read_until_closed(reader)
            writer.close()
            assert answer.split(b" ", 2)[1] == b"400", answer
            assert b'"malformed_request"' in answer, answer
        assert gateway_faults(gw, "malformed") == 2

        admin_port = gw.admin.server.port
        assert admin_port is not None
        _, held = await connect(admin_port)
        reader, writer = await connect(admin_port)
        refused = await read_until_closed(reader)
        writer.close()
        held.close()
        assert refused.split(b" ", 2)[1] == b"503", refused
        assert gateway_faults(gw, "over_capacity") == 1


ADMIN_POST_HEAD = (
    b"POST /v1/admin/sources HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n"
)


@pytest.mark.parametrize("authorized", [True, False], ids=["token", "no_token"])
async def test_admin_body_cut_short_is_an_aborted_client_fault(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture, authorized: bool
) -> None:
    """An admin client that closes in the middle of its body is counted like one on the
    collection port: `aborted`, no traceback, nothing at ERROR."""
    caplog.set_level(logging.DEBUG)
    authorization = f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode() if authorized else b""
    async with make_gateway() as gw:
        port = gw.admin.server.port
        assert port is not None
        reader, writer = await connect(port)
        # `Expect: 100-continue`: the gateway says when it has routed the request; the body's
        # first bytes follow, then the client is gone.
        writer.write(ADMIN_POST_HEAD + authorization + b"Expect: 100-continue\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSE_WITHIN_S)
        writer.write(b'{"id": "src_cut", "name": ')
        await writer.drain()
        writer.close()
        await wait_until(lambda: gateway_faults(gw, "aborted") == 1, "the abort counted")
        assert await gw.wired.store.get_source("src_cut") is None

    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert [f"{r.name}: {r.getMessage()}" for r in noisy] == []


# Not deflate data: aiohttp's parser fails the body as it arrives, after the head was routed.
BROKEN_DEFLATE_POST = (
    b"POST /no-such-path HTTP/1.1\r\nHost: gateway\r\nContent-Encoding: deflate\r\n"
    b"Content-Length: 10\r\n\r\nnotdeflate"
)


@pytest.mark.parametrize("port_of", ["collect", "admin"])
async def test_broken_body_drained_after_an_early_answer_is_a_malformed_fault(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture, port_of: str
) -> None:
    """An answer given before the body was read (a 404 here) leaves aiohttp draining the
    body, where a parser refusal used to be logged as an unhandled exception."""
    caplog.set_level(logging.DEBUG)
    async with make_gateway() as gw:
        port = gw.collect.server.port if port_of == "collect" else gw.admin.server.port
        assert port is not None
        reader, writer = await connect(port)
        writer.write(BROKEN_DEFLATE_POST)
        answer = await read_until_closed(reader)
        writer.close()
        assert answer.split(b" ", 2)[1] == b"404", answer
        await wait_until(lambda: gateway_faults(gw, "malformed") == 1, "the refusal counted")

    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert [f"{r.name}: {r.getMessage()}" for r in noisy] == []


async def test_admin_body_broken_in_transit_is_a_malformed_fault_not_a_500(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with make_gateway() as gw:
        port = gw.admin.server.port
        assert port is not None
        reader, writer = await connect(port)
        writer.write(
            b"POST /v1/admin/sources HTTP/1.1\r\nHost: gateway\r\n"
            + f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Encoding: deflate\r\n"
            b"Content-Length: 10\r\n\r\nnotdeflate"
        )
        answer = await read_until_closed(reader)
        writer.close()
        assert answer.split(b" ", 2)[1] == b"400", answer
        assert b'"malformed_request"' in answer, answer
        assert gateway_faults(gw, "malformed") == 1

    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert [f"{r.name}: {r.getMessage()}" for r in noisy] == []
