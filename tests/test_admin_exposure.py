"""The admin port's exposure: where it listens (GATEWAY_ADMIN_HOST) and the headers on every
answer it gives, whoever asks and whatever the outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from gateway.core.settings import Settings
from tests.conftest import Gateway
from tests.processes import gateway_env, running_gateway
from tests.tiktok_double import TikTokDouble

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# Another loopback address: on Linux the whole 127/8 answers, so a process can bind to it.
PRIVATE_HOST = "127.0.0.2"


@pytest.mark.parametrize(
    ("path", "status", "token"),
    [
        ("/healthz", 200, True),
        ("/metrics", 200, True),
        ("/v1/admin/sources", 200, True),
        ("/v1/admin/openapi.json", 200, True),
        ("/v1/admin/sources", 401, False),
        ("/v1/admin/sources/src_missing", 404, True),
        ("/no/such/route", 404, True),
        ("/", 200, False),
        ("/ui/app.js", 200, False),
        ("/ui/style.css", 200, False),
    ],
)
async def test_every_admin_answer_carries_the_security_headers(
    gateway: Gateway, path: str, status: int, token: bool
) -> None:
    headers = None if token else {"Authorization": ""}
    resp = await gateway.admin.get(path, headers=headers)
    assert resp.status == status
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers.get(name) == value, (path, name)


async def test_event_stream_carries_the_security_headers(gateway: Gateway) -> None:
    # Streamed: its headers leave before the handler returns.
    async with gateway.admin.get("/v1/admin/events/stream") as resp:
        assert resp.status == 200
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers.get(name) == value, name


def test_admin_host_defaults_to_gateway_host() -> None:
    assert Settings.from_mapping({"GATEWAY_HOST": "10.0.0.5"}).admin_bind_host == "10.0.0.5"
    settings = Settings.from_mapping({"GATEWAY_HOST": "0.0.0.0", "GATEWAY_ADMIN_HOST": "10.0.0.5"})
    assert (settings.host, settings.admin_bind_host) == ("0.0.0.0", "10.0.0.5")
    assert settings.admin_url.startswith("http://10.0.0.5:")


async def _answers(url: str) -> bool:
    """Whether anything listens at `url` (an HTTP answer of any status)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return resp.status > 0
        except aiohttp.ClientConnectionError:
            return False


@pytest.mark.slow
async def test_admin_listens_on_admin_host_and_collection_on_gateway_host(
    tmp_path: Path, tiktok: TikTokDouble
) -> None:
    env = gateway_env(tmp_path / "data", tiktok.url, GATEWAY_ADMIN_HOST=PRIVATE_HOST)
    collect_port, admin_port = env["GATEWAY_COLLECT_PORT"], env["GATEWAY_ADMIN_PORT"]
    async with running_gateway(env, tmp_path / "gateway.log") as gw:
        assert gw.admin_url == f"http://{PRIVATE_HOST}:{admin_port}"
        results = await asyncio.gather(
            _answers(f"http://{PRIVATE_HOST}:{admin_port}/healthz"),
            _answers(f"http://127.0.0.1:{admin_port}/healthz"),
            _answers(f"http://127.0.0.1:{collect_port}/healthz"),
            _answers(f"http://{PRIVATE_HOST}:{collect_port}/healthz"),
        )
    assert results == [True, False, True, False]
