"""Hit -> TikTok v1.3 event, row by row of TIKTOK.md's tables. Hits go through the real schema."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from gateway.collect.protocols.native import decode_hit
from gateway.core.hit import Hit, HitType
from gateway.core.identity import Identity
from gateway.core.models import Integration, Source
from gateway.core.settings import Secret
from gateway.destinations.base import HitContext, Rejected, Transformed
from gateway.destinations.tiktok.config import TikTokConfig
from gateway.destinations.tiktok.transform import map_event_name, transform

# TikTok's hashing examples (TIKTOK.md), as literals.
EMAIL_RAW, EMAIL_HASH = (
    " ALICE_abc@gmail.com ",
    "848a771458438fc2ec420560d769fb9b9b86851ee338ec56517baabd79d3bb4f",
)
PHONE_RAW, PHONE_HASH = (
    "(+1)2133734253",
    "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd",
)
ANON_RAW, ANON_HASH = (
    "user_123",
    "80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b",
)
COOKIE_EMAIL_HASH = "a" * 64
COOKIE_PHONE_HASH = "b" * 64

CONTEXT = HitContext(event_id="evt_abc123def456", event_time=1769697000)
SOURCE = Source(id="src_test", name="Test shop")


def make_hit(body: dict[str, Any], path_type: HitType = "track") -> Hit:
    return decode_hit(json.dumps(body).encode(), path_type)


def track(event: str, properties: dict[str, Any] | None = None, **fields: Any) -> Hit:
    body: dict[str, Any] = {"event": event, **fields}
    if properties is not None:
        body["properties"] = properties
    return make_hit(body)


def config(**fields: Any) -> TikTokConfig:
    return TikTokConfig(pixel_code="PIXEL123", access_token=Secret("token"), **fields)


def integration(**fields: Any) -> Integration:
    return Integration(id="int_test", source_id="src_test", name="TikTok", config=config(**fields))


def run(
    hit: Hit,
    context: HitContext = CONTEXT,
    source: Source = SOURCE,
    **config_fields: Any,
) -> Transformed | Rejected:
    return transform(hit, context, integration(**config_fields), source)


def sent(hit: Hit, **kwargs: Any) -> dict[str, Any]:
    """The event of a hit that must be sent."""
    result = run(hit, **kwargs)
    assert isinstance(result, Transformed), result
    return result.event


PAID = {"total": 10.0, "currency": "USD"}


# --- event names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hit_event", "tiktok_event"),
    [
        pytest.param("Product Added", "AddToCart", id="Product Added"),
        pytest.param("Order Completed", "CompletePayment", id="Order Completed"),
        pytest.param("Product Purchased", "CompletePayment", id="Product Purchased"),
        pytest.param("Checkout Started", "InitiateCheckout", id="Checkout Started"),
        pytest.param("Product Viewed", "ViewContent", id="Product Viewed"),
        pytest.param("Products Searched", "Search", id="Products Searched"),
        pytest.param("Product Added to Wishlist", "AddToWishlist", id="Product Added to Wishlist"),
        pytest.param("Signed Up", "CompleteRegistration", id="Signed Up"),
        pytest.param("Lead Generated", "SubmitForm", id="Lead Generated"),
        pytest.param("Order Placed", "PlaceAnOrder", id="Order Placed"),
        pytest.param("Payment Info Entered", "AddPaymentInfo", id="Payment Info Entered"),
        pytest.param("Subscription Created", "Subscribe", id="Subscription Created"),
        pytest.param("Callback Started", "Contact", id="Callback Started"),
        pytest.param("Form Submitted", "SubmitForm", id="Form Submitted"),
        pytest.param("Product Clicked", "ClickButton", id="Product Clicked"),
        pytest.param("Download Link Clicked", "Download", id="Download Link Clicked"),
    ],
)
def test_seed_mapping_table(hit_event: str, tiktok_event: str) -> None:
    assert map_event_name(hit_event, config()) == tiktok_event
    result = run(track(hit_event, PAID))
    assert isinstance(result, Transformed)
    assert result.event_name == result.event["event"] == tiktok_event


def test_page_hit_is_page_view() -> None:
    hit = make_hit({"context": {"page": {"url": "https://example.com/"}}}, "page")
    result = run(hit)
    assert isinstance(result, Transformed)
    assert result.event_name == result.event["event"] == "PageView"


@pytest.mark.parametrize(
    ("hit_event", "tiktok_event"),
    [
        pytest.param("order  completed ", "CompletePayment", id="lower-double-space-trailing"),
        pytest.param("PRODUCT ADDED", "AddToCart", id="upper"),
        pytest.param("product\tviewed", "ViewContent", id="tab"),
        pytest.param("  Signed Up", "CompleteRegistration", id="leading-space"),
        pytest.param("productaddedtowishlist", "AddToWishlist", id="no-spaces"),
    ],
)
def test_mapping_ignores_case_and_whitespace(hit_event: str, tiktok_event: str) -> None:
    assert map_event_name(hit_event, config()) == tiktok_event


@pytest.mark.parametrize(
    "hit_event",
    [
        pytest.param("Newsletter Opened", id="custom"),
        pytest.param("  coupon applied ", id="custom-kept-verbatim"),
        pytest.param("Order Refunded", id="near-miss"),
        pytest.param("AddToCart", id="tiktok-name"),
    ],
)
def test_unknown_names_pass_through_unchanged(hit_event: str) -> None:
    assert map_event_name(hit_event, config()) == hit_event


@pytest.mark.parametrize(
    ("mapping", "hit_event", "tiktok_event"),
    [
        pytest.param({"Signed Up": "Subscribe"}, "Signed Up", "Subscribe", id="overrides-table"),
        pytest.param({"signed up": "Subscribe"}, "Signed Up", "Subscribe", id="override-fuzzy"),
        pytest.param({"Trial Started": "StartTrial"}, "trial  started", "StartTrial", id="adds"),
        pytest.param(
            {"Trial Started": "StartTrial"},
            "Signed Up",
            "CompleteRegistration",
            id="table-still-applies",
        ),
        pytest.param(
            {"signed up": "A", "Signed Up": "B"}, "Signed Up", "B", id="exact-before-fuzzy"
        ),
    ],
)
def test_integration_mapping(mapping: dict[str, str], hit_event: str, tiktok_event: str) -> None:
    assert map_event_name(hit_event, config(event_mapping=mapping)) == tiktok_event


@pytest.mark.parametrize(
    ("mapping", "hit_event", "tiktok_event"),
    [
        pytest.param({}, "Order Completed", "Purchase", id="Order Completed"),
        pytest.param({}, "Product Purchased", "Purchase", id="Product Purchased"),
        pytest.param({}, "Lead Generated", "Lead", id="Lead Generated"),
        pytest.param({}, "Product Added", "AddToCart", id="others-unchanged"),
        pytest.param({"Paid": "CompletePayment"}, "Paid", "Purchase", id="after-override-payment"),
        pytest.param({"Form Sent": "SubmitForm"}, "Form Sent", "Lead", id="after-override-form"),
    ],
)
def test_current_event_names(mapping: dict[str, str], hit_event: str, tiktok_event: str) -> None:
    cfg = config(use_current_event_names=True, event_mapping=mapping)
    assert map_event_name(hit_event, cfg) == tiktok_event


def test_identify_hit_has_no_event() -> None:
    hit = make_hit({"user_id": "u-42", "traits": {"email": "a@b.c"}}, "identify")
    with pytest.raises(ValueError, match="identify"):
        run(hit)


# --- properties ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        pytest.param(
            {
                "products": [
                    {
                        "product_id": "P1",
                        "name": "Widget",
                        "category": "Tools",
                        "brand": "Acme",
                        "price": 5,
                        "quantity": 3,
                    },
                    {"sku": "S2"},
                ]
            },
            {
                "content_type": "product",
                "content_ids": ["P1", "S2"],
                "num_items": 3,
                "value": 15.0,
                "contents": [
                    {
                        "content_id": "P1",
                        "content_name": "Widget",
                        "content_category": "Tools",
                        "brand": "Acme",
                        "price": 5.0,
                        "quantity": 3,
                    },
                    {"content_id": "S2"},
                ],
            },
            id="products-list",
        ),
        pytest.param(
            {"products": [{"product_id": 42, "sku": "S-42", "price": 1.5}]},
            {
                "content_type": "product",
                "content_ids": ["42"],
                "value": 1.5,
                "contents": [{"content_id": "42", "price": 1.5}],
            },
            id="numeric-id-as-string-and-product-id-before-sku",
        ),
        pytest.param(
            {"product_id": "P1", "name": "Widget", "price": 9.5, "quantity": 2, "brand": "Acme"},
            {
                "content_type": "product",
                "content_ids": ["P1"],
                "num_items": 2,
                "value": 19.0,
                "contents": [
                    {
                        "content_id": "P1",
                        "content_name": "Widget",
                        "brand": "Acme",
                        "price": 9.5,
                        "quantity": 2,
                    },
                ],
            },
            id="single-product-by-id",
        ),
        pytest.param(
            {"sku": 777, "category": "Shoes"},
            {
                "content_type": "product",
                "content_ids": ["777"],
                "contents": [{"content_id": "777", "content_category": "Shoes"}],
            },
            id="single-product-by-sku",
        ),
        pytest.param(
            {"name": "Widget", "price": 9.5},
            {},
            id="no-id-no-single-product",
        ),
        pytest.param({"products": []}, {}, id="empty-products"),
        pytest.param(
            {"products": [{}, {"product_id": "P1"}]},
            {
                "content_type": "product",
                "content_ids": ["P1"],
                "contents": [{"content_id": "P1"}],
            },
            id="empty-product-dropped",
        ),
    ],
)
def test_contents(properties: dict[str, Any], expected: dict[str, Any]) -> None:
    event = sent(track("Product Viewed", properties))
    assert event.get("properties", {}) == expected


@pytest.mark.parametrize(
    ("properties", "value"),
    [
        pytest.param(
            {"total": 100, "revenue": 90, "value": 80, "products": [{"price": 1}]},
            100.0,
            id="total-first",
        ),
        pytest.param(
            {"revenue": 90, "value": 80, "products": [{"price": 1}]}, 90.0, id="revenue-second"
        ),
        pytest.param({"value": 80, "products": [{"price": 1}]}, 80.0, id="value-third"),
        pytest.param(
            {"products": [{"price": 2.5, "quantity": 4}, {"price": 1}]},
            11.0,
            id="sum-quantity-defaults-to-1",
        ),
        pytest.param(
            {"products": [{"price": 49.99, "quantity": 2}, {"price": 30.01}]},
            129.99,
            id="sum-without-float-noise",
        ),
        pytest.param({"products": [{"price": 2, "quantity": 0}]}, 0.0, id="sum-zero-quantity"),
        pytest.param({"total": 0, "revenue": 5}, 0.0, id="zero-total-still-wins"),
        pytest.param({"products": [{"product_id": "P1", "quantity": 2}]}, None, id="no-price"),
        pytest.param({}, None, id="nothing"),
    ],
)
def test_value_precedence(properties: dict[str, Any], value: float | None) -> None:
    event = sent(track("Checkout Started", properties))
    assert event.get("properties", {}).get("value") == value
    if value is not None:
        assert type(event["properties"]["value"]) is float


@pytest.mark.parametrize(
    ("currency", "expected"),
    [
        pytest.param("usd", "USD", id="lower"),
        pytest.param(" eur ", "EUR", id="padded"),
        pytest.param("JPY", "JPY", id="upper"),
        pytest.param("dollars", None, id="word"),
        pytest.param("US", None, id="two-letters"),
        pytest.param("U$D", None, id="symbol"),
        pytest.param("ÜSD", None, id="non-ascii"),
        pytest.param("", None, id="empty"),
    ],
)
def test_currency(currency: str, expected: str | None) -> None:
    event = sent(track("Product Added", {"value": 1, "currency": currency}))
    assert event["properties"].get("currency") == expected


@pytest.mark.parametrize(
    ("hit", "expected"),
    [
        pytest.param(
            track("Products Searched", {"query": "red shoes"}),
            {"query": "red shoes", "search_string": "red shoes"},
            id="search-query-is-also-search-string",
        ),
        pytest.param(
            track("Order Completed", {"order_id": 1001, **PAID}),
            {"order_id": "1001", "value": 10.0, "currency": "USD"},
            id="numeric-order-id-as-string",
        ),
        pytest.param(
            track("Newsletter Opened", {"order_id": "X", "query": "q"}),
            {"order_id": "X", "query": "q"},
            id="custom-event-keeps-them",
        ),
        pytest.param(
            track("Signed Up", {"title": "ignored", "plan": "pro"}),
            None,
            id="unknown-keys-dropped-empty-omitted",
        ),
        pytest.param(track("Signed Up"), None, id="no-properties"),
    ],
)
def test_other_properties(hit: Hit, expected: dict[str, Any] | None) -> None:
    assert sent(hit).get("properties") == expected


# --- purchases without value or currency ---------------------------------------------------------


@pytest.mark.parametrize(
    ("hit_event", "properties", "use_current"),
    [
        pytest.param("Order Completed", {"currency": "USD"}, False, id="no-value"),
        pytest.param("Order Completed", {"total": 5}, False, id="no-currency"),
        pytest.param(
            "Order Completed", {"total": 5, "currency": "usd$"}, False, id="invalid-currency"
        ),
        pytest.param("Product Purchased", None, False, id="no-properties"),
        pytest.param("Order Completed", {"order_id": "O1"}, True, id="purchase-current-name"),
        pytest.param("CompletePayment", {"value": 3}, False, id="passed-through-name"),
    ],
)
def test_purchase_without_value_or_currency_is_rejected(
    hit_event: str, properties: dict[str, Any] | None, use_current: bool
) -> None:
    result = run(track(hit_event, properties), use_current_event_names=use_current)
    assert isinstance(result, Rejected)
    assert result.reason == "missing_value_or_currency"
    expected_name = "Purchase" if use_current else "CompletePayment"
    assert result.event_name == result.event["event"] == expected_name
    assert result.event["event_id"] == CONTEXT.event_id


def test_rejected_event_is_the_event_it_would_have_been() -> None:
    properties = {"order_id": "O1", "products": [{"product_id": "P1", "price": 2}]}
    rejected = run(track("Order Completed", properties))
    assert isinstance(rejected, Rejected)
    assert rejected.event == {
        "event": "CompletePayment",
        "event_time": 1769697000,
        "event_id": "evt_abc123def456",
        "properties": {
            "order_id": "O1",
            "value": 2.0,
            "content_type": "product",
            "content_ids": ["P1"],
            "contents": [{"content_id": "P1", "price": 2.0}],
        },
        "limited_data_use": False,
    }


def test_seed_purchase_example() -> None:
    hit = track(
        "Order Completed",
        {
            "order_id": "ORD-001",
            "total": 129.99,
            "currency": "usd",
            "products": [
                {"product_id": "SKU-A", "name": "Widget", "price": 49.99, "quantity": 2},
                {"sku": "SKU-B", "name": "Gadget", "price": 30.01, "quantity": 1},
            ],
        },
    )
    result = run(hit)
    assert isinstance(result, Transformed)
    assert result.event_name == "CompletePayment"
    assert result.event == {
        "event": "CompletePayment",
        "event_time": 1769697000,
        "event_id": "evt_abc123def456",
        "properties": {
            "currency": "USD",
            "value": 129.99,
            "order_id": "ORD-001",
            "content_type": "product",
            "content_ids": ["SKU-A", "SKU-B"],
            "num_items": 3,
            "contents": [
                {"content_id": "SKU-A", "content_name": "Widget", "price": 49.99, "quantity": 2},
                {"content_id": "SKU-B", "content_name": "Gadget", "price": 30.01, "quantity": 1},
            ],
        },
        "limited_data_use": False,
    }


# --- user, page and the envelope -----------------------------------------------------------------

FULL_CONTEXT = HitContext(
    event_id="evt_1",
    event_time=1769697000,
    anonymous_id=ANON_RAW,
    ttp="01HZZ.ttp-cookie",
    ttclid="E.C.P.abc",
    ip="2001:db8::1",
    user_agent="Mozilla/5.0",
    locale="en-US",
    identity=Identity(email_hashes=(COOKIE_EMAIL_HASH,), phone_hashes=(COOKIE_PHONE_HASH,)),
)


def test_user_has_every_field() -> None:
    hit = track("Signed Up", context={"traits": {"email": EMAIL_RAW, "phone": PHONE_RAW}})
    assert sent(hit, context=FULL_CONTEXT)["user"] == {
        "ttp": "01HZZ.ttp-cookie",
        "ttclid": "E.C.P.abc",
        "external_id": [ANON_HASH],
        "email": EMAIL_HASH,
        "phone": PHONE_HASH,
        "ip": "2001:db8::1",
        "user_agent": "Mozilla/5.0",
        "locale": "en-US",
    }


def test_user_is_omitted_when_nothing_is_known() -> None:
    assert "user" not in sent(track("Signed Up"))


@pytest.mark.parametrize(
    ("fields", "context", "source", "expected"),
    [
        pytest.param(
            {"context": {"traits": {"email": EMAIL_RAW}}, "traits": {"email": "other@example.com"}},
            FULL_CONTEXT,
            SOURCE,
            {"email": EMAIL_HASH, "phone": COOKIE_PHONE_HASH},
            id="context-traits-first-cookie-fills-the-gap",
        ),
        pytest.param(
            {"traits": {"email": EMAIL_RAW, "phone": PHONE_RAW}},
            FULL_CONTEXT,
            SOURCE,
            {"email": EMAIL_HASH, "phone": PHONE_HASH},
            id="hit-traits",
        ),
        pytest.param(
            {},
            FULL_CONTEXT,
            SOURCE,
            {"email": COOKIE_EMAIL_HASH, "phone": COOKIE_PHONE_HASH},
            id="identity-cookie",
        ),
        pytest.param(
            {"traits": {"email": "not-an-address", "phone": "12"}},
            FULL_CONTEXT,
            SOURCE,
            {"email": COOKIE_EMAIL_HASH, "phone": COOKIE_PHONE_HASH},
            id="unusable-traits-fall-back-to-cookie",
        ),
        pytest.param(
            {"traits": {"email": "not-an-address", "phone": "12"}},
            CONTEXT,
            SOURCE,
            {},
            id="unusable-traits-omitted",
        ),
        pytest.param(
            {"traits": {"phone": "(213) 373-4253"}},
            CONTEXT,
            Source(id="src_test", name="Shop", default_phone_region="US"),
            {"phone": PHONE_HASH},
            id="national-phone-source-region",
        ),
        pytest.param(
            {"traits": {"phone": "(213) 373-4253"}},
            CONTEXT,
            SOURCE,
            {},
            id="national-phone-no-region-omitted",
        ),
    ],
)
def test_user_email_and_phone(
    fields: dict[str, Any], context: HitContext, source: Source, expected: dict[str, str]
) -> None:
    user = sent(track("Signed Up", **fields), context=context, source=source).get("user", {})
    assert {key: user[key] for key in ("email", "phone") if key in user} == expected


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        pytest.param(
            HitContext(event_id="e", event_time=1, ip="203.0.113.50"),
            {"ip": "203.0.113.50"},
            id="ip-only",
        ),
        pytest.param(
            HitContext(event_id="e", event_time=1, anonymous_id="  "),
            None,
            id="blank-anonymous-id-omitted",
        ),
        pytest.param(
            HitContext(event_id="e", event_time=1, ttp="", ttclid=None),
            None,
            id="empty-strings-omitted",
        ),
    ],
)
def test_user_omits_absent_fields(context: HitContext, expected: dict[str, str] | None) -> None:
    assert sent(track("Signed Up"), context=context).get("user") == expected


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        pytest.param(
            {"url": "https://e.com/c", "referrer": "https://e.com/", "title": "T"},
            {"url": "https://e.com/c", "referrer": "https://e.com/"},
            id="url-referrer",
        ),
        pytest.param({"url": "https://e.com/c"}, {"url": "https://e.com/c"}, id="url-only"),
        pytest.param({"title": "Only a title"}, None, id="nothing-to-send"),
        pytest.param(None, None, id="no-page"),
    ],
)
def test_page(page: dict[str, Any] | None, expected: dict[str, str] | None) -> None:
    hit = make_hit({"context": {"page": page}} if page else {}, "page")
    assert sent(hit).get("page") == expected


def test_envelope_has_only_v13_keys() -> None:
    hit = track(
        "Order Completed", PAID, context={"page": {"url": "https://e.com/"}, "locale": "de-DE"}
    )
    event = sent(hit, context=FULL_CONTEXT, limited_data_use=True, test_event_code="TEST12345")
    assert list(event) == [
        "event",
        "event_time",
        "event_id",
        "user",
        "page",
        "properties",
        "limited_data_use",
    ]
    assert event["event_id"] == "evt_1"
    assert event["event_time"] == 1769697000
    assert event["limited_data_use"] is True


# --- match keys: external_id, arrays, names and address -------------------------------------------


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.mark.parametrize(
    ("fields", "context", "expected"),
    [
        pytest.param(
            {"user_id": " u-42 "},
            HitContext(event_id="e", event_time=1, anonymous_id=ANON_RAW),
            [sha("u-42"), ANON_HASH],
            id="hit-user-id-first-then-anonymous",
        ),
        pytest.param(
            {},
            HitContext(
                event_id="e",
                event_time=1,
                anonymous_id=ANON_RAW,
                identity=Identity(user_id_hash=sha("u-7")),
            ),
            [sha("u-7"), ANON_HASH],
            id="cookie-user-id-first-then-anonymous",
        ),
        pytest.param(
            {"user_id": "u-42"},
            HitContext(
                event_id="e",
                event_time=1,
                anonymous_id=ANON_RAW,
                identity=Identity(user_id_hash=sha("u-7")),
            ),
            [sha("u-42"), ANON_HASH],
            id="hit-user-id-over-cookie",
        ),
        pytest.param(
            {},
            HitContext(event_id="e", event_time=1, anonymous_id=ANON_RAW),
            [ANON_HASH],
            id="anonymous-only",
        ),
        pytest.param(
            {"user_id": "u-42"},
            HitContext(event_id="e", event_time=1),
            [sha("u-42")],
            id="user-id-only",
        ),
        pytest.param(
            {"user_id": ANON_RAW},
            HitContext(event_id="e", event_time=1, anonymous_id=ANON_RAW),
            [ANON_HASH],
            id="same-id-once",
        ),
        pytest.param(
            {"user_id": ANON_HASH.upper()},
            HitContext(event_id="e", event_time=1),
            [ANON_HASH],
            id="uppercase-prehashed-user-id-lowercased-not-rehashed",
        ),
    ],
)
def test_external_id_is_an_array_user_id_first(
    fields: dict[str, Any], context: HitContext, expected: list[str]
) -> None:
    assert sent(track("Signed Up", **fields), context=context)["user"]["external_id"] == expected


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        pytest.param({"email": EMAIL_RAW}, {"email": EMAIL_HASH}, id="one-email-a-string"),
        pytest.param(
            {"email": [EMAIL_RAW, "b@example.com", "alice_abc@gmail.com"]},
            {"email": [EMAIL_HASH, sha("b@example.com")]},
            id="several-emails-an-array-each-once",
        ),
        pytest.param(
            {"email": ["not-an-address", EMAIL_RAW]},
            {"email": EMAIL_HASH},
            id="unusable-list-items-dropped",
        ),
        pytest.param(
            {"phone": [PHONE_RAW, "+44 20 7946 0958"]},
            {"phone": [PHONE_HASH, sha("+442079460958")]},
            id="several-phones",
        ),
        pytest.param(
            {"email": EMAIL_HASH.upper(), "phone": PHONE_HASH.upper()},
            {"email": EMAIL_HASH, "phone": PHONE_HASH},
            id="uppercase-prehashed-lowercased",
        ),
        pytest.param(
            {
                "first_name": " Jane ",
                "last_name": "O'Brien",
                "address": {
                    "city": "New York",
                    "state": "NY",
                    "country": "United States",
                    "postal_code": "10001-1234",
                },
            },
            {
                "first_name": sha("jane"),
                "last_name": sha("obrien"),
                "city": sha("newyork"),
                "state": sha("ny"),
                "country": sha("us"),
                "zip_code": sha("100011234"),
            },
            id="names-and-address",
        ),
        pytest.param(
            {"firstName": "Jane", "lastName": "Doe", "address": {"postalCode": "SW1A 1AA"}},
            {"first_name": sha("jane"), "last_name": sha("doe"), "zip_code": sha("sw1a1aa")},
            id="segment-camel-case-spellings",
        ),
        pytest.param(
            {"first_name": "  ", "address": {"country": "Atlantis"}},
            {},
            id="unusable-names-and-address-left-out",
        ),
    ],
)
def test_match_keys_from_traits(traits: dict[str, Any], expected: dict[str, Any]) -> None:
    user = sent(track("Signed Up", traits=traits)).get("user", {})
    assert user == expected


def test_hit_traits_win_key_by_key_over_the_identity_cookie() -> None:
    context = HitContext(
        event_id="e",
        event_time=1,
        identity=Identity(
            email_hashes=(COOKIE_EMAIL_HASH,),
            phone_hashes=(COOKIE_PHONE_HASH,),
            first_name="c" * 64,
            city="d" * 64,
        ),
    )
    hit = track("Signed Up", traits={"email": EMAIL_RAW, "first_name": "Jane"})
    assert sent(hit, context=context)["user"] == {
        "email": EMAIL_HASH,
        "phone": COOKIE_PHONE_HASH,
        "first_name": sha("jane"),
        "city": "d" * 64,
    }
