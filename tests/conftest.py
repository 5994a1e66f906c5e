"""Shared fixtures: the TikTok double and a whole gateway (its wiring + both servers) in-process.

Everything is real: aiohttp servers on loopback ports, SQLite files in `tmp_path`, HTTP calls.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from blockbuster import BlockBuster, blockbuster_ctx

from gateway.admin.api import create_admin_app
from gateway.collect.app import create_collect_app
from gateway.core.settings import Settings
from gateway.serve import ClientFaults, ConnectionGuard, ConnectionLimits
from gateway.wiring import Wired, wire
from tests.guarded_server import GuardedTestServer
from tests.tiktok_double import TikTokDouble

pytest_plugins = ["tests.backends", "tests.log_audit"]

ADMIN_TOKEN = "test-admin-token-0123456789"
REQUIRE_SERVICES = os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1"


@dataclass
class Gateway:
    """A running gateway: what `wire` opened, and clients for the collection and admin ports."""

    wired: Wired
    collect: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    data_dir: Path

    async def create_source(self, **fields: Any) -> dict[str, Any]:
        from tests import log_audit  # imported here: pytest loads it as a plugin first

        body = {"id": "src_test", "name": "Test shop", "allowed_origins": ["https://shop.example"]}
        body.update(fields)
        resp = await self.admin.post("/v1/admin/sources", json=body)
        assert resp.status == 201, await resp.text()
        created = dict(await resp.json())
        log_audit.remember_secret(created["server_key"])  # the log audit looks for it too
        return created

    async def create_integration(self, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "source_id": "src_test",
            "vendor": "tiktok",
            "name": "TikTok Events API",
            "enabled": True,
            "config": {"pixel_code": "CTESTPIXEL0000000001", "access_token": "tok_test_0123456789"},
            "consent_categories": ["advertising"],
        }
        body.update(fields)
        resp = await self.admin.post("/v1/admin/integrations", json=body)
        assert resp.status == 201, await resp.text()
        return dict(await resp.json())

    async def delivered(self, timeout_s: float = 10.0) -> None:
        """Wait until delivery has read every hit collected so far and settled what it sends,
        then write the debugger's records of it.

        Collection only appends to the hit log: what consent keeps back, what TikTok receives,
        what is dead-lettered and what the debugger shows are decided when an active
        integration reads the hit, not when the request is answered. Paused and disabled
        integrations are not waited for (they read nothing).
        """
        assert self.wired.worker is not None, "this gateway runs no delivery worker"
        await self.wired.worker.drain(timeout_s)
        await self.wired.ledger.flush()


def base_env(data_dir: Path, tiktok_url: str) -> dict[str, str]:
    return {
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_TIKTOK_API_URL": tiktok_url,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_BATCH_MAX_WAIT_MS": "50",
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_HOST": "127.0.0.1",
    }


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test in which something blocks the event loop (as aiohttp's own suite does)."""
    # Only the gateway's own code is watched: a test may read a file to check what was written.
    with blockbuster_ctx(scanned_modules=["gateway"]) as bb:
        # asyncpg reads libpq's files (~/.pgpass, ~/.postgresql/*) as it opens a connection, like
        # libpq does; pool connections are long-lived, so this is allowed there and only there.
        for function in bb.functions.values():
            function.can_block_in("asyncpg/connect_utils.py", "_parse_connect_dsn_and_args")
        yield bb


@pytest.fixture
async def tiktok() -> AsyncIterator[TikTokDouble]:
    async with TikTokDouble() as double:
        yield double


MakeGateway = Callable[..., AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def make_gateway(tmp_path: Path, tiktok: TikTokDouble) -> MakeGateway:
    """Start a gateway with extra settings: `async with make_gateway(GATEWAY_X="1") as gw:`."""

    @contextlib.asynccontextmanager
    async def start(**overrides: str) -> AsyncIterator[Gateway]:
        env = base_env(tmp_path / "data", tiktok.url)
        env.update(overrides)
        settings = Settings.from_mapping(env)
        async with wire(settings) as wired:
            # Served as `gateway serve` serves them: each port its own guard, one fault count.
            limits = ConnectionLimits.from_settings(settings)
            faults = ClientFaults(wired.metrics.client_faults)

            def served(app: web.Application) -> GuardedTestServer:
                guard = ConnectionGuard(limits, faults)
                return GuardedTestServer(app, guard, shutdown_timeout_s=settings.shutdown_timeout_s)

            collect: TestClient[Any, Any] = TestClient(served(create_collect_app(wired.collect)))
            admin: TestClient[Any, Any] = TestClient(
                served(create_admin_app(wired.admin)),
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            await collect.start_server()
            await admin.start_server()
            try:
                yield Gateway(wired, collect, admin, settings.data_dir)
            finally:
                await collect.close()
                await admin.close()

    return start


@pytest.fixture
async def gateway(make_gateway: MakeGateway) -> AsyncIterator[Gateway]:
    async with make_gateway() as gw:
        yield gw
