"""The gateway's transformation against vectors taken from two other TikTok destinations'
tests and fixtures: Segment's (`segmentio/action-destinations`, tiktok-conversions) and
RudderStack's (`rudderlabs/rudder-transformer`, tiktok_ads). Each vector names its file.

Their inputs are restated as gateway hits (Segment's and RudderStack's e-commerce vocabulary is
the gateway's); their expected outputs are restated in TikTok's v1.3 shape, which differs where
noted: both older tests put a `content_type` in each content (Events API 1.x) where v1.3 has one
`properties.content_type`, and their mappings may route a product's category elsewhere.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.collect.protocols.native import decode_hit
from gateway.core.models import EventSource, Integration, Source
from gateway.core.settings import Secret
from gateway.destinations.base import HitContext, Rejected, Transformed
from gateway.destinations.tiktok.config import TikTokConfig
from gateway.destinations.tiktok.transform import map_event_name, transform

SEGMENT_TESTS = (
    "segmentio/action-destinations: packages/destination-actions/src/destinations/"
    "tiktok-conversions/__tests__/index.test.ts"
)
SEGMENT_UTILS = (
    "segmentio/action-destinations: packages/destination-actions/src/destinations/"
    "tiktok-conversions/reportWebEvent/utils.ts"
)
SEGMENT_CRM_FIELDS = (
    "segmentio/action-destinations: packages/destination-actions/src/destinations/"
    "tiktok-conversions/reportWebEvent/fields/crm_fields.ts"
)
RUDDER_UTIL_TESTS = "rudderlabs/rudder-transformer: src/v0/destinations/tiktok_ads/util.test.js"
RUDDER_CONFIG = "rudderlabs/rudder-transformer: src/v0/destinations/tiktok_ads/config.js"
RUDDER_TRANSFORM_V2 = "rudderlabs/rudder-transformer: src/v0/destinations/tiktok_ads/transformV2.js"
RUDDER_TRACK_V2 = (
    "rudderlabs/rudder-transformer: src/v0/destinations/tiktok_ads/data/TikTokTrackV2.json"
)

CONTEXT = HitContext(event_id="evt_vector", event_time=1769697000)
CONFIG = TikTokConfig(pixel_code="PIXEL123", access_token=Secret("token"))
INTEGRATION = Integration(id="int_v", source_id="src_v", name="TikTok", config=CONFIG)
WEB = Source(id="src_v", name="Web shop")
CRM = Source(id="src_v", name="CRM", event_source=EventSource.CRM, event_source_id="CRMSET1")


def properties_of(event: str, properties: dict[str, Any], source: Source = WEB) -> Any:
    hit = decode_hit(json.dumps({"event": event, "properties": properties}).encode(), "track")
    result = transform(hit, CONTEXT, INTEGRATION, source)
    assert isinstance(result, Transformed), result
    return result.event.get("properties"), result.event


# RudderStack util.test.js "product id sent as number" and "... as string": both products give
# one content each, the numeric id as a string, category as content_category.
RUDDER_PRODUCTS = [
    {
        "sku": "G-32",
        "name": "Monopoly",
        "price": 14,
        "quantity": 1,
        "category": "Games",
        "url": "https://www.website.com/product/path",
        "image_url": "https://www.website.com/product/path.jpg",
    },
    {"sku": "F-32", "name": "UNO", "price": 3.45, "quantity": 2, "category": "Games"},
]
RUDDER_CONTENTS = [
    {
        "content_id": "123",
        "content_category": "Games",
        "content_name": "Monopoly",
        "price": 14.0,
        "quantity": 1,
    },
    {
        "content_id": "345",
        "content_category": "Games",
        "content_name": "UNO",
        "price": 3.45,
        "quantity": 2,
    },
]


@pytest.mark.parametrize(
    ("event", "properties", "expected"),
    [
        pytest.param(
            "Order Completed",
            {
                "currency": "USD",
                "products": [
                    {**RUDDER_PRODUCTS[0], "product_id": 123},
                    {**RUDDER_PRODUCTS[1], "product_id": 345},
                ],
            },
            {
                "contents": RUDDER_CONTENTS,
                "content_type": "product",
                "content_ids": ["123", "345"],
                "num_items": 3,
                "value": 20.9,  # not in the vector: the gateway's sum of price x quantity
                "currency": "USD",
            },
            id=f"{RUDDER_UTIL_TESTS} product id sent as number",
        ),
        pytest.param(
            "Order Completed",
            {
                "currency": "USD",
                "products": [
                    {**RUDDER_PRODUCTS[0], "product_id": "123"},
                    {**RUDDER_PRODUCTS[1], "product_id": "345"},
                ],
            },
            {
                "contents": RUDDER_CONTENTS,
                "content_type": "product",
                "content_ids": ["123", "345"],
                "num_items": 3,
                "value": 20.9,
                "currency": "USD",
            },
            id=f"{RUDDER_UTIL_TESTS} product id sent as string",
        ),
        pytest.param(
            # The batch example in transformV2.js's comments: two products, value 46 in USD.
            "Order Completed",
            {
                "currency": "USD",
                "products": [
                    {"product_id": "1077218", "price": 8, "quantity": 2},
                    {"product_id": "1197218", "price": 30, "quantity": 1},
                ],
            },
            {
                "contents": [
                    {"content_id": "1077218", "price": 8.0, "quantity": 2},
                    {"content_id": "1197218", "price": 30.0, "quantity": 1},
                ],
                "content_type": "product",
                "content_ids": ["1077218", "1197218"],
                "num_items": 3,
                "value": 46.0,
                "currency": "USD",
            },
            id=f"{RUDDER_TRANSFORM_V2} batch example, CompletePayment value 46",
        ),
        pytest.param(
            "Checkout Started",
            {"currency": "USD", "value": 100, "query": "shoes"},
            {"currency": "USD", "value": 100.0, "query": "shoes"},
            id=f"{SEGMENT_TESTS} successful InitiateCheckout",
        ),
        pytest.param(
            # Segment's mapping put the category into a per-content content_type (1.x shape).
            "Checkout Started",
            {
                "currency": "USD",
                "value": 100,
                "query": "shoes",
                "products": [
                    {
                        "price": 100,
                        "quantity": 2,
                        "category": "Air Force One (Size S)",
                        "product_id": "abc123",
                    }
                ],
            },
            {
                "contents": [
                    {
                        "content_id": "abc123",
                        "content_category": "Air Force One (Size S)",
                        "price": 100.0,
                        "quantity": 2,
                    }
                ],
                "content_type": "product",
                "content_ids": ["abc123"],
                "num_items": 2,
                "value": 100.0,  # the hit's own value wins over price x quantity (200)
                "currency": "USD",
                "query": "shoes",
            },
            id=f"{SEGMENT_TESTS} contents array properties",
        ),
        pytest.param(
            "Checkout Started",
            {
                "currency": "USD",
                "value": 100,
                "query": "shoes",
                "price": 100,
                "quantity": 2,
                "category": "Air Force One (Size S)",
                "product_id": "abc123",
            },
            {
                "contents": [
                    {
                        "content_id": "abc123",
                        "content_category": "Air Force One (Size S)",
                        "price": 100.0,
                        "quantity": 2,
                    }
                ],
                "content_type": "product",
                "content_ids": ["abc123"],
                "num_items": 2,
                "value": 100.0,
                "currency": "USD",
                "query": "shoes",
            },
            id=f"{SEGMENT_TESTS} coerce properties into the contents array",
        ),
        pytest.param(
            # RudderStack maps shop_id and order_id with `toString`.
            "Order Placed",
            {"shop_id": 12345, "order_id": 987, "description": "in store"},
            {"shop_id": "12345", "order_id": "987", "description": "in store"},
            id=f"{RUDDER_TRACK_V2} shop_id and order_id as strings, description",
        ),
        pytest.param(
            # Segment spreads its travel and vehicle fields into `properties`; the gateway's
            # passthrough does the same for any vertical.
            "Product Viewed",
            {"tiktok": {"city": "Lisbon", "num_adults": 2, "make": "Volvo"}},
            {"city": "Lisbon", "num_adults": 2, "make": "Volvo"},
            id=f"{SEGMENT_UTILS} travel and vehicle fields merged into properties",
        ),
    ],
)
def test_properties_vectors(event: str, properties: dict[str, Any], expected: Any) -> None:
    assert properties_of(event, properties)[0] == expected


@pytest.mark.parametrize(
    ("hit_event", "tiktok_event"),
    [
        # RudderStack's eventNameMapping, lower-cased keys (the gateway ignores case and spaces).
        pytest.param("product added to wishlist", "AddToWishlist", id=f"{RUDDER_CONFIG} wishlist"),
        pytest.param("product added", "AddToCart", id=f"{RUDDER_CONFIG} product added"),
        pytest.param("checkout started", "InitiateCheckout", id=f"{RUDDER_CONFIG} checkout"),
        pytest.param("payment info entered", "AddPaymentInfo", id=f"{RUDDER_CONFIG} payment info"),
        # RudderStack sends "order completed" as PlaceAnOrder; the gateway keeps the seed's
        # CompletePayment (the purchase TikTok attributes) and maps "Order Placed" instead.
        pytest.param("order completed", "CompletePayment", id=f"{RUDDER_CONFIG} order completed"),
        pytest.param("Checkout Started", "InitiateCheckout", id=f"{SEGMENT_TESTS} checkout"),
    ],
)
def test_mapping_vectors(hit_event: str, tiktok_event: str) -> None:
    assert map_event_name(hit_event, CONFIG) == tiktok_event


@pytest.mark.parametrize(
    ("properties", "lead"),
    [
        pytest.param(
            {"lead_id": "2229012621312", "currency": "USD", "value": 100},
            {"lead_id": "2229012621312"},
            id=f"{SEGMENT_TESTS} lead_event",
        ),
        pytest.param(
            {"lead_id": "2229012621312", "lead_event_source": "HubSpot"},
            {"lead_id": "2229012621312", "lead_event_source": "HubSpot"},
            id=f"{SEGMENT_CRM_FIELDS} lead_id and lead_event_source from properties",
        ),
    ],
)
def test_crm_lead_vectors(properties: dict[str, Any], lead: dict[str, str]) -> None:
    _, event = properties_of("lead_event", properties, CRM)
    assert event["lead"] == lead
    # Segment sends `lead` for CRM sources only; so does the gateway.
    _, web_event = properties_of("lead_event", properties, WEB)
    assert "lead" not in web_event


def test_crm_event_without_lead_id_is_not_sent() -> None:
    # Segment's crm_fields.ts makes lead_id required for CRM; the gateway dead-letters instead.
    hit = decode_hit(b'{"event": "lead_event", "properties": {"value": 1}}', "track")
    result = transform(hit, CONTEXT, INTEGRATION, CRM)
    assert isinstance(result, Rejected)
    assert result.reason == "missing_lead_id"


@pytest.mark.parametrize(
    ("own", "default", "expected"),
    [
        # Segment: a boolean limited_data_use is sent as is, anything else is false.
        pytest.param(True, False, True, id=f"{SEGMENT_UTILS} boolean kept"),
        pytest.param(None, False, False, id=f"{SEGMENT_UTILS} absent is the default"),
        pytest.param(False, True, False, id="the hit's false beats the integration's true"),
        pytest.param(None, True, True, id="absent keeps the integration's true"),
    ],
)
def test_limited_data_use_vectors(own: bool | None, default: bool, expected: bool) -> None:
    body: dict[str, Any] = {"event": "Signed Up"}
    if own is not None:
        body["context"] = {"limited_data_use": own}
    hit = decode_hit(json.dumps(body).encode(), "track")
    config = TikTokConfig(pixel_code="PIXEL123", access_token=Secret("t"), limited_data_use=default)
    integration = Integration(id="i", source_id="src_v", name="T", config=config)
    result = transform(hit, CONTEXT, integration, WEB)
    assert isinstance(result, Transformed)
    assert result.event["limited_data_use"] is expected
