"""The sidecar set-up in Chromium: the site's nginx serves its pages and proxies /df/ to the
gateway with deploy/nginx-sidecar.conf, so the tag, the hits and the cookies share one origin."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import (
    Visitor,
    assert_first_party_cookies,
    launch_chromium,
    shop_page,
)
from tests.conftest import MakeGateway
from tests.nginx import require_nginx, running_nginx
from tests.tiktok_double import TikTokDouble

if TYPE_CHECKING:
    from playwright.async_api import BrowserType

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_same_origin_behind_nginx(
    chromium: BrowserType,
    make_gateway: MakeGateway,
    tiktok: TikTokDouble,
    tmp_path: Path,
    scheme: str,
) -> None:
    require_nginx()
    root = tmp_path / "site"
    root.mkdir()
    page_html = shop_page(
        "/df/df.js",  # a path on the site itself: nothing names the gateway's host
        "src_test",
        before="_df.consent({advertising: true})",
        attributes='data-auto-page="true"',
    )
    (root / "index.html").write_text(page_html)
    async with make_gateway() as gw:
        await gw.create_source(allowed_origins=[])  # same origin: no CORS, no cookie_domain
        await gw.create_integration()
        port = gw.collect.server.port
        assert port is not None
        async with running_nginx(tmp_path / "nginx", root, port) as nginx:
            origin = nginx.https_origin if scheme == "https" else nginx.http_origin
            browser = await launch_chromium(chromium)
            try:
                context = await browser.new_context(ignore_https_errors=True)
                visitor = Visitor(context, origin + "/df")
                page = await visitor.open(origin + "/?ttclid=E.C.P.sidecar")
                await page.click("#add")
                await tiktok.wait_for(lambda: len(tiktok.accepted) == 2)
                assert tiktok.problems == []
                cookies = await visitor.cookies(origin)
                ua = await page.evaluate("navigator.userAgent")
                assert visitor.errors == []
            finally:
                await browser.close()

    assert set(cookies) == {"_ttp", "_dfid", "ttclid"}
    assert_first_party_cookies(cookies, "127.0.0.1", secure=scheme == "https")
    # The tag found its endpoint from its own src: the hits went to /df/v1/..., as beacons.
    assert {h["type"] for h in visitor.sent} == {"page", "track"}
    assert set(visitor.transports) == {"ping"}
    events = {a.event["event"]: a.event for a in tiktok.accepted}
    assert set(events) == {"PageView", "AddToCart"}
    for event in events.values():
        assert event["user"]["ttp"] == cookies["_ttp"]["value"]
        assert event["user"]["ttclid"] == "E.C.P.sidecar"
        assert event["user"]["user_agent"] == ua
        assert event["user"]["ip"] == "127.0.0.1"
    assert events["PageView"]["page"]["url"] == f"{origin}/?ttclid=E.C.P.sidecar"
