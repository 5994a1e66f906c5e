"""Headless Chromium (Debian's `chromium`, driven by Playwright) against a real gateway.

A shop is a small aiohttp site on `http://shop.localhost:<port>` whose pages load the tag from the
gateway's collection server on `http://collect.shop.localhost:<port>`: the subdomain set-up, with
the source's `cookie_domain` and `allowed_origins` (Chromium resolves `*.localhost` to loopback).
No browser is ever downloaded: without Chromium or Playwright these tests skip with the reason,
and fail instead under GATEWAY_TEST_REQUIRE_SERVICES=1 (as CI runs them).
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import REQUIRE_SERVICES, Gateway, MakeGateway
from tests.tiktok_double import TikTokDouble

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, BrowserType, Page, Response

CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TAG_PATH = Path(__file__).parents[2] / "gateway" / "static" / "df.js"
DAY_S = 86400
# Cookies' `expires` are absolute: allow for the seconds a test takes.
LIFETIME_SLACK_S = 120


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def skip_or_fail(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"GATEWAY_TEST_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def tag_stub() -> str:
    """The one-line stub exactly as the tag documents it (a test of the documentation too)."""
    match = re.search(r"<script>(window\._df=.*?)</script>", TAG_PATH.read_text())
    assert match, "df.js no longer documents its stub"
    return match.group(1)


@pytest.fixture
async def chromium() -> AsyncIterator[BrowserType]:
    """Playwright's handle on the system Chromium (launched by `launch_chromium`)."""
    reason = browser_unavailable()
    if reason:
        skip_or_fail(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        yield playwright.chromium


async def launch_chromium(chromium: BrowserType) -> Browser:
    return await chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


async def launch_cookieless(chromium: BrowserType, profile: Path) -> BrowserContext:
    """A browser whose user chose "Block all cookies" (the profile's content setting)."""
    (profile / "Default").mkdir(parents=True)
    preferences = {"profile": {"default_content_setting_values": {"cookies": 2}}}
    (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
    return await chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )


class Site:
    """The shop's own web server: pages registered by path, on a port of its own."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        self.server = TestServer(app, host="127.0.0.1")

    async def _serve(self, request: web.Request) -> web.Response:
        page = self.pages.get(request.path)
        if page is None:
            return web.Response(status=404, text="no such page")
        return web.Response(text=page, content_type="text/html")

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


def shop_page(
    tag_src: str,
    source_id: str,
    *,
    title: str = "Demo shop",
    before: str = "",
    attributes: str = "",
    body: str = "",
) -> str:
    """A shop page as a site installs the tag: the stub, calls made early, then the tag."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script>{tag_stub()}</script>
<script>{before}</script>
<script async src="{html.escape(tag_src)}" data-source-id="{source_id}" {attributes}></script>
</head><body>
<h1>{html.escape(title)}</h1>
<button id="view" onclick="window.lastId = _df.track('Product Viewed', {{product_id: 'SKU-A',
  name: 'Widget', category: 'Tools', price: 49.99, currency: 'USD'}})">View Widget</button>
<button id="add" onclick="window.lastId = _df.track('Product Added', {{product_id: 'SKU-A',
  name: 'Widget', price: 49.99, quantity: 2, currency: 'USD'}})">Add to cart</button>
{body}
</body></html>"""


@dataclass
class Visitor:
    """One browser context (one visitor's browser), with what its pages sent and were answered.

    `sent` holds the hits the tag posted (parsed, batches unpacked), `requests` the paths they
    went to, `answers` the (url, status) of the gateway's answers, `errors` every uncaught script
    error of any page (the tag must cause none).
    """

    context: BrowserContext
    collect_prefix: str  # hits are requests whose URL starts with this
    sent: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # the paths hits were sent to
    transports: list[str] = field(default_factory=list)  # "ping" (a beacon), "fetch", "xhr"
    answers: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.context.on("request", self._on_request)
        self.context.on("response", self._on_response)
        self.context.on("page", lambda page: page.on("pageerror", self._on_error))

    def _is_hit(self, url: str) -> bool:
        return url.startswith(self.collect_prefix + "/v1/")

    def _on_request(self, request: Any) -> None:
        if self._is_hit(request.url) and request.post_data:
            body = json.loads(request.post_data)
            self.sent.extend(body["batch"] if request.url.endswith("/v1/batch") else [body])
            self.requests.append(request.url.removeprefix(self.collect_prefix))
            self.transports.append(request.resource_type)

    def _on_response(self, response: Response) -> None:
        if self._is_hit(response.url):
            self.answers.append((response.url, response.status))

    def _on_error(self, error: Any) -> None:
        self.errors.append(str(error))

    async def open(self, url: str) -> Page:
        """A new tab on `url`, once the tag has loaded."""
        page = await self.context.new_page()
        await page.goto(url)
        await page.wait_for_function("window._df && window._df.loaded === true")
        return page

    async def cookies(self, url: str) -> dict[str, dict[str, Any]]:
        """The cookies the browser holds for `url`, by name."""
        return {c["name"]: c for c in await self.context.cookies(url)}

    async def wait_for_answers(self, count: int, tiktok: TikTokDouble) -> None:
        """Wait until the browser has had `count` answers to hits (so their cookies are set)."""
        await tiktok.wait_for(lambda: len(self.answers) >= count)
        assert all(status == 200 for _, status in self.answers), self.answers


@dataclass
class Shop:
    """A site on shop.localhost, the gateway on collect.shop.localhost, and visitors' browsers."""

    gw: Gateway
    site: Site
    tiktok: TikTokDouble
    chromium: BrowserType
    tmp_path: Path
    source_id: str = "src_test"
    browser: Browser | None = None
    visitors: list[Visitor] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://shop.localhost:{self.site.port}"

    @property
    def collect_origin(self) -> str:
        return f"http://collect.shop.localhost:{self.gw.collect.server.port}"

    @property
    def tag_src(self) -> str:
        return f"{self.collect_origin}/df.js"

    def add_page(self, path: str, **options: Any) -> str:
        """Serve a shop page at `path` (options as `shop_page`); returns its URL."""
        self.site.pages[path] = shop_page(self.tag_src, self.source_id, **options)
        return self.origin + path

    async def visitor(self, *, block_cookies: bool = False, init_script: str = "") -> Visitor:
        """A new visitor: a fresh browser context (or a browser that blocks all cookies)."""
        if block_cookies:
            profile = self.tmp_path / f"profile-{len(self.visitors)}"
            context = await launch_cookieless(self.chromium, profile)
        else:
            if self.browser is None:
                self.browser = await launch_chromium(self.chromium)
            context = await self.browser.new_context()
        if init_script:
            await context.add_init_script(init_script)
        visitor = Visitor(context, self.collect_origin)
        self.visitors.append(visitor)
        return visitor

    async def events(self, count: int) -> list[dict[str, Any]]:
        """The events TikTok accepted once there are `count` of them, in arrival order."""
        await self.tiktok.wait_for(lambda: len(self.tiktok.accepted) >= count)
        assert self.tiktok.problems == []
        return [a.event for a in self.tiktok.accepted]

    def hits_handled(self, hit_type: str) -> int:
        """Hits of a type the gateway accepted, whatever their consent let through."""
        return hits_handled(self.gw, hit_type)

    async def close(self) -> None:
        for visitor in self.visitors:
            await visitor.context.close()
        if self.browser is not None:
            await self.browser.close()
        errors = [e for v in self.visitors for e in v.errors]
        assert errors == [], "the tag threw into the page"


def hits_handled(gw: Gateway, hit_type: str) -> int:
    value = gw.wired.metrics.registry.get_sample_value("gateway_hits_total", {"type": hit_type})
    return int(value or 0)


def assert_lifetime(cookie: dict[str, Any], days: int) -> None:
    remaining = cookie["expires"] - time.time()
    assert abs(remaining - days * DAY_S) < LIFETIME_SLACK_S, (cookie["name"], remaining / DAY_S)


def assert_first_party_cookies(
    cookies: dict[str, dict[str, Any]], domain: str, *, secure: bool = False
) -> None:
    """SPEC §3's table: names, lifetimes, HttpOnly where it says, Path=/, SameSite=Lax."""
    for cookie in cookies.values():
        assert cookie["path"] == "/"
        assert cookie["sameSite"] == "Lax"
        assert cookie["domain"] == domain
        assert cookie["secure"] is secure  # Secure exactly when the visitor came over HTTPS
    assert_lifetime(cookies["_ttp"], 395)
    assert_lifetime(cookies["_dfid"], 395)
    assert not cookies["_ttp"]["httpOnly"]  # the TikTok pixel reads it
    assert cookies["_dfid"]["httpOnly"]
    if "_dfuser" in cookies:
        assert cookies["_dfuser"]["httpOnly"]
        assert_lifetime(cookies["_dfuser"], 395)
    if "ttclid" in cookies:
        assert not cookies["ttclid"]["httpOnly"]
        assert_lifetime(cookies["ttclid"], 30)


@pytest.fixture
async def shop(
    chromium: BrowserType, make_gateway: MakeGateway, tiktok: TikTokDouble, tmp_path: Path
) -> AsyncIterator[Shop]:
    """The subdomain set-up: the source's cookie_domain is the shop's domain."""
    site = Site()
    await site.server.start_server()
    try:
        async with make_gateway() as gw:
            shop = Shop(gw, site, tiktok, chromium, tmp_path)
            await gw.create_source(
                allowed_origins=[shop.origin],
                cookie_domain="shop.localhost",
                default_phone_region="US",
            )
            await gw.create_integration()
            try:
                yield shop
            finally:
                await shop.close()
    finally:
        await site.server.close()
