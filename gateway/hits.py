"""The collection hit's wire schema, decoded and validated in one pass by msgspec.

Decoding is strict: a wrong type anywhere in a known field is a 400 naming the field's path.
Unknown fields are ignored (clients send more than the gateway needs); the known ones are what
`transform.py` reads.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, TypeVar

import msgspec

from gateway.cookies import safe_cookie_value
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


class Traits(msgspec.Struct, omit_defaults=True):
    email: str | None = None
    phone: str | None = None


class Page(msgspec.Struct, omit_defaults=True):
    url: str | None = None
    referrer: str | None = None
    title: str | None = None


class Context(msgspec.Struct, omit_defaults=True):
    page: Page | None = None
    consent: dict[str, bool] | None = None
    locale: str | None = None
    traits: Traits | None = None
    # Honoured only for server sources (Bearer server key); ignored from browsers.
    ip: str | None = None
    user_agent: str | None = None


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
    if hit.anonymous_id is not None and safe_cookie_value(hit.anonymous_id) is None:
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
