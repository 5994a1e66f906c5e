"""The hit: what every collection protocol decodes a request into, destination-neutral.

The structs double as the native protocol's wire schema (msgspec decodes and type-checks them
in one pass); other protocols build the same structs from their own shapes.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

HitType = Literal["page", "track", "identify"]


class Product(msgspec.Struct, omit_defaults=True):
    product_id: str | int | None = None
    sku: str | int | None = None
    name: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    quantity: int | None = None


class Properties(Product, omit_defaults=True):
    """E-commerce properties (the seed's vocabulary); a single product may stand at the top,
    which is why the product's own fields are inherited."""

    products: list[Product] | None = None
    total: float | None = None
    revenue: float | None = None
    value: float | None = None
    currency: str | None = None
    order_id: str | int | None = None
    query: str | None = None
    # TikTok's recommended properties (sent when the hit has them).
    description: str | None = None
    search_string: str | None = None
    shop_id: str | int | None = None
    num_items: int | None = None
    content_type: str | None = None  # "product_group" says the contents are product groups
    # CRM sources: the TikTok lead the event is about (Segment's field names).
    lead_id: str | int | None = None
    lead_event_source: str | None = None
    # Passthrough: merged last, unchanged, into TikTok's `properties` (vertical fields).
    tiktok: dict[str, Any] | None = None


# What a hit may say about a person: enough for real people (a few addresses, a long name), small
# enough that a hostile client cannot make the gateway hash megabytes. Past a cap: 400.
MAX_TRAIT_LENGTH = 256
MAX_TRAIT_VALUES = 5
# TikTok's click ids run past 300 characters; leave them room to grow.
MAX_CLICK_ID_LENGTH = 1024
MAX_LOCALE_LENGTH = 64

TraitText = Annotated[str, msgspec.Meta(max_length=MAX_TRAIT_LENGTH)]
# One value or several (e.g. a person's work and home addresses).
TraitValues = TraitText | Annotated[list[TraitText], msgspec.Meta(max_length=MAX_TRAIT_VALUES)]


class Address(msgspec.Struct, omit_defaults=True):
    city: TraitText | None = None
    state: TraitText | None = None
    country: TraitText | None = None
    postal_code: TraitText | None = None
    postalCode: TraitText | None = None  # Segment's spec spells it so


class Traits(msgspec.Struct, omit_defaults=True):
    email: TraitValues | None = None
    phone: TraitValues | None = None
    first_name: TraitText | None = None
    last_name: TraitText | None = None
    # analytics.js and Segment's libraries send these spellings (Segment's identify spec).
    firstName: TraitText | None = None
    lastName: TraitText | None = None
    address: Address | None = None


class Page(msgspec.Struct, omit_defaults=True):
    url: str | None = None
    referrer: str | None = None
    title: str | None = None


class Context(msgspec.Struct, omit_defaults=True):
    page: Page | None = None
    consent: dict[str, bool] | None = None
    traits: Traits | None = None
    # Honoured only for server sources (Bearer server key); ignored from browsers, where the
    # request (address, User-Agent, Accept-Language), the cookies and the page URL decide.
    ip: str | None = None
    user_agent: str | None = None
    limited_data_use: bool | None = None  # overrides the integration's default for this event
    locale: Annotated[str, msgspec.Meta(max_length=MAX_LOCALE_LENGTH)] | None = None
    ttp: Annotated[str, msgspec.Meta(max_length=MAX_TRAIT_LENGTH)] | None = None
    ttclid: Annotated[str, msgspec.Meta(max_length=MAX_CLICK_ID_LENGTH)] | None = None


class Hit(msgspec.Struct, omit_defaults=True):
    type: HitType | None = None
    source_id: str | None = None
    event: str | None = None
    properties: Properties | None = None
    traits: Traits | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    message_id: str | None = None
    timestamp: dt.datetime | None = None
    context: Context | None = None
