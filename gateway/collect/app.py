"""Collection surface (the public port): HTTP in, cookies, identity, consent, then the hit log.

The hot path is short: a protocol (`protocols/`) reads and validates the body into hits; they
are routed through the cached configuration, planned (`plan.py`: identity, cookies, click ids),
appended to the hit log once each (group commit) and answered. Nothing is transformed for a
destination here and TikTok is never called: each integration's delivery reads the log later.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import hdrs, web

from gateway.collect import cookies, refusals
from gateway.collect.context import CollectContext
from gateway.collect.demo import handle_demo
from gateway.collect.plan import (
    Plan,
    RequestFacts,
    accept_language_locale,
    no_integration,
    plan_hits,
)
from gateway.collect.protocols import native, segment
from gateway.collect.rawhit import SEALED, render
from gateway.collect.redact import redact_url
from gateway.collect.route import Route
from gateway.collect.visitor import client_ip, is_https
from gateway.core.assets import asset
from gateway.core.errors import HitError, PayloadTooLarge, QueueFull
from gateway.core.headers import header_text
from gateway.core.hit import Hit, HitType
from gateway.log.base import LogRecord

log = logging.getLogger(__name__)

CONTEXT = web.AppKey("collect", CollectContext)
COOKIE_HEADERS = web.AppKey("cookie_headers", cookies.CookieHeaders)

_OK_BODY = b'{"ok":true}'
# analytics-next adds X-Retry-Count when it retries a call, RudderStack's JavaScript SDK an
# AnonymousId header to every call (protocols/segment.py).
_CORS_ALLOW_HEADERS = "Content-Type, Authorization, X-Retry-Count, AnonymousId"


def create_collect_app(context: CollectContext) -> web.Application:
    app = web.Application(
        client_max_size=context.settings.max_body_bytes,
        middlewares=[_error_middleware],
    )
    app[CONTEXT] = context
    app[COOKIE_HEADERS] = cookies.CookieHeaders()
    # Each protocol adds its routes here; all of them end in `collect_hits`.
    for path, hit_type in native.ENDPOINTS:
        app.router.add_post(path, functools.partial(handle_native_hits, path_type=hit_type))
        app.router.add_route("OPTIONS", path, handle_preflight)
    app[segment.WRITE_KEYS] = segment.WriteKeys(context.router.store)
    for path, segment_type in segment.SEGMENT_ONLY_PATHS:
        app.router.add_post(path, functools.partial(handle_segment, kind=segment_type))
        app.router.add_route("OPTIONS", path, handle_preflight)
    app.router.add_get("/df.js", handle_tag)
    app.router.add_get("/demo", handle_demo)
    app.router.add_get("/healthz", handle_health)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The collection port's HTTP answer to each refusal code (the errors themselves carry none).
_STATUS_BY_CODE = {
    "payload_too_large": 413,
    "unsupported_encoding": 415,
    "unsupported_media_type": 415,
    "unauthorized": 401,
}


def hit_status(code: str) -> int:
    """The HTTP status of a refused hit: 400 unless its code says otherwise."""
    return _STATUS_BY_CODE.get(code, 400)


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns refusals into the gateway's JSON errors, and notes every answer of 400 or more in
    the debugger's ring (`collect.refusals`): here rather than in a middleware of its own, so a
    hit that succeeds pays one comparison and no extra layer."""
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        request.app[CONTEXT].metrics.hits_rejected.labels("payload_too_large").inc()
        limit = request.app[CONTEXT].settings.max_body_bytes
        response = _error(413, "payload_too_large", f"body is larger than {limit} bytes")
    except web.HTTPException as exc:
        if exc.status >= 400:
            refusals.note(request.app[CONTEXT].refused, request, exc.status, None, exc.reason)
        raise
    except Exception as exc:
        answer = _refusal_answer(request, exc)
        if answer is None:
            raise
        response = answer
    if response.status >= 400:
        refusals.note_response(request.app[CONTEXT].refused, request, response)
    return response


def _refusal_answer(request: web.Request, exc: Exception) -> web.Response | None:
    """The JSON error for a refusal the handler raised (None: not one of them)."""
    if isinstance(exc, HitError):
        request.app[CONTEXT].metrics.hits_rejected.labels(exc.code).inc()
        response = _error(hit_status(exc.code), exc.code, exc.message)
        if isinstance(exc, native.UnreadableBody):
            response.force_close()  # where this body ends and the next request starts is lost
        return response
    if isinstance(exc, QueueFull):
        request.app[CONTEXT].metrics.hits_rejected.labels("queue_full").inc()
        response = _error(503, "queue_full", "the gateway is at capacity; retry later")
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    return None


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
    context = request.app[CONTEXT]
    response = web.Response(status=204)
    origin = request.headers.get("Origin")
    if origin and origin in await context.router.allowed_origins():
        _add_cors(response, origin)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = _CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "86400"
    return response


async def handle_native_hits(request: web.Request, path_type: HitType | None) -> web.Response:
    context = request.app[CONTEXT]
    settings = context.settings
    body = await native.read_body(request, settings.max_body_bytes)
    authorization = header_text(request.headers, hdrs.AUTHORIZATION)
    if segment.speaks_segment(authorization, body):  # a Segment client on a path both use
        return await _handle_segment_body(request, body, path_type, authorization)
    hits = native.decode_body(body, request, path_type, settings.max_batch_hits)
    route = await _route_for(context, hits)
    from_server = native.authenticate_server(authorization, route)
    return await collect_hits(request, hits, route, from_server)


async def handle_segment(request: web.Request, kind: segment.SegmentType | None) -> web.Response:
    """A path only Segment's and RudderStack's clients use (`/v1/track`, `/b`, ...)."""
    try:
        body = await native.read_body(request, request.app[CONTEXT].settings.max_body_bytes)
    except HitError as exc:
        if isinstance(exc, native.UnreadableBody):
            raise  # the middleware closes the connection
        return _segment_refusal(request, exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONTEXT].settings.max_body_bytes
        return _segment_refusal(request, PayloadTooLarge(limit))
    authorization = header_text(request.headers, hdrs.AUTHORIZATION)
    return await _handle_segment_body(request, body, kind, authorization)


async def _handle_segment_body(
    request: web.Request, body: bytes, kind: segment.SegmentType | None, authorization: str | None
) -> web.Response:
    """Segment's wire format: the write key picks the source and the rules."""
    context = request.app[CONTEXT]
    try:
        native.check_body(body, request)
        calls = segment.decode_request(
            body,
            authorization,
            kind,
            context.settings.max_batch_hits,
            query_key=request.query.get("writeKey"),
        )
        route, from_server = await request.app[segment.WRITE_KEYS].resolve(
            calls.write_key, context.router.route, secret_allowed=not calls.key_in_url
        )
        has_dfid = _visitor_cookies(request).anonymous_id is not None
        hits = segment.to_hits(calls, route, from_server, has_dfid)
        return await collect_hits(request, hits, route, from_server, segment.OK_BODY)
    except HitError as exc:
        return _segment_refusal(request, exc)


def _segment_refusal(request: web.Request, exc: HitError) -> web.Response:
    request.app[CONTEXT].metrics.hits_rejected.labels(exc.code).inc()
    return segment.error_response(exc, hit_status(exc.code))


async def collect_hits(
    request: web.Request,
    hits: list[Hit],
    route: Route,
    from_server: bool,
    ok_body: bytes = _OK_BODY,
) -> web.Response:
    """Whatever the protocol: plan the decoded hits, append them to the hit log, answer.

    Nothing is transformed or sent here: each integration reads the records later and decides
    with its own settings (`deliver/record.py`). The answer waits only for the append (durable).
    """
    context = request.app[CONTEXT]
    _redact_pages(hits, route.source.default_phone_region)
    facts = _request_facts(request, context, route, from_server)
    plan = plan_hits(hits, route, facts, context.settings.event_max_age_days)
    cookies_to_set = (
        _cookies(request, route, facts, plan) if plan.any_allowed and not facts.from_server else []
    )
    records = _records(plan, route, cookies_to_set)
    await context.log.append(records)
    if context.appended is not None and route.integrations:
        context.appended([i.id for i in route.integrations], len(records), facts.received_at)
    if not route.integrations:
        context.note([no_integration(plan, route, records)])
    _count(context, hits)

    response = web.Response(body=ok_body, content_type="application/json")
    origin = request.headers.get("Origin")
    if origin and origin in route.source.allowed_origins:
        _add_cors(response, origin)
    for header in cookies_to_set:
        response.headers.add(hdrs.SET_COOKIE, header)
    return response


def _records(plan: Plan, route: Route, cookies_set: list[str]) -> list[LogRecord]:
    """One record per hit: the hit (traits hashed), the request's facts, what was resolved."""
    assert plan.request is not None
    region = route.source.default_phone_region
    return [
        LogRecord(
            source_id=route.source.id,
            received_at=plan.request.received_at,
            data=render(planned.hit, plan.request, region, planned.context, planned.hashes),
            event_id=planned.event_id,
        )
        for planned in plan.hits
    ]


async def _route_for(context: CollectContext, hits: list[Hit]) -> Route:
    source_ids = {hit.source_id for hit in hits}
    if None in source_ids:
        raise HitError("invalid_field", "source_id is required")
    if len(source_ids) > 1:
        raise HitError("invalid_field", "all hits of a batch must share one source_id")
    source_id = str(next(iter(source_ids)))
    route = await context.router.route(source_id)
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


def _request_facts(
    request: web.Request, context: CollectContext, route: Route, from_server: bool
) -> RequestFacts:
    settings = context.settings
    headers = request.headers
    peer = request.remote
    jar = _visitor_cookies(request)
    raw_identity = jar.identity
    identity, outdated = context.identity_codec.open(raw_identity)
    return RequestFacts(
        ip=client_ip(peer, headers, settings.trusted_proxies, settings.client_ip_header),
        user_agent=header_text(headers, hdrs.USER_AGENT),
        locale=accept_language_locale(header_text(headers, hdrs.ACCEPT_LANGUAGE)),
        secure=is_https(
            request.scheme, peer, headers, settings.trusted_proxies, settings.client_ip_header
        ),
        ttp=jar.ttp,
        anonymous_id=jar.anonymous_id,
        ttclid_cookie=jar.ttclid,
        identity=identity,
        # An outdated cookie (it held the raw user id) is not re-sent but sealed anew.
        identity_cookie=raw_identity if not (identity.empty or outdated) else None,
        identity_cookie_present=bool(raw_identity),
        from_server=from_server,
        received_at=time.time(),
    )


def _visitor_cookies(request: web.Request) -> cookies.VisitorCookies:
    header = request.headers.get(hdrs.COOKIE, "")
    return request.app[COOKIE_HEADERS].read(header, lambda: request.cookies)


def _count(context: CollectContext, hits: list[Hit]) -> None:
    metrics = context.metrics
    for hit in hits:
        metrics.hit_counter(hit.type or "unknown").inc()


def _add_cors(response: web.StreamResponse, origin: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Vary"] = "Origin"


def _cookies(request: web.Request, route: Route, facts: RequestFacts, plan: Plan) -> list[str]:
    """The Set-Cookie values to answer with; the records show them (the identity cookie sealed)."""
    shown = plan.request.cookies_set if plan.request is not None else {}
    headers: list[str] = []

    def add(name: str, value: str, max_age: int, http_only: bool) -> None:
        shown[name] = SEALED if name == cookies.IDENTITY else value
        headers.append(
            cookies.set_cookie_value(
                name, value, max_age, secure=facts.secure, domain=domain, http_only=http_only
            )
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
        sealed = sealed or request.app[CONTEXT].identity_codec.seal(plan.identity)
        add(cookies.IDENTITY, sealed, cookies.THIRTEEN_MONTHS_S, http_only=True)
    return headers
