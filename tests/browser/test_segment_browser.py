"""Segment's analytics-next in headless Chromium, its API host set to the gateway.

The standalone bundle comes from the npm package `make test` installs under tests/js (never from
Segment's CDN, never vendored): the shop serves it, and the settings analytics.js would fetch
from Segment's CDN, at the paths the bundle asks its `_cdn` for. The page installs Segment's
snippet as sites do, with the one change the README names: `integrations["Segment.io"]` points
`apiHost` at the gateway. A source middleware stands in for a consent manager and writes
`context.consent.categoryPreferences`, as Segment's consent tools do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.browser.conftest import Shop, Site, assert_first_party_cookies, skip_or_fail
from tests.conftest import MakeGateway
from tests.tiktok_double import TikTokDouble

pytestmark = pytest.mark.slow

BUNDLES = Path(__file__).parents[1] / "js" / "node_modules" / "@segment" / "analytics-next"
BUNDLES = BUNDLES / "dist" / "umd"
DOMAIN = ".shop.localhost"
GATEWAY_COOKIES = ("_ttp", "_dfid", "_dfuser")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SegmentSite(Site):
    """The shop, also serving analytics-next's bundles and its CDN settings."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, tuple[bytes, str]] = {}

    async def _serve(self, request: web.Request) -> web.Response:
        if request.path.startswith("/analytics-next/bundles/"):
            name = request.path.rsplit("/", 1)[-1]
            path = BUNDLES / name
            if path.is_file() and path.suffix == ".js":
                return web.Response(body=path.read_bytes(), content_type="application/javascript")
            return web.Response(status=404)
        if request.path in self.files:
            body, content_type = self.files[request.path]
            return web.Response(body=body, content_type=content_type)
        return await super()._serve(request)


def segment_page(shop: Shop, consent: dict[str, bool], script: str) -> str:
    """A page with Segment's snippet (reduced to the calls used) and analytics-next."""
    api_host = f"collect.shop.localhost:{shop.gw.collect.server.port}/v1"
    load_options = {
        "integrations": {
            "Segment.io": {
                "apiHost": api_host,
                "protocol": "http",
                # The gateway is on another origin: its cookies travel only with credentials.
                "deliveryStrategy": {"config": {"credentials": "include"}},
            }
        }
    }
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Segment shop</title>
<script>
(function () {{
  var analytics = window.analytics = [];
  ["track", "page", "identify", "addSourceMiddleware"].forEach(function (method) {{
    analytics[method] = function () {{
      var args = Array.prototype.slice.call(arguments);
      args.unshift(method);
      analytics.push(args);
      return analytics;
    }};
  }});
  analytics._writeKey = "src_test";
  analytics._cdn = {json.dumps(shop.origin)};
  analytics._loadOptions = {json.dumps(load_options)};
  var consent = {json.dumps(consent)};
  analytics.addSourceMiddleware(function (ctx) {{
    ctx.payload.obj.context.consent = {{categoryPreferences: consent}};
    ctx.next(ctx.payload);
  }});
  {script}
}})();
</script>
<script async src="/analytics-next/bundles/standalone.js"></script>
</head><body><h1>Segment shop</h1></body></html>"""


@pytest.fixture
async def segment_shop(
    chromium: Any, make_gateway: MakeGateway, tiktok: TikTokDouble, tmp_path: Path
) -> AsyncIterator[Shop]:
    if not (BUNDLES / "standalone.js").is_file():
        skip_or_fail("tests/js/node_modules is missing (make test runs npm ci there)")
    site = SegmentSite()
    settings = {"integrations": {"Segment.io": {"apiKey": "src_test"}}, "plan": {}}
    site.files["/v1/projects/src_test/settings"] = (json.dumps(settings).encode(), "text/json")
    await site.server.start_server()
    try:
        async with make_gateway() as gw:
            shop = Shop(gw, site, tiktok, chromium, tmp_path)
            await gw.create_source(allowed_origins=[shop.origin], cookie_domain="shop.localhost")
            await gw.create_integration(consent_categories=["advertising"])
            try:
                yield shop
            finally:
                await shop.close()
    finally:
        await site.server.close()


PURCHASE = """analytics.track("Order Completed", {order_id: "ORD-1", total: 129.99,
  currency: "USD", products: [{product_id: "SKU-A", price: 49.99, quantity: 2},
                              {product_id: "SKU-B", price: 30.01, quantity: 1}]});"""


async def test_page_identify_and_purchase_arrive_with_first_party_cookies(
    segment_shop: Shop,
) -> None:
    shop = segment_shop
    identify = 'analytics.identify("u-42", {email: " Jane.Doe@Example.COM ", firstName: "Jane"});'
    shop.site.pages["/checkout"] = segment_page(
        shop, {"Advertising": True}, "analytics.page();" + identify
    )
    visitor = await shop.visitor()
    page = await visitor.context.new_page()
    await page.goto(shop.origin + "/checkout")
    [page_view] = await shop.events(1)
    await visitor.wait_for_answers(2, shop.tiktok)  # page and identify: the cookies are set
    await page.evaluate(PURCHASE)
    page_view, purchase = await shop.events(2)

    cookies = await visitor.cookies(shop.origin)
    ours = {name: cookies[name] for name in GATEWAY_COOKIES}
    assert_first_party_cookies(ours, DOMAIN)
    anonymous_id = await page.evaluate("analytics.user().anonymousId()")
    assert ours["_dfid"]["value"] == anonymous_id  # analytics.js's own id started it

    sent = {hit["type"]: hit for hit in visitor.sent}
    assert set(sent) == {"page", "identify", "track"}
    assert all(path in ("/v1/p", "/v1/i", "/v1/t") for path in visitor.requests)
    assert page_view["event"] == "PageView"
    assert page_view["event_id"] == sent["page"]["messageId"]
    assert page_view["page"]["url"] == shop.origin + "/checkout"
    assert purchase["event"] == "CompletePayment"
    assert purchase["event_id"] == sent["track"]["messageId"]
    assert purchase["properties"]["value"] == 129.99
    assert purchase["properties"]["currency"] == "USD"
    assert [c["content_id"] for c in purchase["properties"]["contents"]] == ["SKU-A", "SKU-B"]
    # identify sent nothing itself; the sealed identity cookie carried it to the purchase.
    assert purchase["user"]["email"] == sha256("jane.doe@example.com")
    assert purchase["user"]["first_name"] == sha256("jane")
    assert purchase["user"]["external_id"] == [sha256("u-42"), sha256(anonymous_id)]
    assert purchase["user"]["ttp"] == ours["_ttp"]["value"]
    ua = await page.evaluate("navigator.userAgent")
    assert purchase["user"]["user_agent"] == ua


async def test_refused_consent_sends_nothing_and_sets_no_cookie(segment_shop: Shop) -> None:
    shop = segment_shop
    shop.site.pages["/"] = segment_page(shop, {"Advertising": False}, "analytics.page();")
    visitor = await shop.visitor()
    page = await visitor.context.new_page()
    await page.goto(shop.origin + "/")
    await page.wait_for_function("window.analytics.initialized === true")
    await shop.tiktok.wait_for(lambda: len(visitor.answers) >= 1)
    await page.evaluate(PURCHASE)
    await shop.tiktok.wait_for(lambda: len(visitor.answers) >= 2)
    assert [status for _, status in visitor.answers] == [200, 200]
    await shop.gw.delivered()
    assert shop.tiktok.requests == []
    cookies = await visitor.cookies(shop.origin)
    assert not set(GATEWAY_COOKIES) & set(cookies)


def same_in_both(event: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the client: the mapping, the contents, the hashed match keys."""
    user = event["user"]
    return {
        "event": event["event"],
        "properties": event["properties"],
        "email": user.get("email"),
        "first_name": user.get("first_name"),
        "user_id": user["external_id"][0],
    }


async def test_analytics_next_and_the_tag_deliver_the_same_purchase(segment_shop: Shop) -> None:
    shop = segment_shop
    identify = 'analytics.identify("u-42", {email: " Jane.Doe@Example.COM ", firstName: "Jane"});'
    shop.site.pages["/segment"] = segment_page(shop, {"Advertising": True}, identify)
    tag_url = shop.add_page("/tag", before="_df.consent({advertising: true})")

    segment_visitor = await shop.visitor()
    page = await segment_visitor.context.new_page()
    await page.goto(shop.origin + "/segment")
    await segment_visitor.wait_for_answers(1, shop.tiktok)
    await page.evaluate(PURCHASE)
    [by_segment] = await shop.events(1)

    tag_visitor = await shop.visitor()
    page = await tag_visitor.open(tag_url)
    await page.evaluate(
        """_df.identify("u-42", {email: " Jane.Doe@Example.COM ", firstName: "Jane"})"""
    )
    await tag_visitor.wait_for_answers(1, shop.tiktok)
    await page.evaluate(PURCHASE.replace("analytics.track", "_df.track"))
    _, by_tag = await shop.events(2)

    assert same_in_both(by_segment) == same_in_both(by_tag)
    assert by_segment["properties"]["value"] == 129.99
