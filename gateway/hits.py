"""The collection hit's wire schema, decoded and validated in one pass by msgspec.

Decoding is strict: a wrong type anywhere in a known field is a 400 naming the field's path.
Unknown fields are ignored (clients send more than the gateway needs); the known ones are what
`transform.py` reads.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from gateway.errors import HitError

HitType = Literal["page", "track", "identify"]
T = TypeVar("T")


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


class Batch(msgspec.Struct):
    batch: list[Hit]


_hit_decoder = msgspec.json.Decoder(Hit)
_batch_decoder = msgspec.json.Decoder(Batch)

# Short caps keep a hostile client from making the gateway store or hash megabytes per field.
MAX_FIELD_LENGTH = 2048
MAX_ID_LENGTH = 200
# An id that may become a cookie value as it is (`_dfid`, `_ttp`): what a cookie holds unquoted,
# with nothing that could end the value or add an attribute (`;`, space, CR/LF).
SAFE_ID = re.compile(r"^[A-Za-z0-9._~|:+/=-]{1,200}$")
# `properties.tiktok` is copied into what is stored and sent: bounded so one hit cannot make a
# giant TikTok payload (TikTok's own vertical fields fit in a fraction of this).
MAX_PASSTHROUGH_BYTES = 8192


def decode_hit(body: bytes, path_type: HitType | None) -> Hit:
    """Decode one hit; the endpoint's type applies when the body names none."""
    hit = _decode(_hit_decoder, body)
    if hit.type is None:
        if path_type is None:
            raise HitError("invalid_field", "type is required", status=400)
        hit.type = path_type
    validate_hit(hit, where="$")
    return hit


def decode_batch(body: bytes, max_hits: int) -> list[Hit]:
    batch = _decode(_batch_decoder, body).batch
    if not batch:
        raise HitError("invalid_field", "batch must hold at least one hit")
    if len(batch) > max_hits:
        raise HitError("too_many_hits", f"batch holds {len(batch)} hits; at most {max_hits}")
    for index, hit in enumerate(batch):
        where = f"$.batch[{index}]"
        if hit.type is None:
            raise HitError("invalid_field", f"type is required - at `{where}.type`")
        validate_hit(hit, where=where)
    return batch


def validate_hit(hit: Hit, where: str) -> None:
    """Checks a schema cannot express: required-by-type fields and length caps."""
    if hit.type == "track" and not (hit.event and hit.event.strip()):
        raise HitError("invalid_field", f"a track hit needs an event - at `{where}.event`")
    for name in ("source_id", "user_id", "anonymous_id", "message_id"):
        value = getattr(hit, name)
        if value is not None and (len(value) > MAX_ID_LENGTH or not value.strip()):
            raise HitError(
                "invalid_field",
                f"{name} must be 1 to {MAX_ID_LENGTH} characters - at `{where}.{name}`",
            )
    if hit.anonymous_id is not None and not SAFE_ID.match(hit.anonymous_id):
        # It becomes the `_dfid` cookie: a `;`, space or line break would write attributes or
        # headers of its own, so only what a cookie value may hold unquoted is taken.
        raise HitError(
            "invalid_field",
            "anonymous_id may hold only letters, digits and . _ ~ | : + / = -"
            f" - at `{where}.anonymous_id`",
        )
    if hit.event is not None and len(hit.event) > MAX_ID_LENGTH:
        raise HitError("invalid_field", f"event is too long - at `{where}.event`")
    page = hit.context.page if hit.context else None
    if page is not None:
        for name in ("url", "referrer", "title"):
            value = getattr(page, name)
            if value is not None and len(value) > MAX_FIELD_LENGTH:
                raise HitError(
                    "invalid_field", f"{name} is too long - at `{where}.context.page.{name}`"
                )
    if hit.properties is not None:
        validate_properties(hit.properties, f"{where}.properties")


_PROPERTY_TEXTS = ("description", "search_string", "shop_id", "lead_id", "lead_event_source")


def validate_properties(properties: Properties, where: str) -> None:
    """Length caps on the free-text properties, and a bounded passthrough object."""
    for name in _PROPERTY_TEXTS:
        value = getattr(properties, name)
        if isinstance(value, str) and len(value) > MAX_FIELD_LENGTH:
            raise HitError("invalid_field", f"{name} is too long - at `{where}.{name}`")
    if properties.tiktok is not None:
        problem = passthrough_problem(properties.tiktok)
        if problem is not None:
            raise HitError("invalid_field", f"tiktok {problem} - at `{where}.tiktok`")
        size = len(msgspec.json.encode(properties.tiktok))
        if size > MAX_PASSTHROUGH_BYTES:
            raise HitError(
                "invalid_field",
                f"tiktok holds {size} bytes; at most {MAX_PASSTHROUGH_BYTES} - at `{where}.tiktok`",
            )


MAX_PASSTHROUGH_DEPTH = 8


def passthrough_problem(value: Any) -> str | None:
    """Why a decoded JSON value cannot be sent as is: nesting deeper than TikTok's own objects
    go (the decoder has already refused numbers beyond a float). Iterative, so a deep value
    cannot exhaust the stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_PASSTHROUGH_DEPTH:
                return f"nests deeper than {MAX_PASSTHROUGH_DEPTH} levels"
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return None


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise HitError("invalid_field", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise HitError("malformed_json", f"body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise HitError("invalid_encoding", "body is not valid UTF-8") from None
    except RecursionError:
        raise HitError("too_deep", "body is nested too deeply") from None
