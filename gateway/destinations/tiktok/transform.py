"""Transformation (pure): one collection hit -> one TikTok Events API v1.3 event (`data[]` item).

No I/O, no aiohttp: values in, values out, so it is tested with parameter tables. The event
mapping and the field rules are the seed's tables as restated for v1.3 in TIKTOK.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

from gateway.core.hashing import (
    hash_external_id,
)
from gateway.core.hit import Hit, Product, Properties
from gateway.core.identity import ADDRESS_KEYS, Identity, hit_identity
from gateway.core.models import EventSource, Integration, Source
from gateway.destinations.base import HitContext, Rejected, Transformed
from gateway.destinations.tiktok.config import TikTokConfig
from gateway.destinations.tiktok.rules import (
    CURRENT_EVENT_NAMES,
    EVENT_MAPPING,
    MISSING_EMAIL_OR_PHONE,
    MISSING_LEAD_ID,
    MISSING_VALUE_OR_CURRENCY,
    PAGE_VIEW,
    PURCHASE_EVENTS,
    SEARCH,
)


def transform(
    hit: Hit, context: HitContext, integration: Integration, source: Source
) -> Transformed | Rejected:
    """Build the TikTok event for a `page` or `track` hit (an `identify` hit sends nothing)."""
    config = integration.config
    assert isinstance(config, TikTokConfig)  # the registry gives tiktok integrations no other
    event_name = event_name_of(hit, config)
    event = build_event(event_name, hit, context, config, source)
    reason = refusal_reason(event_name, event, source)
    if reason is not None:
        return Rejected(event_name, reason, event)
    return Transformed(event_name, event)


def refusal_reason(event_name: str, event: dict[str, Any], source: Source) -> str | None:
    """Why TikTok could not use this event (so it is dead-lettered, not sent), or None."""
    properties = event.get("properties", {})
    if event_name in PURCHASE_EVENTS and not (
        attributable_value(properties.get("value")) is not None and "currency" in properties
    ):
        return MISSING_VALUE_OR_CURRENCY
    if source.event_source is EventSource.CRM and "lead" not in event:
        return MISSING_LEAD_ID
    user = event.get("user", {})
    if source.event_source is EventSource.OFFLINE and not ("email" in user or "phone" in user):
        return MISSING_EMAIL_OR_PHONE
    return None


def event_name_of(hit: Hit, config: TikTokConfig) -> str:
    if hit.type == "page":
        return PAGE_VIEW
    if hit.type == "track" and hit.event:
        return map_event_name(hit.event, config)
    raise ValueError(f"a {hit.type} hit has no TikTok event")


def map_event_name(hit_event: str, config: TikTokConfig) -> str:
    """The integration's mapping, then the seed's table, else the hit's own name unchanged."""
    name = (
        lookup_event_name(hit_event, config.event_mapping)
        or lookup_event_name(hit_event, EVENT_MAPPING)
        or hit_event
    )
    if config.use_current_event_names:
        return CURRENT_EVENT_NAMES.get(name, name)
    return name


def lookup_event_name(hit_event: str, mapping: Mapping[str, str]) -> str | None:
    """Exact match first, then one that ignores case and whitespace."""
    if hit_event in mapping:
        return mapping[hit_event]
    wanted = normalise_event_name(hit_event)
    for name, tiktok_name in mapping.items():
        if normalise_event_name(name) == wanted:
            return tiktok_name
    return None


def normalise_event_name(name: str) -> str:
    return "".join(name.split()).casefold()


def build_event(
    event_name: str, hit: Hit, context: HitContext, config: TikTokConfig, source: Source
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": event_name,
        "event_time": context.event_time,
        "event_id": context.event_id,
    }
    sections = {
        "user": build_user(hit, context, source),
        "page": build_page(hit),
        "properties": build_properties(hit.properties, event_name),
        "lead": build_lead(hit.properties, source),
        "app": build_app(source),
    }
    event.update((key, section) for key, section in sections.items() if section)
    event["limited_data_use"] = limited_data_use(hit, config)
    return event


def limited_data_use(hit: Hit, config: TikTokConfig) -> bool:
    """The hit's own `context.limited_data_use` when it sets one, else the integration's."""
    own = hit.context.limited_data_use if hit.context else None
    return config.limited_data_use if own is None else own


# --- lead (CRM sources) and app (app sources) ----------------------------------------------------


def build_lead(properties: Properties | None, source: Source) -> dict[str, str]:
    """CRM events name the TikTok lead they move along (`properties.lead_id`, Segment's name)."""
    if source.event_source is not EventSource.CRM or properties is None:
        return {}
    lead = without_empty(
        {
            "lead_id": as_text(properties.lead_id),
            "lead_event_source": properties.lead_event_source,
        }
    )
    return lead if "lead_id" in lead else {}


def build_app(source: Source) -> dict[str, str]:
    """App events name the app by its store id (the request names its TikTok App ID)."""
    if source.event_source is not EventSource.APP or source.app_id is None:
        return {}
    return {"app_id": source.app_id}


# --- user ---------------------------------------------------------------------------------------


def build_user(hit: Hit, context: HitContext, source: Source) -> dict[str, Any]:
    """TikTok's `user`: the hit's own traits first, the identity cookie filling each gap."""
    known = hit_identity(hit, source.default_phone_region).filled_from(context.identity)
    user: dict[str, Any] = {
        "ttp": context.ttp,
        "ttclid": context.ttclid,
        "external_id": external_ids(hit, context, known) or None,
        "email": one_or_many(known.email_hashes),
        "phone": one_or_many(known.phone_hashes),
        **{name: getattr(known, name) for name in ADDRESS_KEYS},
        "ip": context.ip,
        "user_agent": context.user_agent,
        "locale": context.locale,
    }
    return without_empty(user)


def external_ids(hit: Hit, context: HitContext, known: Identity) -> list[str]:
    """SHA-256 of the user id when one is known, then of the anonymous id: always an array,
    so TikTok can tie the identified person to the browser's earlier anonymous events."""
    user_id = hash_external_id(hit.user_id) or known.user_id_hash
    anonymous_id = _anonymous_id_hash(context.anonymous_id)
    return list(dict.fromkeys(h for h in (user_id, anonymous_id) if h is not None))


@functools.lru_cache(maxsize=4096)
def _anonymous_id_hash(anonymous_id: str | None) -> str | None:
    """`hash_external_id` of the browser's anonymous id, remembered: a visitor's events all carry
    the same one (a random id the gateway set, not a person's data), and delivery hashed it
    again for every event."""
    return hash_external_id(anonymous_id)


def one_or_many(hashes: tuple[str, ...]) -> str | list[str] | None:
    """One hash as a string (as TikTok's examples send it), several as an array."""
    if not hashes:
        return None
    return hashes[0] if len(hashes) == 1 else list(hashes)


# --- page ---------------------------------------------------------------------------------------


def build_page(hit: Hit) -> dict[str, str]:
    page = hit.context.page if hit.context else None
    if page is None:
        return {}
    return without_empty({"url": page.url, "referrer": page.referrer})


# --- properties ---------------------------------------------------------------------------------


def build_properties(properties: Properties | None, event_name: str = "") -> dict[str, Any]:
    if properties is None:
        return {}
    contents = build_contents(properties)
    built = without_empty(
        {
            "contents": contents or None,
            "content_type": content_type(properties, contents),
            "content_ids": [c["content_id"] for c in contents if "content_id" in c] or None,
            "num_items": num_items(properties, contents),
            "value": event_value(properties, contents),
            "currency": currency_code(properties.currency),
            "order_id": as_text(properties.order_id),
            "shop_id": as_text(properties.shop_id),
            "description": properties.description,
            "query": properties.query,
            "search_string": search_string(properties, event_name),
        }
    )
    # Last and unchanged: vertical fields (travel, vehicle, ...) need no code here. The hit's
    # decoder has already bounded its size; a null is an absent field, as everywhere above.
    if properties.tiktok:
        built.update((k, v) for k, v in properties.tiktok.items() if v is not None)
    return built


def content_type(properties: Properties, contents: list[dict[str, Any]]) -> str | None:
    """`product_group` when the hit says its ids are product groups, else `product`."""
    if properties.content_type == "product_group":
        return "product_group"
    return "product" if contents else None


def num_items(properties: Properties, contents: list[dict[str, Any]]) -> int | None:
    """The hit's own count, else the sum of the contents' quantities."""
    if properties.num_items is not None and properties.num_items >= 0:
        return properties.num_items
    quantities = [content["quantity"] for content in contents if "quantity" in content]
    return sum(quantities) if quantities else None


def search_string(properties: Properties, event_name: str) -> str | None:
    """TikTok's Search parameter; a Search hit's `query` is the string searched for."""
    if properties.search_string:
        return properties.search_string
    return properties.query if event_name == SEARCH else None


def build_contents(properties: Properties) -> list[dict[str, Any]]:
    """`products[]`, else the single product the properties themselves describe."""
    products = properties.products or single_product(properties)
    contents = (build_content(product) for product in products)
    return [content for content in contents if content]


def single_product(properties: Properties) -> list[Product]:
    if properties.product_id is None and properties.sku is None:
        return []
    return [
        Product(
            product_id=properties.product_id,
            sku=properties.sku,
            name=properties.name,
            category=properties.category,
            brand=properties.brand,
            price=properties.price,
            quantity=properties.quantity,
        )
    ]


def build_content(product: Product) -> dict[str, Any]:
    return without_empty(
        {
            "content_id": as_text(product.product_id) or as_text(product.sku),
            "content_name": product.name,
            "content_category": product.category,
            "brand": product.brand,
            "price": finite(product.price),
            "quantity": int(product.quantity) if product.quantity is not None else None,
        }
    )


def event_value(properties: Properties, contents: list[dict[str, Any]]) -> float | None:
    """`total`, else `revenue`, else `value`, else the sum of price x quantity.

    A total that is infinite or negative is no total (TikTok would get null, or refund-like
    revenue): the next source is used, and a purchase left without one is not sent.
    """
    for value in (properties.total, properties.revenue, properties.value):
        if value is None:  # most hits name none of them
            continue
        usable = attributable_value(value)
        if usable is not None:
            return usable
    return contents_value(contents)


def contents_value(contents: list[dict[str, Any]]) -> float | None:
    priced = [content for content in contents if "price" in content]
    if not priced:
        return None
    total = sum(content["price"] * content.get("quantity", 1) for content in priced)
    # Drop binary floating-point noise (49.99 * 2 + 30.01 = 129.98999999999998) while keeping
    # more decimals than any ISO 4217 currency uses. 1e308 x 10 overflows to infinity: no value.
    return attributable_value(round(float(total), 6))


def attributable_value(value: Any) -> float | None:
    """A number TikTok can attribute: finite and not negative."""
    number = finite(value)
    return number if number is not None and number >= 0 else None


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) else None


def currency_code(raw: str | None) -> str | None:
    """Upper-cased ISO 4217 code; anything that is not three letters is left out."""
    if raw is None:
        return None
    code = raw.strip().upper()
    if len(code) == 3 and code.isascii() and code.isalpha():
        return code
    return None


# --- helpers ------------------------------------------------------------------------------------


def as_text(value: str | int | None) -> str | None:
    return str(value) if value is not None else None


def without_empty(fields: dict[str, Any]) -> dict[str, Any]:
    """Drop absent fields (None, and empty strings, which carry nothing for TikTok)."""
    return {key: value for key, value in fields.items() if value is not None and value != ""}
