"""The native collection protocol: its endpoints, request bodies decoded and validated into
hits (msgspec, one pass), and the server key's check.

Decoding is strict: a wrong type anywhere in a known field is a 400 naming the field's path.
Unknown fields are ignored (clients send more than the gateway needs); the known ones are what
the destinations read.
"""

from __future__ import annotations

import hmac
from typing import Any, TypeVar

import msgspec
from aiohttp import hdrs, web
from aiohttp.http_exceptions import ContentEncodingError

from gateway.collect.cookies import safe_cookie_value
from gateway.collect.route import Route
from gateway.core.crypto import sha256_hex
from gateway.core.errors import HitError, PayloadTooLarge
from gateway.core.hit import (
    Hit,
    HitType,
    Properties,
)

T = TypeVar("T")


class Batch(msgspec.Struct):
    batch: list[Hit]


_hit_decoder = msgspec.json.Decoder(Hit)
_batch_decoder = msgspec.json.Decoder(Batch)

# Short caps keep a hostile client from making the gateway store or hash megabytes per field.
MAX_FIELD_LENGTH = 2048
MAX_ID_LENGTH = 200
# `properties.tiktok` is copied into what is stored and sent: bounded so one hit cannot make a
# giant TikTok payload (TikTok's own vertical fields fit in a fraction of this).
MAX_PASSTHROUGH_BYTES = 8192


def decode_hit(body: bytes, path_type: HitType | None) -> Hit:
    """Decode one hit; the endpoint's type applies when the body names none."""
    hit = decode_strictly(_hit_decoder, body)
    if hit.type is None:
        if path_type is None:
            raise HitError("invalid_field", "type is required")
        hit.type = path_type
    validate_hit(hit, where="$")
    return hit


def decode_batch(body: bytes, max_hits: int) -> list[Hit]:
    batch = decode_strictly(_batch_decoder, body).batch
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


def decode_strictly(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """`body` decoded, or the HitError (400) that says what is wrong with it; both protocols'."""
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


# The native protocol's endpoints: a hit per request on the typed paths, a batch on /v1/batch.
ENDPOINTS: tuple[tuple[str, HitType | None], ...] = (
    ("/v1/t", "track"),
    ("/v1/p", "page"),
    ("/v1/i", "identify"),
    ("/v1/batch", None),
)


ACCEPTED_CONTENT_TYPES = frozenset({"application/json", "text/plain", ""})
# What aiohttp decompresses (br and zstd through the Brotli and backports.zstd dependencies).
ACCEPTED_CONTENT_ENCODINGS = frozenset({"", "identity", "gzip", "deflate", "br", "zstd"})


class UnreadableBody(HitError):
    """A body that cannot be decoded as its Content-Encoding says; its connection is closed."""


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(limit)
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if encoding not in ACCEPTED_CONTENT_ENCODINGS:
        # aiohttp passes an encoding it does not know through as it came: refuse it here
        # rather than read the compressed bytes as JSON.
        raise HitError(
            "unsupported_encoding",
            "Content-Encoding must be gzip, deflate, br, zstd or none",
        )
    try:
        # aiohttp decompresses while reading and counts client_max_size on the decompressed
        # bytes, so a small gzip bomb stops at the size limit (413), not at the memory's.
        return await request.read()
    except web.RequestPayloadError as exc:
        if isinstance(exc.__cause__, ContentEncodingError):
            # The rest of the body cannot be read either: mark it read, or aiohttp would try
            # to drain it after the answer and log the same failure as an unhandled exception.
            request.content.feed_eof()
            raise UnreadableBody("bad_encoding", f"body is not valid {encoding} data") from None
        raise


def check_body(body: bytes, request: web.Request) -> None:
    """What both protocols ask of a body before decoding it: a JSON (or beacon) type, and bytes."""
    content_type = request.content_type if request.headers.get("Content-Type") else ""
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise HitError("unsupported_media_type", "send application/json or text/plain")
    if not body:
        raise HitError("malformed_json", "body is empty")


def decode_body(
    body: bytes, request: web.Request, path_type: HitType | None, max_hits: int
) -> list[Hit]:
    check_body(body, request)
    if path_type is None:
        return decode_batch(body, max_hits)
    return [decode_hit(body, path_type)]


def authenticate_server(authorization: str | None, route: Route) -> bool:
    """True for a server source's hit; a wrong key is refused rather than silently downgraded."""
    if authorization is None:
        return False
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HitError("unauthorized", "Authorization must be 'Bearer <server key>'")
    expected = route.source.server_key_hash
    if not expected or not hmac.compare_digest(sha256_hex(key.strip()), expected):
        raise HitError("unauthorized", "the server key is not this source's")
    return True
