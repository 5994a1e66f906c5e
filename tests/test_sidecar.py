"""The sidecar set-up through real nginx and deploy/nginx-sidecar.conf as shipped.

The browser's view of the same set-up is in tests/browser/test_sidecar.py.
"""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.nginx import running_nginx
from tests.tiktok_double import TikTokDouble

pytestmark = pytest.mark.slow

TAG = Path(__file__).parents[1] / "gateway" / "static" / "df.js"
# Any loopback address but 127.0.0.1 (the one trusted proxy): a visitor nginx stands in front of.
VISITOR_IP = "127.0.0.5"
HIT = {
    "source_id": "src_test",
    "context": {"consent": {"advertising": True}, "page": {"url": "https://shop.example/"}},
}


def set_cookies(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie", []):
        jar.load(header)
    return dict(jar)


def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>Shop</title><p>the shop's own page")
    return root


async def setup(gw: Gateway) -> None:
    await gw.create_source(allowed_origins=[])  # same origin: no CORS, no cookie_domain
    await gw.create_integration()


def visitor_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(local_addr=(VISITOR_IP, 0))
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": "Visitor/1.0"})


async def test_nginx_serves_the_site_and_hands_df_to_the_gateway(
    gateway: Gateway, tiktok: TikTokDouble, tmp_path: Path
) -> None:
    await setup(gateway)
    port = gateway.collect.server.port
    assert port is not None
    async with (
        running_nginx(tmp_path / "nginx", site(tmp_path), port) as nginx,
        visitor_session() as session,
    ):
        async with session.get(nginx.http_origin + "/") as resp:
            assert resp.status == 200
            assert "the shop's own page" in await resp.text()
        async with session.get(
            nginx.http_origin + "/df/df.js", headers={"Accept-Encoding": "gzip"}
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Encoding"] == "gzip"
            assert resp.content_type == "application/javascript"
            assert await resp.read() == TAG.read_bytes()
        async with session.get(nginx.http_origin + "/df/demo") as resp:
            assert resp.status == 200
            assert 'src="df.js"' in await resp.text()  # relative: works under /df/ too

        # A hit as the tag's beacon sends it, with a forged address the visitor made up.
        async with session.post(
            nginx.http_origin + "/df/v1/p",
            data=json.dumps(HIT),
            headers={"Content-Type": "text/plain;charset=UTF-8", "X-Forwarded-For": "1.2.3.4"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            cookies = set_cookies(resp)

    assert set(cookies) == {"_ttp", "_dfid"}
    for morsel in cookies.values():
        assert morsel["path"] == "/"
        assert not morsel["domain"]  # host-only: the site's own origin
        assert not morsel["secure"]  # the visitor came over plain HTTP
    await tiktok.wait_for(lambda: len(tiktok.accepted) == 1)
    user = tiktok.accepted[0].event["user"]
    assert user["ip"] == VISITOR_IP  # the visitor's, neither nginx's nor the forged one
    assert user["user_agent"] == "Visitor/1.0"
    assert user["ttp"] == cookies["_ttp"].value


async def test_https_at_nginx_makes_the_cookies_secure(
    gateway: Gateway, tiktok: TikTokDouble, tmp_path: Path
) -> None:
    await setup(gateway)
    port = gateway.collect.server.port
    assert port is not None
    async with (
        running_nginx(tmp_path / "nginx", site(tmp_path), port) as nginx,
        visitor_session() as session,
        session.post(nginx.https_origin + "/df/v1/p", data=json.dumps(HIT), ssl=False) as resp,
    ):
        assert resp.status == 200, await resp.text()
        cookies = set_cookies(resp)
    assert set(cookies) == {"_ttp", "_dfid"}
    assert all(morsel["secure"] for morsel in cookies.values())
    await tiktok.wait_for(lambda: len(tiktok.accepted) == 1)
    assert tiktok.accepted[0].event["user"]["ip"] == VISITOR_IP
