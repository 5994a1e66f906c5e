"""TikTok's recommended properties, unusable values, the passthrough and what each
`event_source` adds or requires, as parameter tables over the pure transformation."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.models import EventSource, Source
from gateway.destinations.base import Rejected, Transformed
from tests.test_transform import run, sent, track


@pytest.mark.parametrize(
    ("properties", "value"),
    [
        pytest.param({"total": -5, "currency": "USD"}, None, id="negative-total"),
        pytest.param({"total": -1, "revenue": 7, "currency": "USD"}, 7.0, id="negative-gives-way"),
        pytest.param({"revenue": -1, "value": 3, "currency": "USD"}, 3.0, id="negative-revenue"),
        pytest.param(
            {"products": [{"price": 1e308, "quantity": 10}], "currency": "USD"},
            None,
            id="overflowing-sum",
        ),
        pytest.param(
            {"products": [{"price": -3, "quantity": 1}], "currency": "USD"},
            None,
            id="negative-sum",
        ),
        pytest.param({"total": 0, "currency": "USD"}, 0.0, id="zero-is-a-value"),
    ],
)
def test_unusable_values_are_missing(properties: dict[str, Any], value: float | None) -> None:
    viewed = sent(track("Product Viewed", properties))
    assert viewed.get("properties", {}).get("value") == value
    purchase = run(track("Order Completed", properties))
    if value is None:
        assert isinstance(purchase, Rejected)
        assert purchase.reason == "missing_value_or_currency"
    else:
        assert isinstance(purchase, Transformed)


@pytest.mark.parametrize(
    ("event", "properties", "expected"),
    [
        pytest.param(
            "Product Viewed",
            {"product_id": "G1", "content_type": "product_group"},
            {"contents": [{"content_id": "G1"}], "content_type": "product_group"},
            id="product-group",
        ),
        pytest.param(
            "Product Viewed",
            {"product_id": "P1", "content_type": "something"},
            {"contents": [{"content_id": "P1"}], "content_type": "product"},
            id="other-content-type-is-product",
        ),
        pytest.param(
            "Products Searched",
            {"query": "q", "search_string": "typed"},
            {"query": "q", "search_string": "typed"},
            id="own-search-string-wins",
        ),
        pytest.param(
            "Signed Up", {"query": "q"}, {"query": "q"}, id="query-is-search-string-for-search-only"
        ),
        pytest.param(
            "Product Added",
            {"products": [{"product_id": "A", "quantity": 2}], "num_items": -1},
            {
                "contents": [{"content_id": "A", "quantity": 2}],
                "content_type": "product",
                "num_items": 2,
            },
            id="negative-num-items-falls-back-to-the-sum",
        ),
        pytest.param(
            "Product Added",
            {"products": [{"product_id": "A"}, {"product_id": "B", "quantity": 4}]},
            {
                "contents": [{"content_id": "A"}, {"content_id": "B", "quantity": 4}],
                "content_type": "product",
                "num_items": 4,
            },
            id="num-items-sums-given-quantities",
        ),
        pytest.param(
            "Order Placed",
            {"description": "", "shop_id": "S1"},
            {"shop_id": "S1"},
            id="empty-description-omitted",
        ),
        pytest.param(
            "Product Viewed",
            {"product_id": "P1", "tiktok": {"content_type": "product_group", "x": None, "y": [1]}},
            {"contents": [{"content_id": "P1"}], "content_type": "product_group", "y": [1]},
            id="passthrough-last-and-nulls-absent",
        ),
    ],
)
def test_recommended_properties(
    event: str, properties: dict[str, Any], expected: dict[str, Any]
) -> None:
    got = dict(sent(track(event, properties))["properties"])
    got.pop("content_ids", None)  # covered by the contents tables
    assert got == expected


def test_passthrough_cannot_smuggle_an_unusable_purchase_value() -> None:
    properties = {"total": 5, "currency": "USD", "tiktok": {"value": -5}}
    result = run(track("Order Completed", properties))
    assert isinstance(result, Rejected)
    assert result.reason == "missing_value_or_currency"


APP = Source(
    id="src_app",
    name="App",
    event_source=EventSource.APP,
    event_source_id="APP1",
    app_id="com.example.shop",
)
OFFLINE = Source(id="src_pos", name="POS", event_source=EventSource.OFFLINE, event_source_id="O1")


def test_app_events_carry_the_app_id() -> None:
    event = sent(track("Product Added", {"product_id": "P"}), source=APP)
    assert event["app"] == {"app_id": "com.example.shop"}
    assert "app" not in sent(track("Product Added", {"product_id": "P"}))


@pytest.mark.parametrize(
    ("traits", "sent_at_all"),
    [
        pytest.param({"email": "a@example.com"}, True, id="email"),
        pytest.param({"phone": "+12133734253"}, True, id="phone"),
        pytest.param({"phone": "not a number"}, False, id="unusable-phone"),
        pytest.param(None, False, id="neither"),
    ],
)
def test_offline_events_need_an_email_or_a_phone(
    traits: dict[str, str] | None, sent_at_all: bool
) -> None:
    fields: dict[str, Any] = {"context": {"traits": traits}} if traits else {}
    result = run(
        track("Order Completed", {"total": 1, "currency": "USD"}, **fields), source=OFFLINE
    )
    assert isinstance(result, Transformed) is sent_at_all
    if not sent_at_all:
        assert isinstance(result, Rejected)
        assert result.reason == "missing_email_or_phone"
