"""The benchmark's load: realistic hits, and the cookies and headers browsers send with them.

One source of truth for both load generators: `write_lua_data` renders it for `bench/hits.lua`
(wrk), `requests` for the Python fallback (`bench/pyload.py`). Every hit body carries a
`message_id` placeholder that the generator fills, at send time, with `b<send time in µs>-...`:
the gateway uses the message_id as TikTok's `event_id`, so the TikTok double (`bench/sink.py`)
can tell how long each event took from the browser to TikTok.

The mix is a shop's day in miniature: mostly page views and product views, some carts and
checkouts, purchases with one to three products, a few identify calls (which hash an email and a
phone and seal the identity cookie), a few hits without advertising consent. A third of the
requests come without cookies (first visits), the others with `_ttp`/`_dfid`, some with a
`ttclid` cookie or the sealed identity cookie `_dfuser`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE_ID = "src_bench"
ORIGIN = "https://shop.example"
MID = "__MID__"  # replaced by the load generator with a unique, time-stamped message id
# The secret the bench gateways run with, so the sealed identity cookie below stays valid.
SECRET_KEY = "bench-secret-key-0123456789-abcdefghijklmnop"
ADMIN_TOKEN = "bench-admin-token-0123456789"

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.6478.71 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
CLIENT_IPS = ("203.0.113.7", "198.51.100.23", "192.0.2.55", "2001:db8::42", "203.0.113.201")

_GRANTED = {"advertising": True, "analytics": True}
_DENIED = {"advertising": False, "analytics": True}


def _context(path: str, *, consent: dict[str, bool] | None = _GRANTED, **page: str) -> Any:
    context: dict[str, Any] = {
        "page": {"url": f"{ORIGIN}{path}", "referrer": page.get("referrer", ""), "title": "Shop"},
        "locale": "en-US",
    }
    if "title" in page:
        context["page"]["title"] = page["title"]
    if consent is not None:
        context["consent"] = consent
    return context


def _product(n: int) -> dict[str, Any]:
    return {
        "product_id": f"SKU-{n:04d}",
        "sku": f"SKU-{n:04d}",
        "name": f"Widget {n}",
        "category": "Widgets",
        "brand": "Acme",
        "price": round(9.99 + n * 3.5, 2),
        "quantity": 1 + n % 3,
    }


def _page(path: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    return "/v1/p", {"source_id": SOURCE_ID, "message_id": MID, "context": _context(path, **kw)}


def _track(
    event: str, properties: dict[str, Any], path: str, **kw: Any
) -> tuple[str, dict[str, Any]]:
    body = {
        "source_id": SOURCE_ID,
        "event": event,
        "properties": properties,
        "message_id": MID,
        "context": _context(path, **kw),
    }
    return "/v1/t", body


def _identify(n: int) -> tuple[str, dict[str, Any]]:
    return "/v1/i", {
        "source_id": SOURCE_ID,
        "user_id": f"user-{n}",
        "traits": {"email": f"  Customer.{n}@Example.com ", "phone": f"+1 (415) 555-01{n:02d}"},
        "message_id": MID,
        "context": _context("/account", title="My account"),
    }


def _purchase(order: int, products: list[int]) -> tuple[str, dict[str, Any]]:
    items = [_product(n) for n in products]
    total = round(sum(p["price"] * p["quantity"] for p in items), 2)
    props = {"order_id": f"ORD-{order}", "total": total, "currency": "USD", "products": items}
    return _track("Order Completed", props, f"/checkout/thanks/{order}")


def hit_templates() -> list[tuple[str, dict[str, Any]]]:
    """The rotation of (path, body); the load generators cycle through it in this order."""
    ref = "https://www.google.com/"
    return [
        _page("/", referrer=ref, title="Home"),
        _page("/c/widgets", title="Widgets"),
        _track("Product Viewed", _product(1), "/p/widget-1"),
        _page("/?ttclid=E.C.P.CjwKCAjw-benchclick-0001", referrer="https://www.tiktok.com/"),
        _track("Product Viewed", _product(2), "/p/widget-2"),
        _page("/c/gadgets", title="Gadgets"),
        _track("Product Added", {**_product(2), "currency": "USD"}, "/p/widget-2"),
        _page("/cart", title="Cart"),
        _track("Product Viewed", _product(3), "/p/widget-3"),
        _page("/about", consent=_DENIED),
        _track(
            "Checkout Started",
            {"currency": "USD", "value": 59.98, "products": [_product(1), _product(2)]},
            "/checkout",
        ),
        _purchase(1001, [1]),
        _page("/p/widget-4", title="Widget 4"),
        _track("Products Searched", {"query": "blue widget"}, "/search?q=blue+widget"),
        _identify(1),
        _page("/blog/how-to-widget", referrer=ref),
        _track("Product Viewed", _product(4), "/p/widget-4", consent=None),
        _page("/c/widgets?page=2"),
        _purchase(1002, [2, 3, 4]),
        _track("Product Added to Wishlist", {**_product(3), "currency": "USD"}, "/p/widget-3"),
        _page("/", referrer="https://www.tiktok.com/", title="Home"),
        _identify(2),
        _page("/contact", title="Contact"),
    ]


def produces_event(path: str, body: dict[str, Any]) -> bool:
    """Whether the bench integration (needs `advertising`, source default deny) gets an event."""
    consent = body.get("context", {}).get("consent")
    return path != "/v1/i" and consent is not None and consent.get("advertising") is True


def events_per_hit() -> float:
    templates = hit_templates()
    return sum(produces_event(p, b) for p, b in templates) / len(templates)


def cookie_sets(identity_cookie: str) -> list[str]:
    """Cookie headers, cycled with a period prime to the bodies' so every pairing occurs."""
    ttp = "_ttp=2fQ0bE1xq9c3bench0000001"
    dfid = "_dfid=3b1c5a8e-0d4f-4a57-9a59-6b1f0c2e7d11"
    return [
        "",
        f"{ttp}; {dfid}",
        "",
        f"{ttp}; {dfid}; ttclid=E.C.P.CjwKCAjw-benchclick-0000",
        f"{ttp}; {dfid}; _ga=GA1.1.123456789.1719000000; _fbp=fb.1.1719000000.987654321",
        f"{ttp}; {dfid}; _dfuser={identity_cookie}",
        "",
    ]


def sealed_identity_cookie() -> str:
    """A `_dfuser` cookie sealed with the bench's secret key, as the gateway would set it."""
    from gateway.collect.cookies import seal_identity
    from gateway.core.crypto import CookieBox
    from gateway.core.hashing import hash_email, hash_external_id
    from gateway.core.identity import Identity
    from gateway.core.settings import Secret

    box = CookieBox((Secret(SECRET_KEY),), purpose="identity-cookie")
    email_hash = hash_email("customer.7@example.com") or ""
    return seal_identity(
        box, Identity(user_id_hash=hash_external_id("user-7"), email_hashes=(email_hash,))
    )


def batch_body(hits: int) -> bytes:
    """A `/v1/batch` body of page views (the outage phase fills the queue with these)."""
    batch = []
    for i in range(hits):
        _, body = _page(f"/p/widget-{i}")
        del body["message_id"]
        batch.append({"type": "page", **body})
    return json.dumps({"batch": batch}, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    content_type: str
    pre: bytes  # body up to the message id
    post: bytes  # body after it


def requests(*, only_events: bool = False) -> list[Request]:
    out = []
    for index, (path, body) in enumerate(hit_templates()):
        if only_events and not produces_event(path, body):
            continue
        text = json.dumps(body, separators=(",", ":"))
        pre, _, post = text.partition(MID)
        # Every fourth hit comes as text/plain, as navigator.sendBeacon sends it.
        content_type = "text/plain;charset=UTF-8" if index % 4 == 3 else "application/json"
        out.append(Request(path, content_type, pre.encode(), post.encode()))
    return out


def headers_for(n: int, cookies: list[str]) -> dict[str, str]:
    """The headers of the n-th request: the same rotation as hits.lua."""
    headers = {
        "Origin": ORIGIN,
        "User-Agent": USER_AGENTS[n % len(USER_AGENTS)],
        "X-Forwarded-For": CLIENT_IPS[n % len(CLIENT_IPS)],
        "X-Forwarded-Proto": "https",
    }
    cookie = cookies[n % len(cookies)]
    if cookie:
        headers["Cookie"] = cookie
    return headers


def _lua_string(value: str | bytes) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    assert "]==]" not in text
    return f"[==[{text}]==]"


def write_lua_data(
    path: Path,
    *,
    identity_cookie: str,
    only_events: bool = False,
    batch_hits: int = 0,
) -> Path:
    """Render the workload as a Lua table for hits.lua; `batch_hits` > 0: static batch bodies."""
    lines = ["return {", "  bodies = {"]
    if batch_hits:
        body = batch_body(batch_hits)
        lines.append(
            f"    {{path = '/v1/batch', ctype = 'application/json', pre = {_lua_string(body)},"
            " post = nil},"
        )
    else:
        for req in requests(only_events=only_events):
            lines.append(
                f"    {{path = '{req.path}', ctype = '{req.content_type}', "
                f"pre = {_lua_string(req.pre)}, post = {_lua_string(req.post)}}},"
            )
    lines += ["  },", "  cookies = {"]
    lines += [f"    {_lua_string(c)}," for c in cookie_sets(identity_cookie)]
    lines += ["  },", "  agents = {"]
    lines += [f"    {_lua_string(a)}," for a in USER_AGENTS]
    lines += ["  },", "  ips = {"]
    lines += [f"    {_lua_string(ip)}," for ip in CLIENT_IPS]
    lines += ["  },", f"  origin = {_lua_string(ORIGIN)},", "}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def new_run_id() -> str:
    return uuid.uuid4().hex[:6]
