"""The tag in headless Chromium, installed the way a site installs it (subdomain set-up).

Each test drives real pages on http://shop.localhost that load /df.js from the gateway on
http://collect.shop.localhost, then checks both ends: what TikTok (the double) received and what
cookies the browser holds.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from tests.browser.conftest import Shop, assert_first_party_cookies, hits_handled

pytestmark = pytest.mark.slow

DOMAIN = ".shop.localhost"  # the source's cookie_domain, as the browser stores it
GRANT = "_df.consent({advertising: true})"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def assert_visitor(
    event: dict[str, Any], cookies: dict[str, dict[str, Any]], ua: str, user_id: str | None = None
) -> None:
    """The event carries this browser's ids (from its cookies) and its user agent; external_id
    is the identified user's id first, when there is one, then the anonymous id."""
    user = event["user"]
    assert user["ttp"] == cookies["_ttp"]["value"]
    identified = [sha256(user_id)] if user_id else []
    assert user["external_id"] == [*identified, sha256(cookies["_dfid"]["value"])]
    assert user["user_agent"] == ua
    assert user["ip"] == "127.0.0.1"


async def test_page_view_with_ttclid(shop: Shop) -> None:
    ad = shop.add_page(
        "/ad",
        attributes='data-auto-page="true"',
        body='<a id="go" href="/landing?utm_source=tt&ttclid=E.C.P.abc123">Shop now</a>',
    )
    shop.add_page("/landing", title="Spring sale", before=GRANT, attributes='data-auto-page="true"')
    visitor = await shop.visitor()
    page = await visitor.open(ad)  # consent was never given here: nothing is delivered
    await page.click("#go")
    await page.wait_for_url("**/landing?*")
    await page.wait_for_function("window._df.loaded === true")

    [event] = await shop.events(1)
    cookies = await visitor.cookies(shop.origin)
    assert set(cookies) == {"_ttp", "_dfid", "ttclid"}
    assert_first_party_cookies(cookies, DOMAIN)
    assert cookies["ttclid"]["value"] == "E.C.P.abc123"
    # The page sees the ids the TikTok pixel may read, never the HttpOnly anonymous id.
    assert await page.evaluate("document.cookie.split('; ').sort().join('; ')") == (
        f"_ttp={cookies['_ttp']['value']}; ttclid=E.C.P.abc123"
    )

    ua = await page.evaluate("navigator.userAgent")
    assert event["event"] == "PageView"
    assert_visitor(event, cookies, ua)
    assert event["user"]["ttclid"] == "E.C.P.abc123"
    assert event["user"]["locale"] == await page.evaluate("navigator.language")
    landing = f"{shop.origin}/landing?utm_source=tt&ttclid=E.C.P.abc123"
    assert event["page"] == {"url": landing, "referrer": ad}

    # What the tag itself sent: page context, a fresh message_id (TikTok's event_id), consent.
    hits = [h for h in visitor.sent if h["type"] == "page"]
    assert len(hits) == 2  # the ad page's (no consent) and the landing page's
    sent = hits[-1]
    assert sent["source_id"] == "src_test"
    assert sent["context"]["page"] == {"url": landing, "referrer": ad, "title": "Spring sale"}
    assert sent["context"]["consent"] == {"advertising": True}
    assert "consent" not in hits[0]["context"]
    assert UUID_RE.match(sent["message_id"])
    assert event["event_id"] == sent["message_id"]


async def test_product_view_and_add_to_cart(shop: Shop) -> None:
    url = shop.add_page("/widget", before=GRANT)
    visitor = await shop.visitor()
    page = await visitor.open(url)
    await page.click("#view")
    viewed_id = await page.evaluate("window.lastId")
    await page.click("#add")
    added_id = await page.evaluate("window.lastId")

    events = {e["event"]: e for e in await shop.events(2)}
    cookies = await visitor.cookies(shop.origin)
    assert set(cookies) == {"_ttp", "_dfid"}
    assert_first_party_cookies(cookies, DOMAIN)
    ua = await page.evaluate("navigator.userAgent")

    viewed, added = events["ViewContent"], events["AddToCart"]
    assert viewed["event_id"] == viewed_id  # track() returns the message_id it sent
    assert added["event_id"] == added_id
    for event in (viewed, added):
        assert_visitor(event, cookies, ua)
        assert event["page"]["url"] == url
    assert viewed["properties"]["contents"][0]["content_id"] == "SKU-A"
    assert viewed["properties"]["value"] == 49.99
    assert added["properties"]["value"] == pytest.approx(99.98)
    assert added["properties"]["currency"] == "USD"
    assert added["properties"]["contents"][0]["quantity"] == 2


async def test_hits_made_together_on_a_first_visit_share_one_browser_id(shop: Shop) -> None:
    # A product page tracks its view as it loads, beside the automatic page view: both leave
    # before any cookie exists, so they must travel together to get the same ids.
    view = "_df.track('Product Viewed', {product_id: 'SKU-A', price: 49.99, currency: 'USD'})"
    url = shop.add_page("/p/widget", before=f"{GRANT}; {view}", attributes='data-auto-page="true"')
    visitor = await shop.visitor()
    page = await visitor.open(url)
    events = await shop.events(2)
    assert visitor.requests == ["/v1/batch"]
    cookies = await visitor.cookies(shop.origin)
    assert_first_party_cookies(cookies, DOMAIN)
    ua = await page.evaluate("navigator.userAgent")
    assert sorted(e["event"] for e in events) == ["PageView", "ViewContent"]
    for event in events:
        assert_visitor(event, cookies, ua)


async def test_identify_then_purchase_with_the_pixels_event_id(shop: Shop) -> None:
    # A site running the TikTok pixel too passes the tag's message_id as the pixel's event_id.
    fake_pixel = "window.ttq = {calls: [], track: function (n, p, o) { ttq.calls.push([n, o]) }};"
    url = shop.add_page("/checkout", before=GRANT + ";" + fake_pixel)
    visitor = await shop.visitor()
    page = await visitor.open(url)
    await page.evaluate(
        """_df.identify("u-42", {email: " Jane.Doe@Example.COM ", phone: "+1 (213) 373-4253"})"""
    )
    await visitor.wait_for_answers(1, shop.tiktok)  # the identity cookie is set
    await page.evaluate(
        """_df.track("Order Completed",
             {order_id: "ORD-1", total: 129.99, currency: "usd",
              products: [{product_id: "SKU-A", price: 49.99, quantity: 2},
                         {product_id: "SKU-B", price: 30.01, quantity: 1}]},
             {callback: function (id) {
                ttq.track("CompletePayment", {value: 129.99, currency: "USD"}, {event_id: id});
             }})"""
    )

    [event] = await shop.events(1)  # identify itself sends nothing to TikTok
    cookies = await visitor.cookies(shop.origin)
    assert set(cookies) == {"_ttp", "_dfid", "_dfuser"}
    assert_first_party_cookies(cookies, DOMAIN)
    assert "jane" not in cookies["_dfuser"]["value"].lower()
    assert_visitor(event, cookies, await page.evaluate("navigator.userAgent"), user_id="u-42")

    assert event["event"] == "CompletePayment"
    assert event["user"]["email"] == sha256("jane.doe@example.com")
    assert event["user"]["phone"] == sha256("+12133734253")
    assert event["properties"]["value"] == 129.99
    assert event["properties"]["currency"] == "USD"
    assert event["properties"]["order_id"] == "ORD-1"
    assert [c["content_id"] for c in event["properties"]["contents"]] == ["SKU-A", "SKU-B"]
    pixel_calls = await page.evaluate("ttq.calls")
    assert pixel_calls == [["CompletePayment", {"event_id": event["event_id"]}]]
    # The raw email went to the gateway only, never into a cookie the page can read.
    assert "jane" not in (await page.evaluate("document.cookie")).lower()


async def test_consent_denied_then_granted(shop: Shop) -> None:
    url = shop.add_page("/widget")
    visitor = await shop.visitor()
    page = await visitor.open(url)
    await page.evaluate("_df.consent({advertising: false, analytics: true})")
    await page.click("#view")
    await visitor.wait_for_answers(1, shop.tiktok)
    assert shop.hits_handled("track") == 1
    assert await visitor.cookies(shop.origin) == {}  # consent allowed nothing: no cookie at all
    await shop.gw.delivered()
    assert shop.tiktok.requests == []

    await page.evaluate("_df.consent({advertising: true})")
    await page.click("#add")
    added_id = await page.evaluate("window.lastId")
    [event] = await shop.events(1)
    assert event["event"] == "AddToCart"
    assert event["event_id"] == added_id
    cookies = await visitor.cookies(shop.origin)
    assert set(cookies) == {"_ttp", "_dfid"}
    assert_first_party_cookies(cookies, DOMAIN)
    assert_visitor(event, cookies, await page.evaluate("navigator.userAgent"))
    # Each hit carried the consent state of its moment; later calls merge into it.
    consents = [h["context"]["consent"] for h in visitor.sent]
    assert consents == [
        {"advertising": False, "analytics": True},
        {"advertising": True, "analytics": True},
    ]


async def test_stub_queues_calls_made_before_the_tag_loads_in_order(shop: Shop) -> None:
    before = """
      _df.consent({advertising: false});
      _df.track("Products Searched", {query: "denied"});
      _df.consent({advertising: true});
      _df.track("Products Searched", {query: "granted"},
                {callback: function (id) { window.cb = id }});
      window.early = _df.track("Products Searched", {query: "early"});
    """
    url = shop.add_page("/search", before=before, attributes='data-auto-page="true"')
    visitor = await shop.visitor()
    page = await visitor.open(url)
    assert await page.evaluate("window.early") is None  # the stub cannot know the id yet...
    callback_id = await page.evaluate("window.cb")  # ...but a callback gets it once sent

    events = await shop.events(3)
    assert [h.get("event", h["type"]) for h in visitor.sent] == [
        "Products Searched",
        "Products Searched",
        "Products Searched",
        "page",  # data-auto-page runs after the queue, so it carries the consent given early
    ]
    assert sorted(e.get("properties", {}).get("query", e["event"]) for e in events) == [
        "PageView",
        "early",
        "granted",
    ]
    await shop.tiktok.wait_for(lambda: shop.hits_handled("track") == 3)
    assert len(shop.tiktok.accepted) == 3
    assert visitor.requests == ["/v1/batch"]  # made in one task: they left together
    assert callback_id in [e["event_id"] for e in events]


@pytest.mark.parametrize("transport", ["beacon", "fetch"])
async def test_events_fired_while_the_page_unloads_arrive(shop: Shop, transport: str) -> None:
    # Without sendBeacon the tag must use fetch with keepalive (and credentials, cross-origin).
    init = """
      delete Navigator.prototype.sendBeacon;
      const realFetch = window.fetch;
      window.fetch = function (url, options) {
        window.fetchOptions = {keepalive: options.keepalive, credentials: options.credentials};
        return realFetch.apply(this, arguments);
      };
    """
    body = """
      <a id="leave" href="/elsewhere" onclick="_df.track('Checkout Started',
         {value: 10, currency: 'EUR'})">Checkout</a>
      <script>addEventListener("pagehide", function () { _df.track("Lead Generated") })</script>
    """
    url = shop.add_page("/cart", before=GRANT, body=body, attributes='data-auto-page="true"')
    shop.site.pages["/elsewhere"] = "<!doctype html><title>Elsewhere</title><p>bye"
    visitor = await shop.visitor(init_script=init if transport == "fetch" else "")
    page = await visitor.open(url)
    await visitor.wait_for_answers(1, shop.tiktok)  # the page view: its cookies are set
    if transport == "fetch":
        options = await page.evaluate("window.fetchOptions")
        assert options == {"keepalive": True, "credentials": "include"}
    cookies = await visitor.cookies(shop.origin)
    assert set(cookies) == {"_ttp", "_dfid"}  # also through fetch: CORS with credentials
    assert_first_party_cookies(cookies, DOMAIN)
    ua = await page.evaluate("navigator.userAgent")

    await page.click("#leave")  # a track, then the navigation unloads the page at once
    await page.wait_for_url("**/elsewhere")
    events = {e["event"]: e for e in await shop.events(3)}
    assert set(events) == {"PageView", "InitiateCheckout", "SubmitForm"}
    for event in events.values():
        assert_visitor(event, cookies, ua)
        assert event["page"]["url"] == url
    assert events["InitiateCheckout"]["properties"]["currency"] == "EUR"
    # (Playwright may not report the request of a page already gone: the gateway saw it.)
    assert set(visitor.transports) == {"ping" if transport == "beacon" else "fetch"}


async def test_returning_visit_keeps_ttp_and_external_id(shop: Shop) -> None:
    url = shop.add_page("/", before=GRANT, attributes='data-auto-page="true"')
    visitor = await shop.visitor()
    first = await visitor.open(url)
    await shop.events(1)
    first_cookies = await visitor.cookies(shop.origin)
    await first.close()

    second = await visitor.open(url)  # the same browser, later
    await second.click("#view")
    first_view, *returning = await shop.events(3)
    cookies = await visitor.cookies(shop.origin)
    for name in ("_ttp", "_dfid"):
        assert cookies[name]["value"] == first_cookies[name]["value"]
    assert_first_party_cookies(cookies, DOMAIN)  # refreshed: the full lifetime again
    for event in (first_view, *returning):
        assert event["user"]["ttp"] == first_cookies["_ttp"]["value"]
        assert event["user"]["external_id"] == first_view["user"]["external_id"]

    # Another browser is another visitor.
    other = await shop.visitor()
    await other.open(url)
    stranger = (await shop.events(4))[-1]
    assert stranger["user"]["ttp"] != first_view["user"]["ttp"]
    assert stranger["user"]["external_id"] != first_view["user"]["external_id"]


async def test_blocked_cookies_still_send_without_ids(shop: Shop) -> None:
    url = shop.add_page("/", before=GRANT, attributes='data-auto-page="true"')
    visitor = await shop.visitor(block_cookies=True)
    page = await visitor.open(url)
    await page.click("#view")
    events = await shop.events(2)
    assert await visitor.context.cookies() == []
    # Each hit came without cookies, so the gateway could keep no id between them.
    assert events[0]["user"]["ttp"] != events[1]["user"]["ttp"]
    assert {e["user"]["user_agent"] for e in events} == {await page.evaluate("navigator.userAgent")}


async def test_the_tag_never_throws_into_the_page(shop: Shop) -> None:
    # Beacons refused, no fetch: the tag falls back to XMLHttpRequest and keeps going.
    init = """
      Navigator.prototype.sendBeacon = function () { throw new Error("blocked by policy") };
      delete window.fetch;
    """
    url = shop.add_page("/odd", before=GRANT)
    visitor = await shop.visitor(init_script=init)
    page = await visitor.open(url)
    results = await page.evaluate(
        """() => {
          const cyclic = {}; cyclic.self = cyclic;
          return [
            _df.track(),                               // no event: ignored
            _df.track("Product Viewed", cyclic),       // not JSON-able: dropped quietly
            _df.consent("yes"),                        // not an object: ignored
            _df.consent({advertising: "false"}),       // not a boolean: ignored
            _df.identify(null, 42),
            _df.push(["no_such_method"]),
            _df.track("Product Viewed", {price: 1, currency: "USD"},
                      {callback: function () { throw new Error("site bug") }}),
            typeof _df.track("Lead Generated", null, {message_id: "m-site-1"}),
          ];
        }"""
    )
    assert results[:4] == [None] * 4
    assert isinstance(results[4], str)  # an identify without user id or traits is still a hit
    assert results[5:] == [None, None, "string"]
    await visitor.wait_for_answers(1, shop.tiktok)  # those hits left together, as one batch
    # A landing URL longer than the gateway takes is clipped, not refused.
    await page.evaluate("history.replaceState(null, '', '/odd?q=' + 'x'.repeat(5000))")
    await page.evaluate("_df.page()")

    events = await shop.events(3)
    assert sorted(e["event"] for e in events) == ["PageView", "SubmitForm", "ViewContent"]
    assert "m-site-1" in [e["event_id"] for e in events]
    assert hits_handled(shop.gw, "identify") == 1
    assert set(visitor.transports) == {"xhr"}
    cookies = await visitor.cookies(shop.origin)  # XMLHttpRequest sent and got credentials
    assert set(cookies) == {"_ttp", "_dfid"}
    assert_first_party_cookies(cookies, DOMAIN)
    ua = await page.evaluate("navigator.userAgent")
    for event in events:
        assert_visitor(event, cookies, ua)
