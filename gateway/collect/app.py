"""Collection surface (the public port): HTTP in, cookies, identity, consent, then enqueue.

The hot path is short: read the body, decode and validate it, route it through the cached
configuration, transform it per integration, store it (group commit) and answer. TikTok is never
called from here; the delivery worker does that later.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import msgspec
from aiohttp import hdrs, web
from aiohttp.http_exceptions import ContentEncodingError

from gateway.collect import cookies
from gateway.collect.cookies import IdentityCodec
from gateway.collect.demo import handle_demo
from gateway.collect.protocols.native import decode_batch, decode_hit
from gateway.collect.redact import redact_url
from gateway.collect.route import Route, consent_allows
from gateway.collect.visitor import client_ip, is_https
from gateway.core import ids
from gateway.core.assets import asset
from gateway.core.crypto import sha256_hex
from gateway.core.errors import HitError, PayloadTooLarge, QueueFull
from gateway.core.headers import header_text
from gateway.core.hit import Hit, HitType
from gateway.core.identity import Identity
from gateway.core.models import NewEvent
from gateway.destinations.tiktok.transform import HitContext, Rejected, traits_identity, transform
from gateway.ledger.sqlite import (
    DEAD_LETTERED,
    DENIED,
    NO_INTEGRATION,
    NOT_SENT,
    QUEUED,
    Observation,
    explain_consent,
    hit_summary,
)
from gateway.wiring import Runtime

log = logging.getLogger(__name__)

RUNTIME = web.AppKey("runtime", Runtime)
IDENTITY_CODEC = web.AppKey("identity_codec", IdentityCodec)

ACCEPTED_CONTENT_TYPES = frozenset({"application/json", "text/plain", ""})
# What aiohttp decompresses (br and zstd through the Brotli and backports.zstd dependencies).
ACCEPTED_CONTENT_ENCODINGS = frozenset({"", "identity", "gzip", "deflate", "br", "zstd"})
# Browser hits may be a little ahead of or behind the server; server sources may backfill.
MAX_FUTURE_SKEW_S = 300
_OK_BODY = b'{"ok":true}'
_CORS_ALLOW_HEADERS = "Content-Type, Authorization"


class UnreadableBody(HitError):
    """A body that cannot be decoded as its Content-Encoding says; its connection is closed."""


@dataclass(slots=True)
class RequestFacts:
    """What the request itself says about the visitor, resolved once per request."""

    ip: str | None
    user_agent: str | None
    locale: str | None  # the browser's first Accept-Language tag
    secure: bool
    ttp: str | None
    anonymous_id: str | None
    ttclid_cookie: str | None
    identity: Identity
    identity_cookie: str | None  # the sealed value as received, re-sent when nothing changed
    from_server: bool
    received_at: float


@dataclass(slots=True)
class Plan:
    """The outcome of a request's hits: what to store, what to set aside, what cookies to set."""

    events: list[NewEvent] = field(default_factory=list)
    rejected: list[tuple[NewEvent, str]] = field(default_factory=list)
    identity: Identity = field(default_factory=Identity)
    identity_changed: bool = False
    any_allowed: bool = False
    ttclid_clicked: str | None = None
    ttp: str | None = None
    anonymous_id: str | None = None
    # The ledger's records of these hits, one per hit and integration (sent or not).
    observed: list[Observation] = field(default_factory=list)


def create_collect_app(runtime: Runtime) -> web.Application:
    app = web.Application(
        client_max_size=runtime.settings.max_body_bytes,
        middlewares=[_error_middleware],
    )
    app[RUNTIME] = runtime
    app[IDENTITY_CODEC] = IdentityCodec(runtime.cookie_box)
    endpoints: tuple[tuple[str, HitType], ...] = (
        ("/v1/t", "track"),
        ("/v1/p", "page"),
        ("/v1/i", "identify"),
    )
    for path, hit_type in endpoints:
        app.router.add_post(path, functools.partial(handle_hits, path_type=hit_type))
        app.router.add_route("OPTIONS", path, handle_preflight)
    app.router.add_post("/v1/batch", functools.partial(handle_hits, path_type=None))
    app.router.add_route("OPTIONS", "/v1/batch", handle_preflight)
    app.router.add_get("/df.js", handle_tag)
    app.router.add_get("/demo", handle_demo)
    app.router.add_get("/healthz", handle_health)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HitError as exc:
        request.app[RUNTIME].metrics.hits_rejected.labels(exc.code).inc()
        response = _error(exc.status, exc.code, exc.message)
        if isinstance(exc, UnreadableBody):
            response.force_close()  # where this body ends and the next request starts is lost
        return response
    except QueueFull as exc:
        request.app[RUNTIME].metrics.hits_rejected.labels("queue_full").inc()
        response = _error(503, "queue_full", "the gateway is at capacity; retry later")
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except web.HTTPRequestEntityTooLarge:
        request.app[RUNTIME].metrics.hits_rejected.labels("payload_too_large").inc()
        limit = request.app[RUNTIME].settings.max_body_bytes
        return _error(413, "payload_too_large", f"body is larger than {limit} bytes")


def _error(status: int, code: str, message: str) -> web.Response:
    body = msgspec.json.encode({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json")


async def handle_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def handle_tag(request: web.Request) -> web.Response:
    return web.Response(
        body=await asset("static/df.js"),
        content_type="application/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def handle_preflight(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    response = web.Response(status=204)
    origin = request.headers.get("Origin")
    if origin and origin in await runtime.router.allowed_origins():
        _add_cors(response, origin)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = _CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "86400"
    return response


async def handle_hits(request: web.Request, path_type: HitType | None) -> web.Response:
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    hits = _decode(
        await _read_body(request, settings.max_body_bytes),
        request,
        path_type,
        settings.max_batch_hits,
    )
    route = await _route_for(runtime, hits)
    _redact_pages(hits, route.source.default_phone_region)
    facts = _request_facts(request, runtime, route)
    plan = plan_hits(hits, route, facts, settings.event_max_age_days)

    if plan.events:
        await runtime.queue.enqueue(plan.events)
        if runtime.worker is not None:
            for integration_id in {e.integration_id for e in plan.events}:
                runtime.worker.notify(integration_id)
    await _set_aside(runtime, plan, facts.received_at)
    _count(runtime, hits, plan)
    runtime.ledger.observe(plan.observed)  # buffered: the debugger never slows a hit down

    response = web.Response(body=_OK_BODY, content_type="application/json")
    origin = request.headers.get("Origin")
    if origin and origin in route.source.allowed_origins:
        _add_cors(response, origin)
    if plan.any_allowed and not facts.from_server:
        _set_cookies(response, request, route, facts, plan)
    return response


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(limit)
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if encoding not in ACCEPTED_CONTENT_ENCODINGS:
        # aiohttp passes an encoding it does not know through as it came: refuse it here
        # rather than read the compressed bytes as JSON.
        raise HitError(
            "unsupported_encoding",
            "Content-Encoding must be gzip, deflate, br, zstd or none",
            status=415,
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


def _decode(
    body: bytes, request: web.Request, path_type: HitType | None, max_hits: int
) -> list[Hit]:
    content_type = request.content_type if request.headers.get("Content-Type") else ""
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise HitError("unsupported_media_type", "send application/json or text/plain", status=415)
    if not body:
        raise HitError("malformed_json", "body is empty")
    if path_type is None:
        return decode_batch(body, max_hits)
    return [decode_hit(body, path_type)]


async def _route_for(runtime: Runtime, hits: list[Hit]) -> Route:
    source_ids = {hit.source_id for hit in hits}
    if None in source_ids:
        raise HitError("invalid_field", "source_id is required")
    if len(source_ids) > 1:
        raise HitError("invalid_field", "all hits of a batch must share one source_id")
    source_id = str(next(iter(source_ids)))
    route = await runtime.router.route(source_id)
    if route is None:
        raise HitError("unknown_source", f"source {source_id!r} does not exist")
    return route


def _redact_pages(hits: list[Hit], phone_region: str | None) -> None:
    """Email, phone and secrets out of page URLs before anything stores, logs or sends them.

    `ttclid` is never redacted, so the click is still read from the URL afterwards.
    """
    for hit in hits:
        page = hit.context.page if hit.context else None
        if page is None:
            continue
        if page.url:
            page.url = redact_url(page.url, phone_region)
        if page.referrer:
            page.referrer = redact_url(page.referrer, phone_region)


def _request_facts(request: web.Request, runtime: Runtime, route: Route) -> RequestFacts:
    settings = runtime.settings
    headers = request.headers
    from_server = _authenticate_server(header_text(headers, hdrs.AUTHORIZATION), route)
    peer = request.remote
    jar = request.cookies
    raw_identity = jar.get(cookies.IDENTITY)
    identity, outdated = request.app[IDENTITY_CODEC].open(raw_identity)
    return RequestFacts(
        ip=client_ip(peer, headers, settings.trusted_proxies, settings.client_ip_header),
        user_agent=header_text(headers, hdrs.USER_AGENT),
        locale=accept_language_locale(header_text(headers, hdrs.ACCEPT_LANGUAGE)),
        secure=is_https(
            request.scheme, peer, headers, settings.trusted_proxies, settings.client_ip_header
        ),
        ttp=cookies.safe_cookie_value(jar.get(cookies.TTP)),
        anonymous_id=cookies.safe_cookie_value(jar.get(cookies.ANONYMOUS_ID)),
        ttclid_cookie=cookies.safe_click_id(jar.get(cookies.TTCLID)),
        identity=identity,
        # An outdated cookie (it held the raw user id) is not re-sent but sealed anew.
        identity_cookie=raw_identity if not (identity.empty or outdated) else None,
        from_server=from_server,
        received_at=time.time(),
    )


def _authenticate_server(authorization: str | None, route: Route) -> bool:
    """True for a server source's hit; a wrong key is refused rather than silently downgraded."""
    if authorization is None:
        return False
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HitError("unauthorized", "Authorization must be 'Bearer <server key>'", status=401)
    expected = route.source.server_key_hash
    if not expected or not hmac.compare_digest(sha256_hex(key.strip()), expected):
        raise HitError("unauthorized", "the server key is not this source's", status=401)
    return True


def plan_hits(hits: list[Hit], route: Route, facts: RequestFacts, max_age_days: int) -> Plan:
    """Decide, hit by hit and integration by integration, what to store; no I/O here."""
    plan = Plan(identity=facts.identity)
    plan.ttp = facts.ttp or (None if facts.from_server else ids.new_uuid())
    plan.anonymous_id = facts.anonymous_id
    for hit in hits:
        _plan_hit(hit, route, facts, plan, max_age_days)
    return plan


def _plan_hit(hit: Hit, route: Route, facts: RequestFacts, plan: Plan, max_age_days: int) -> None:
    consent = hit.context.consent if hit.context else None
    allowed = [
        i for i in route.integrations if consent_allows(i, consent, route.source.consent_default)
    ]
    if allowed:
        plan.any_allowed = True
    anonymous_id = hit.anonymous_id or plan.anonymous_id
    if anonymous_id is None and not facts.from_server:
        anonymous_id = ids.new_uuid()
    if plan.anonymous_id is None and not facts.from_server:
        plan.anonymous_id = anonymous_id
    if hit.type == "identify":
        if allowed:
            _apply_identify(hit, route, plan)
        return
    ttclid_clicked = _ttclid_from_page(hit)
    if ttclid_clicked and allowed:
        plan.ttclid_clicked = ttclid_clicked
    context = HitContext(
        event_id=hit.message_id or ids.new_event_id(),
        event_time=_event_time(hit, facts, max_age_days),
        anonymous_id=anonymous_id,
        ttp=_server_ttp(hit, facts) or plan.ttp,
        ttclid=(
            _server_ttclid(hit, facts)
            or ttclid_clicked
            or plan.ttclid_clicked
            or facts.ttclid_cookie
        ),
        ip=_server_override(hit, facts, "ip") or facts.ip,
        user_agent=_server_override(hit, facts, "user_agent") or facts.user_agent,
        locale=_server_locale(hit, facts) if facts.from_server else facts.locale,
        identity=plan.identity,
    )
    stored: dict[str, tuple[NewEvent, str | None]] = {}
    for integration in allowed:
        result = transform(hit, context, integration, route.source)
        event = NewEvent(
            integration_id=integration.id,
            event_id=context.event_id,
            event_name=result.event_name,
            event_time=context.event_time,
            payload=msgspec.json.encode(result.event),
            consent=consent,
        )
        if isinstance(result, Rejected):
            plan.rejected.append((event, result.reason))
            stored[integration.id] = (event, result.reason)
        else:
            plan.events.append(event)
            stored[integration.id] = (event, None)
    _observe(hit, route, facts, context.event_id, stored, plan)


def _observe(
    hit: Hit,
    route: Route,
    facts: RequestFacts,
    event_id: str,
    stored: dict[str, tuple[NewEvent, str | None]],
    plan: Plan,
) -> None:
    """The ledger's records of one hit: every integration of its source, sent or not."""
    consent = hit.context.consent if hit.context else None
    page = hit.context.page if hit.context else None
    summary = hit_summary(
        hit.type, hit.event, route.source.id, page.url if page else None, consent, facts.from_server
    )
    # Match quality tells identified visitors from anonymous ones (external_id's first entry).
    user_id_known = hit.user_id is not None or plan.identity.user_id_hash is not None

    def record(integration_id: str | None, decision: str, why: str) -> Observation:
        event, reason = stored.get(integration_id or "", (None, None))
        if event is None:  # consent kept it from this integration, or there is none
            status, reason = NOT_SENT, ("consent" if decision == DENIED else None)
        else:  # stored: queued, or set aside at once (a purchase without value)
            status = DEAD_LETTERED if reason else QUEUED
        return Observation(
            event_id=event_id,
            integration_id=integration_id,
            source_id=route.source.id,
            hit=summary,
            decision=decision,
            decision_reason=why,
            tiktok_event=event.event_name if event else None,
            payload=event.payload if event else None,
            status=status,
            reason=reason,
            received_at=facts.received_at,
            user_id_known=user_id_known,
        )

    if not route.integrations:
        plan.observed.append(record(None, NO_INTEGRATION, "the source has no enabled integration"))
    for integration in route.integrations:
        decision, why = explain_consent(integration, consent, route.source.consent_default)
        plan.observed.append(record(integration.id, decision, why))


def _apply_identify(hit: Hit, route: Route, plan: Plan) -> None:
    candidates = [hit.traits, hit.context.traits if hit.context else None]
    learned = traits_identity(
        [traits for traits in candidates if traits is not None],
        route.source.default_phone_region,
        user_id=hit.user_id,
    )
    known = plan.identity.user_id_hash
    if learned.user_id_hash and known and learned.user_id_hash != known:
        # Someone else signed in on this browser: do not mix two people's identifiers.
        plan.identity = learned
    else:
        plan.identity = plan.identity.merged_with(learned)
    plan.identity_changed = True


def _ttclid_from_page(hit: Hit) -> str | None:
    """The click id of the page URL, else of a referrer trusted for it (`referrer_trusted`)."""
    page = hit.context.page if hit.context else None
    if page is None:
        return None
    clicked = _ttclid_of(page.url)
    if clicked is None and page.referrer and referrer_trusted(page.referrer, page.url):
        clicked = _ttclid_of(page.referrer)
    return clicked


def _ttclid_of(url: str | None) -> str | None:
    if not url or "ttclid=" not in url:
        return None
    values = parse_qs(urlsplit(url).query).get("ttclid")
    return cookies.safe_click_id(values[-1]) if values else None


# TikTok's own domain: a click id in a tiktok.com referrer was put there by TikTok.
TIKTOK_DOMAIN = "tiktok.com"


def referrer_trusted(referrer: str, page_url: str | None) -> bool:
    """Whether a click id in the referrer may be taken when the page URL has none.

    TikTok's server-side GTM template takes it from a referrer on the page's own host (the
    visitor landed with ?ttclid= and moved on before the tag fired). A tiktok.com referrer (the
    domain or a subdomain) is trusted as well. Host names are compared exactly, never by
    substring: "tiktok.com.evil.example" and "nottiktok.com" are not TikTok's.
    """
    referrer_host = _host(referrer)
    if referrer_host is None:
        return False
    if referrer_host == TIKTOK_DOMAIN or referrer_host.endswith("." + TIKTOK_DOMAIN):
        return True
    return page_url is not None and referrer_host == _host(page_url)


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.rstrip(".") if host else None


def accept_language_locale(header: str | None) -> str | None:
    """The first language of an Accept-Language header ("en-US,en;q=0.9" -> "en-US").

    Browsers list the visitor's preferred language first; a wildcard or an unreadable tag
    yields nothing rather than a guess.
    """
    if not header:
        return None
    first = header.split(",", 1)[0].split(";", 1)[0].strip()
    return first if _LOCALE.fullmatch(first) else None


# A BCP 47 tag as browsers and servers write them: "en", "en-US", "zh-Hant-TW", "pt_BR".
_LOCALE = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8}){0,7}")


def _event_time(hit: Hit, facts: RequestFacts, max_age_days: int) -> int:
    """Browsers get the receive time; server sources keep their timestamp within the window."""
    now = facts.received_at
    if not facts.from_server or hit.timestamp is None:
        return int(now)
    stamp = hit.timestamp.timestamp()
    if stamp < now - max_age_days * cookies.DAY_S:
        raise HitError("timestamp_too_old", f"timestamp is older than {max_age_days} days")
    if stamp > now + MAX_FUTURE_SKEW_S:
        raise HitError("timestamp_in_future", "timestamp lies in the future")
    return int(stamp)


def _server_override(hit: Hit, facts: RequestFacts, name: str) -> str | None:
    """`context.ip`, `user_agent`, `ttp`, `ttclid`, `locale` count only from an authenticated
    server source; a browser's are ignored (its request, cookies and URL decide)."""
    if not facts.from_server or hit.context is None:
        return None
    value: str | None = getattr(hit.context, name)
    return value


def _server_ttp(hit: Hit, facts: RequestFacts) -> str | None:
    ttp = _server_override(hit, facts, "ttp")
    if ttp is not None and cookies.safe_cookie_value(ttp) is None:
        raise HitError("invalid_field", "context.ttp is not a _ttp cookie value")
    return ttp


def _server_ttclid(hit: Hit, facts: RequestFacts) -> str | None:
    ttclid = _server_override(hit, facts, "ttclid")
    if ttclid is not None and cookies.safe_click_id(ttclid) is None:
        raise HitError(
            "invalid_field", "context.ttclid holds characters a TikTok click id never has"
        )
    return ttclid


def _server_locale(hit: Hit, facts: RequestFacts) -> str | None:
    locale = _server_override(hit, facts, "locale")
    if locale is not None and not _LOCALE.fullmatch(locale):
        raise HitError("invalid_field", "context.locale is not a language tag such as en-US")
    return locale


async def _set_aside(runtime: Runtime, plan: Plan, now: float) -> None:
    """Events that must not be sent (e.g. a purchase without value) become dead letters."""
    by_reason: dict[str, list[NewEvent]] = {}
    for event, reason in plan.rejected:
        by_reason.setdefault(reason, []).append(event)
    for reason, events in by_reason.items():
        await runtime.queue.dead_letter_new(events, reason, None, now)
        for event in events:
            runtime.metrics.events_skipped.labels(event.integration_id, reason).inc()
            runtime.metrics.events_dead_lettered.labels(event.integration_id, reason).inc()


def _count(runtime: Runtime, hits: list[Hit], plan: Plan) -> None:
    metrics = runtime.metrics
    for hit in hits:
        metrics.hit_counter(hit.type or "unknown").inc()
    for event in plan.events:
        metrics.enqueued_counter(event.integration_id).inc()


def _add_cors(response: web.StreamResponse, origin: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Vary"] = "Origin"


def _set_cookies(
    response: web.StreamResponse,
    request: web.Request,
    route: Route,
    facts: RequestFacts,
    plan: Plan,
) -> None:
    def add(name: str, value: str, max_age: int, http_only: bool) -> None:
        response.headers.add(
            hdrs.SET_COOKIE,
            cookies.set_cookie_value(
                name, value, max_age, secure=facts.secure, domain=domain, http_only=http_only
            ),
        )

    domain = route.source.cookie_domain
    if plan.ttp:
        add(cookies.TTP, plan.ttp, cookies.THIRTEEN_MONTHS_S, http_only=False)
    if plan.anonymous_id:
        add(cookies.ANONYMOUS_ID, plan.anonymous_id, cookies.THIRTEEN_MONTHS_S, http_only=True)
    if plan.ttclid_clicked:
        # Written only on a click: its 30 days run from the click, not from the last visit.
        add(cookies.TTCLID, plan.ttclid_clicked, cookies.THIRTY_DAYS_S, http_only=False)
    if not plan.identity.empty:
        # Sealing costs an encryption: re-send the cookie as it came unless identify changed it.
        sealed = facts.identity_cookie if not plan.identity_changed else None
        sealed = sealed or request.app[IDENTITY_CODEC].seal(plan.identity)
        add(cookies.IDENTITY, sealed, cookies.THIRTEEN_MONTHS_S, http_only=True)
