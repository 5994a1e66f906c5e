"""The demo shop at /demo, clicked through in Chromium: the tag on the gateway's own origin."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import Visitor, assert_first_party_cookies, launch_chromium
from tests.conftest import MakeGateway
from tests.tiktok_double import TikTokDouble

if TYPE_CHECKING:
    from playwright.async_api import BrowserType

pytestmark = pytest.mark.slow


async def test_demo_shop_sends_page_view_product_view_cart_and_purchase(
    chromium: BrowserType, make_gateway: MakeGateway, tiktok: TikTokDouble, tmp_path: Path
) -> None:
    async with make_gateway() as gw:
        # Steps 1 and 2 of the README's quick start.
        await gw.create_source(id="src_abc123", allowed_origins=[])
        await gw.create_integration(source_id="src_abc123")
        origin = str(gw.collect.make_url("")).rstrip("/")
        browser = await launch_chromium(chromium)
        try:
            visitor = Visitor(await browser.new_context(), origin)
            page = await visitor.open(f"{origin}/demo?ttclid=E.C.P.demo")
            await tiktok.wait_for(lambda: len(tiktok.accepted) == 1)  # the automatic page view
            await page.fill("#email", "Jane@Example.com")
            await page.click("#identify")
            await visitor.wait_for_answers(2, tiktok)
            for button in ("#view", "#add", "#purchase"):
                await page.click(button)
            await tiktok.wait_for(lambda: len(tiktok.accepted) == 4)
            assert tiktok.problems == []
            events = {a.event["event"]: a.event for a in tiktok.accepted}
            assert set(events) == {"PageView", "ViewContent", "AddToCart", "CompletePayment"}

            cookies = await visitor.cookies(origin)
            assert set(cookies) == {"_ttp", "_dfid", "ttclid", "_dfuser"}
            assert_first_party_cookies(cookies, "127.0.0.1")  # host-only: no cookie_domain
            ua = await page.evaluate("navigator.userAgent")
            for event in events.values():
                assert event["user"]["ttp"] == cookies["_ttp"]["value"]
                assert event["user"]["ttclid"] == "E.C.P.demo"
                assert event["user"]["user_agent"] == ua
            purchase = events["CompletePayment"]["properties"]
            assert (purchase["value"], purchase["currency"]) == (49.99, "USD")
            email = hashlib.sha256(b"jane@example.com").hexdigest()
            assert events["CompletePayment"]["user"]["email"] == email
            # The page's log shows what it sent, with the message ids TikTok got as event ids.
            log = await page.inner_text("#log")
            assert events["CompletePayment"]["event_id"] in log
            assert visitor.errors == []
        finally:
            await browser.close()


async def test_the_demo_lists_each_hits_http_answer_refused_ones_too(
    chromium: BrowserType, make_gateway: MakeGateway, tiktok: TikTokDouble
) -> None:
    async with make_gateway() as gw:
        await gw.create_source(id="src_abc123", allowed_origins=[])
        await gw.create_integration(source_id="src_abc123")
        origin = str(gw.collect.make_url("")).rstrip("/")
        browser = await launch_chromium(chromium)
        try:
            visitor = Visitor(await browser.new_context(), origin)
            page = await visitor.open(f"{origin}/demo")
            auto = page.locator("#log li[data-auto]")
            await auto.locator(".answer").wait_for()
            assert "HTTP 200" in await auto.inner_text()
            await page.click("#purchase")
            sent = page.locator("#log li[data-id]").last
            await sent.locator(".answer").wait_for()
            assert "HTTP 200" in await sent.inner_text()

            # A source that does not exist: the page says the gateway refused the hit, and why.
            refused = await visitor.open(f"{origin}/demo?source_id=src_missing")
            auto = refused.locator("#log li[data-auto]")
            await auto.locator(".answer.refused").wait_for()
            text = await auto.inner_text()
            assert "HTTP 400 unknown_source" in text
            assert await auto.get_attribute("data-status") == "400"
            assert visitor.errors == []
        finally:
            await browser.close()
        listed = await (await gw.admin.get("/v1/admin/refused")).json()
        assert [r["source_id"] for r in listed["refused"]] == ["src_missing"]
