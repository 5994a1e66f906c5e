"""Segment's HTTP Tracking API (which RudderStack's SDKs speak too), read into native hits.

Sites already running analytics.js, Segment's server libraries or RudderStack's SDKs change one
setting (the API host) and their calls land here. This module decodes and checks their wire
format (camelCase fields, `writeKey`, `context.consent.categoryPreferences`), resolves the write
key to a source and says which rules apply, and shapes the answers the way those clients read
them. What happens to the hits afterwards is the native path's business (`collect.py`).

Write keys: a source's `id` is a public key (browser rules: the request's address, user agent and
cookies decide); its server key is a secret key (server rules: `context.ip`,
`context.userAgent` and `timestamp` count, as for a native hit with a Bearer server key).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal, cast

import msgspec
from aiohttp import web

from gateway.collect.protocols.native import decode_strictly, validate_hit
from gateway.collect.route import Route
from gateway.config.base import ConfigStore
from gateway.core.crypto import sha256_hex
from gateway.core.errors import HitError, PayloadTooLarge
from gateway.core.hit import (
    MAX_LOCALE_LENGTH,
    Context,
    Hit,
    HitType,
    Page,
    Properties,
    Traits,
)
from gateway.core.models import Integration, Source

SegmentType = Literal["track", "page", "identify", "screen", "alias", "group"]
# What `WriteKeys` needs of the router: `Router.route`.
RouteLookup = Callable[[str], Awaitable[Route | None]]

# Calls TikTok has no event for: accepted and shown in the debugger, sent only when an
# integration's event mapping names the call ("screen", "alias", "group") explicitly.
RECORD_ONLY: frozenset[str] = frozenset({"screen", "alias", "group"})

# Segment's own limits (its clients split their batches to fit them).
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024

# The paths the clients post to when their host is the gateway's collection address:
# analytics.js/analytics-next write the call's initial (`apiHost` "…/v1" by default, or bare),
# Segment's HTTP API and RudderStack's SDKs the whole name; `/v1/batch` (server libraries and
# RudderStack) and `/v1/t`, `/v1/p`, `/v1/i` are shared with the native protocol.
SEGMENT_ONLY_PATHS: tuple[tuple[str, SegmentType | None], ...] = (
    *((f"/v1/{kind}", kind) for kind in ("track", "page", "identify", "screen", "alias", "group")),
    ("/v1/a", "alias"),
    ("/v1/g", "group"),
    ("/v1/s", "screen"),
    ("/v1/b", None),
    ("/t", "track"),
    ("/p", "page"),
    ("/i", "identify"),
    ("/a", "alias"),
    ("/g", "group"),
    ("/s", "screen"),
    ("/b", None),
    # RudderStack's JavaScript SDK with `useBeacon`: the key travels in the query string.
    ("/beacon/v1/batch", None),
)

OK_BODY = b'{"success":true}'

IdText = Annotated[str, msgspec.Meta(max_length=200)] | int


class SegmentConsent(msgspec.Struct, omit_defaults=True):
    categoryPreferences: dict[str, bool] | None = None


class SegmentContext(msgspec.Struct, omit_defaults=True):
    page: Page | None = None
    ip: str | None = None
    userAgent: str | None = None
    locale: Annotated[str, msgspec.Meta(max_length=MAX_LOCALE_LENGTH)] | None = None
    traits: Traits | None = None
    consent: SegmentConsent | None = None


class SegmentProperties(Properties, omit_defaults=True):
    """The native properties, plus the page fields a server library's `page` call carries."""

    url: str | None = None
    referrer: str | None = None
    title: str | None = None


class SegmentMessage(msgspec.Struct, omit_defaults=True):
    type: SegmentType | None = None
    event: str | None = None
    name: str | None = None  # of a page or screen
    properties: SegmentProperties | None = None
    traits: Traits | None = None
    userId: IdText | None = None
    anonymousId: IdText | None = None
    messageId: str | None = None
    timestamp: dt.datetime | None = None
    context: SegmentContext | None = None


class _Envelope(msgspec.Struct):
    """A request's outer shape: the key, and its messages still undecoded (sizes checked first)."""

    writeKey: str | None = None
    batch: list[msgspec.Raw] | None = None


class _KeyProbe(msgspec.Struct):
    writeKey: str | None = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_probe_decoder = msgspec.json.Decoder(_KeyProbe)
_message_decoder = msgspec.json.Decoder(SegmentMessage)


@dataclass(frozen=True, slots=True)
class SegmentRequest:
    write_key: str | None
    messages: list[SegmentMessage]
    # A key from the URL may only be public: proxies and browsers' histories keep URLs.
    key_in_url: bool = False


def speaks_segment(authorization: str | None, body: bytes) -> bool:
    """Whether a request on a path both protocols share comes from a Segment client.

    Segment's and RudderStack's clients send the write key as Basic credentials (the native
    protocol uses none, or Bearer); analytics.js puts it in the body too. The body is only
    probed when it mentions the key, so native hits pay one substring search.
    """
    if authorization is not None and authorization[:6].lower() == "basic ":
        return True
    if b'"writeKey"' not in body:
        return False
    try:
        return _probe_decoder.decode(body).writeKey is not None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False  # the native decoder names what is wrong with it


def decode_request(
    body: bytes,
    authorization: str | None,
    kind: SegmentType | None,
    max_hits: int,
    query_key: str | None = None,
) -> SegmentRequest:
    """The write key and the messages of a single call (`kind` given) or of a batch.

    The key is the Basic credentials' user name, else the body's `writeKey`, else the query's
    (a beacon cannot set headers).
    """
    if len(body) > MAX_BATCH_BYTES:
        raise PayloadTooLarge(MAX_BATCH_BYTES)
    envelope = decode_strictly(_envelope_decoder, body)
    key = basic_auth_user(authorization) or envelope.writeKey
    key_in_url = key is None and query_key is not None
    key = key or query_key
    if kind is not None or envelope.batch is None:
        return SegmentRequest(key, [_decode_message(body, "$", kind)], key_in_url)
    if not envelope.batch:
        raise HitError("invalid_field", "batch must hold at least one message")
    if len(envelope.batch) > max_hits:
        raise HitError(
            "too_many_hits", f"batch holds {len(envelope.batch)} messages; at most {max_hits}"
        )
    messages = [
        _decode_message(bytes(raw), f"$.batch[{index}]", None)
        for index, raw in enumerate(envelope.batch)
    ]
    return SegmentRequest(key, messages, key_in_url)


def _decode_message(raw: bytes, where: str, kind: SegmentType | None) -> SegmentMessage:
    if len(raw) > MAX_EVENT_BYTES:
        raise HitError(
            "event_too_large", f"a message is larger than {MAX_EVENT_BYTES} bytes - at `{where}`"
        )
    message = decode_strictly(_message_decoder, raw)
    if message.type is None:
        if kind is None:
            raise HitError("invalid_field", f"type is required - at `{where}.type`")
        message.type = kind
    if message.type == "track" and not (message.event and message.event.strip()):
        raise HitError("invalid_field", f"a track call needs an event - at `{where}.event`")
    if message.userId is None and message.anonymousId is None:
        # Segment's own rule: a call says whose it is.
        raise HitError("invalid_field", f"userId or anonymousId is required - at `{where}.userId`")
    return message


def basic_auth_user(authorization: str | None) -> str | None:
    """The user name of `Basic base64(user:password)` credentials, else None."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized("Authorization holds no readable Basic credentials") from None
    return decoded.partition(":")[0] or None


def unauthorized(message: str) -> HitError:
    return HitError("unauthorized", message)


class WriteKeys:
    """Resolves write keys: a source id (public), or a source's server key (secret).

    Server keys are stored only as SHA-256 hashes, so the index maps hashes to source ids. It is
    rebuilt when a key is missing and the configuration has changed since it was built; an
    unknown key otherwise costs one config-version read, as an unknown source id costs a
    lookup on the native path.
    """

    def __init__(self, store: ConfigStore) -> None:
        self._store = store
        self._by_hash: dict[str, str] = {}
        self._version: int | None = None

    async def resolve(
        self, key: str | None, router_route: RouteLookup, secret_allowed: bool = True
    ) -> tuple[Route, bool]:
        """The key's route, and whether server rules apply; 401 for a missing or wrong key."""
        if key is None or not key.strip():
            raise unauthorized("a write key is required (Basic auth user name or writeKey)")
        key = key.strip()
        source_id = await self._source_of_server_key(key)
        if source_id is not None:
            route = await router_route(source_id)
            if route is not None and _server_key_matches(key, route.source):
                if not secret_allowed:
                    raise unauthorized("a server key must not travel in a URL; send it as Basic")
                return route, True
        route = await router_route(key) if len(key) <= 200 else None
        if route is None:
            raise unauthorized("the write key is neither a source id nor a server key")
        return route, False

    async def _source_of_server_key(self, key: str) -> str | None:
        digest = sha256_hex(key)
        known = self._by_hash.get(digest)
        if known is not None:
            return known
        version = await self._store.config_version()
        if version != self._version:
            sources = await self._store.list_sources()
            self._by_hash = {s.server_key_hash: s.id for s in sources if s.server_key_hash}
            self._version = version
        return self._by_hash.get(digest)


def _server_key_matches(key: str, source: Source) -> bool:
    return bool(source.server_key_hash) and hmac.compare_digest(
        sha256_hex(key), source.server_key_hash
    )


def to_hits(
    request: SegmentRequest, route: Route, from_server: bool, has_dfid_cookie: bool
) -> list[Hit]:
    """Native hits of the request's messages, checked as native hits are."""
    hits = []
    for index, message in enumerate(request.messages):
        hit = to_hit(message, route, from_server, has_dfid_cookie)
        where = "$" if len(request.messages) == 1 else f"$.batch[{index}]"
        validate_hit(hit, where=where)
        hits.append(hit)
    return hits


def to_hit(message: SegmentMessage, route: Route, from_server: bool, has_dfid_cookie: bool) -> Hit:
    context = message.context or SegmentContext()
    kind = message.type or "track"
    anonymous_id = _id_text(message.anonymousId)
    if has_dfid_cookie and not from_server:
        # In a browser the gateway's own first-party id wins; the client's id only starts it.
        anonymous_id = None
    return Hit(
        # alias, group and screen travel as their own type: the ledger shows them as such and
        # `tiktok_call` decides whether any integration sends them.
        type=cast(HitType, kind),
        source_id=route.source.id,
        event=message.event if kind == "track" else message.name if kind == "screen" else None,
        properties=message.properties,
        traits=message.traits,
        user_id=_id_text(message.userId),
        anonymous_id=anonymous_id,
        message_id=message.messageId,
        timestamp=message.timestamp,
        context=Context(
            page=context.page or _page_of(message),
            consent=consent_of(context.consent, route.integrations),
            traits=context.traits,
            ip=context.ip,
            user_agent=context.userAgent,
            locale=context.locale,
        ),
    )


def _id_text(value: str | int | None) -> str | None:
    return str(value) if value is not None else None


def _page_of(message: SegmentMessage) -> Page | None:
    """A server library's page call names its page in `properties` (no `context.page`)."""
    properties = message.properties
    if message.type != "page" or properties is None or properties.url is None:
        return None
    return Page(url=properties.url, referrer=properties.referrer, title=properties.title)


def consent_of(
    consent: SegmentConsent | None, integrations: tuple[Integration, ...]
) -> dict[str, bool] | None:
    """Segment's category preferences as the native consent object, names matched ignoring case.

    Without preferences the source's consent default decides, as for a native hit without one.
    """
    preferences = consent.categoryPreferences if consent is not None else None
    if preferences is None:
        return None
    by_name = {name.casefold(): granted for name, granted in preferences.items()}
    native = dict(by_name)
    for integration in integrations:
        for category in integration.consent_categories:
            if category.casefold() in by_name:
                native[category] = by_name[category.casefold()]
    return native


def error_response(exc: HitError, status: int) -> web.Response:
    """Segment's error shape (`code`, `message`, which its clients read) beside the gateway's."""
    body = {
        "success": False,
        "code": exc.code,
        "message": exc.message,
        "error": {"code": exc.code, "message": exc.message},
    }
    return web.Response(
        status=status, body=msgspec.json.encode(body), content_type="application/json"
    )


WRITE_KEYS = web.AppKey("segment_write_keys", WriteKeys)
