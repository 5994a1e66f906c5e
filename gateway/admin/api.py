"""The Management API (admin port): sources, integrations, dead letters, health and metrics.

Handlers are thin: read the request, call the pure parsers of `schema.py`, talk to the store
and the queue, answer JSON. Every refusal is `{"error": {"code", "message", "field"}}`, made in
one middleware from the `AdminError` tree; nothing else ever reaches a client, tracebacks least
of all. Every `/v1/admin/*` call needs an admin Bearer token, compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from gateway import destinations
from gateway.admin.context import AdminContext
from gateway.admin.debugger import add_debugger, failed_requests, note_dead_letters, note_test_send
from gateway.admin.openapi import document_bytes
from gateway.admin.reprocess import add_reprocess
from gateway.admin.schema import (
    Selection,
    Unauthorized,
    dead_letter_json,
    error_body,
    integration_json,
    now_iso,
    parse_fix,
    parse_json,
    parse_new_integration,
    parse_new_source,
    parse_page,
    parse_selection,
    patch_integration,
    patch_source,
    selection_from_query,
    source_json,
)
from gateway.admin.ui import add_ui
from gateway.collect.route import consent_allows
from gateway.core.crypto import constant_time_in, new_token, sha256_hex
from gateway.core.errors import AdminError, Conflict, Invalid, NotFound, QueueFull, StoreError
from gateway.core.headers import header_text
from gateway.core.metrics import CONTENT_TYPE_LATEST
from gateway.core.models import (
    ConsentDefault,
    DeadLetter,
    Integration,
    IntegrationState,
    NewEvent,
    QueueUsage,
    Source,
)
from gateway.core.validation import expect
from gateway.destinations.base import Destination, Verdict
from gateway.ledger.base import DEAD_LETTERED, QUEUED

log = logging.getLogger(__name__)

CONTEXT: Final = web.AppKey("admin", AdminContext)

ADMIN_PREFIX = "/v1/admin"
PAUSED_BY_ADMIN = "paused by admin"
READY_TIMEOUT_S = 2.0
_LIST_CHUNK = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_admin_app(context: AdminContext) -> web.Application:
    app = web.Application(middlewares=[_errors, _bearer_auth])
    app[CONTEXT] = context
    app.on_response_prepare.append(_add_security_headers)
    p = ADMIN_PREFIX
    app.router.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get(f"{p}/openapi.json", openapi),
            web.get(f"{p}/destinations", list_destinations),
            web.post(f"{p}/sources", create_source),
            web.get(f"{p}/sources", list_sources),
            web.get(f"{p}/sources/{{id}}", get_source),
            web.patch(f"{p}/sources/{{id}}", update_source),
            web.delete(f"{p}/sources/{{id}}", delete_source),
            web.post(f"{p}/integrations", create_integration),
            web.get(f"{p}/integrations", list_integrations),
            web.get(f"{p}/integrations/{{id}}", get_integration),
            web.patch(f"{p}/integrations/{{id}}", update_integration),
            web.delete(f"{p}/integrations/{{id}}", delete_integration),
            web.post(f"{p}/integrations/{{id}}/pause", pause_integration),
            web.post(f"{p}/integrations/{{id}}/resume", resume_integration),
            web.post(f"{p}/integrations/{{id}}/test", test_integration),
            web.post(f"{p}/integrations/test", test_unsaved_integration),
            web.get(f"{p}/public-url", public_url),
            web.get(f"{p}/integrations/{{id}}/dead-letters", list_dead_letters),
            web.post(f"{p}/integrations/{{id}}/dead-letters/replay", replay_dead_letters),
            web.post(
                f"{p}/integrations/{{id}}/dead-letters/{{dead_letter_id}}/fix", fix_dead_letter
            ),
            web.delete(f"{p}/integrations/{{id}}/dead-letters", purge_dead_letters),
        ]
    )
    add_debugger(app, context, p)
    add_reprocess(app, context, p)
    add_ui(app)
    return app


# ---------------------------------------------------------------------------------- middleware


def _error(
    status: int, code: str, message: str, field: str | None = None, **headers: str
) -> web.Response:
    return web.json_response(error_body(code, message, field), status=status, headers=headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


# On every answer of the admin port (API, errors, 401s, metrics, event streams, UI files): it
# carries tokens' owners' data, so no sniffing, no framing and no caching anywhere.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """A response-prepare hook rather than a middleware: it also reaches the answers aiohttp
    makes itself and the streamed ones, whose headers are sent before a middleware sees them."""
    response.headers.update(SECURITY_HEADERS)


# The admin port's HTTP answer to each kind of refusal (the errors themselves carry none).
_STATUS_BY_KIND: tuple[tuple[type[AdminError], int], ...] = (
    (Unauthorized, 401),
    (NotFound, 404),
    (Conflict, 409),
    (Invalid, 422),
)


def admin_status(exc: AdminError) -> int:
    """The HTTP status of a refused Management API request (400 unless a kind says more)."""
    for kind, status in _STATUS_BY_KIND:
        if isinstance(exc, kind):
            return status
    return 400


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every refusal into the JSON error shape; unexpected failures into a bare 500."""
    try:
        return await handler(request)
    except AdminError as exc:
        status = admin_status(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        return _error(status, exc.code, exc.message, exc.field, **headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        code = _HTTP_CODES.get(exc.status, "http_error")
        return _error(exc.status, code, exc.reason, **headers)
    except QueueFull as exc:
        return _error(503, "queue_full", str(exc), **{"Retry-After": str(exc.retry_after_s)})
    except StoreError:
        log.warning("store failed during %s %s", request.method, request.path, exc_info=True)
        return _error(503, "store_unavailable", "the configuration store is unavailable")
    except Exception as exc:
        if _client_fault(request, exc):
            raise  # the connection handler counts it (aborted or malformed), no traceback
        log.exception("admin request failed: %s %s", request.method, request.path)
        return _error(500, "internal_error", "internal error")


def _client_fault(request: web.Request, exc: Exception) -> bool:
    """A body the client cut short (it has gone) or sent broken (bad chunks or encoding)."""
    if isinstance(exc, web.RequestPayloadError):
        return True
    # A connection error with the client still there is a backend's socket: the gateway's fault.
    return isinstance(exc, ConnectionError) and request.transport is None


@web.middleware
async def _bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/"):
        authorization = header_text(request.headers, "Authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("an admin Bearer token is required")
        if not constant_time_in(token.strip(), request.app[CONTEXT].admin_tokens):
            raise Unauthorized("the admin token is not valid")
    return await handler(request)


# ------------------------------------------------------------------------------------- helpers


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def _body(request: web.Request) -> Any:
    return parse_json(await request.read())


def _now() -> str:
    return now_iso(time.time())


async def _source_or_404(context: AdminContext, source_id: str) -> Source:
    source = await context.store.get_source(source_id)
    if source is None:
        raise NotFound("source", source_id)
    return source


async def _integration_or_404(context: AdminContext, integration_id: str) -> Integration:
    integration = await context.store.get_integration(integration_id)
    if integration is None:
        raise NotFound("integration", integration_id)
    return integration


async def _integration_view(
    context: AdminContext, integration: Integration, usage: QueueUsage | None = None
) -> dict[str, Any]:
    usage = usage or await queue_usage(context)
    view = integration_json(integration, await context.queue.stats(integration.id), usage)
    view["status"]["pause_hint"] = await _pause_hint(context, integration)
    return view


async def _pause_hint(context: AdminContext, integration: Integration) -> dict[str, Any] | None:
    """Why the destination paused it, the fix, the field, how many requests failed so, and
    whether a resume without the fix is expected to pause again (an admin's pause has none)."""
    if integration.state is not IntegrationState.PAUSED:
        return None
    hint = destinations.get(integration.vendor).explain_pause(integration.paused_reason)
    if hint is None:
        return None
    return {
        "message": hint.message,
        "field": hint.field,
        # A PATCH of the config resumes the integration, so a pause that is still there has
        # not seen its fix yet.
        "resume_expected_to_fail": hint.resume_fails,
        "failed_requests": await failed_requests(context, integration.id),
    }


async def queue_usage(context: AdminContext) -> QueueUsage:
    """The queue's depth and size against its bounds; the gauges of /metrics follow."""
    depth = await context.queue.depth()
    size = await context.queue.size_bytes()
    context.metrics.queue_depth.set(depth)
    if size is not None:
        context.metrics.queue_bytes.set(size)
    settings = context.settings
    bytes_bound = settings.queue_max_bytes if size is not None else None
    return QueueUsage(depth, settings.queue_max_events, size, bytes_bound)


async def _changed(
    context: AdminContext, integration: Integration | None = None, *, wake: bool = False
) -> None:
    """After every write: routing sees it at once, the paused gauge follows, and an integration
    that may deliver again (`wake`) gets the worker's attention for the events it kept."""
    await context.router.invalidate()
    if integration is None:
        return
    paused = integration.state is IntegrationState.PAUSED
    context.metrics.integration_paused.labels(integration.id).set(1 if paused else 0)
    if wake and integration.state is IntegrationState.ACTIVE and context.wake is not None:
        context.wake(integration.id)


def _forget(context: AdminContext, integration_id: str) -> None:
    with contextlib.suppress(KeyError):
        context.metrics.integration_paused.remove(integration_id)


# ----------------------------------------------------------------------------- health, metrics


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    checks: dict[str, str] = {}
    probes: dict[str, Callable[[], Awaitable[int]]] = {
        "store": context.store.config_version,
        "queue": context.queue.depth,
    }
    for name, probe in probes.items():
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the class name is enough
            log.warning("readiness check %s failed", name, exc_info=True)
            checks[name] = f"unavailable ({type(exc).__name__})"
    ready = all(v == "ok" for v in checks.values())
    return _json(
        {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    try:
        await queue_usage(context)
    except Exception:  # the other metrics are still worth serving
        log.warning("queue depth unavailable for /metrics", exc_info=True)
    response = web.Response(body=context.metrics.render())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def openapi(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(document_bytes)  # read and built once, off the loop
    return web.Response(body=body, content_type="application/json")


async def list_destinations(request: web.Request) -> web.Response:
    """The registry's destinations, with the form the UI renders for each one's config."""
    return _json({"destinations": [d.describe() for d in destinations.REGISTRY.values()]})


# -------------------------------------------------------------------------------------- sources


async def create_source(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    source = parse_new_source(await _body(request), lambda: "src_" + secrets.token_hex(6), _now())
    if await context.store.get_source(source.id) is not None:
        raise Conflict("conflict", f"a source with id {source.id!r} already exists", "id")
    server_key = new_token("sk_")
    created = await context.store.create_source(
        dataclasses.replace(source, server_key_hash=sha256_hex(server_key))
    )
    await _changed(context)
    # The only time the key is shown: the store keeps its hash.
    return _json(source_json(created, server_key=server_key), 201)


async def list_sources(request: web.Request) -> web.Response:
    sources = await request.app[CONTEXT].store.list_sources()
    return _json({"sources": [source_json(s) for s in sources]})


async def get_source(request: web.Request) -> web.Response:
    source = await _source_or_404(request.app[CONTEXT], request.match_info["id"])
    return _json(source_json(source))


async def update_source(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    current = await _source_or_404(context, request.match_info["id"])
    updated = await context.store.update_source(patch_source(current, await _body(request), _now()))
    await _changed(context)
    envelope = ("event_source", "event_source_id")
    if context.refresh is not None and any(
        getattr(updated, name) != getattr(current, name) for name in envelope
    ):
        # The envelope of the next request follows at once, not at the next version poll.
        context.refresh()
    return _json(source_json(updated))


async def delete_source(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    source_id = request.match_info["id"]
    integrations = await context.store.list_integrations(source_id)
    if not await context.store.delete_source(source_id):
        raise NotFound("source", source_id)
    await _changed(context)
    for integration in integrations:
        await context.queue.drop_integration(integration.id)
        _forget(context, integration.id)
    return web.Response(status=204)


# --------------------------------------------------------------------------------- integrations


async def create_integration(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    integration = parse_new_integration(
        await _body(request), lambda: "int_" + secrets.token_hex(6), _now()
    )
    unknown = Invalid(
        "unknown_source", f"source {integration.source_id!r} does not exist", "source_id"
    )
    if await context.store.get_source(integration.source_id) is None:
        raise unknown
    try:
        created = await context.store.create_integration(integration)
    except NotFound:  # the source was deleted a moment ago
        raise unknown from None
    await _changed(context, created)
    return _json(await _integration_view(context, created), 201)


async def list_integrations(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    integrations = await context.store.list_integrations(request.query.get("source_id") or None)
    usage = await queue_usage(context)
    views = [await _integration_view(context, i, usage) for i in integrations]
    return _json({"integrations": views})


async def get_integration(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    integration = await _integration_or_404(context, request.match_info["id"])
    return _json(await _integration_view(context, integration))


async def update_integration(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    current = await _integration_or_404(context, request.match_info["id"])
    patched = patch_integration(current, await _body(request), _now())
    updated = await context.store.update_integration(patched)
    if updated.paused_reason != patched.paused_reason:
        # Stores may keep the paused flag apart from the record: set it explicitly.
        await context.store.set_paused(updated.id, patched.paused_reason)
        updated = await _integration_or_404(context, updated.id)
    await _changed(context, updated, wake=current.state is not IntegrationState.ACTIVE)
    return _json(await _integration_view(context, updated))


async def delete_integration(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    integration_id = request.match_info["id"]
    if not await context.store.delete_integration(integration_id):
        raise NotFound("integration", integration_id)
    await _changed(context)
    await context.queue.drop_integration(integration_id)
    _forget(context, integration_id)
    return web.Response(status=204)


async def _set_paused(request: web.Request, reason: str | None) -> web.Response:
    context = request.app[CONTEXT]
    integration = await _integration_or_404(context, request.match_info["id"])
    await context.store.set_paused(integration.id, reason)
    integration = await _integration_or_404(context, integration.id)
    await _changed(context, integration, wake=reason is None)
    return _json(await _integration_view(context, integration))


async def pause_integration(request: web.Request) -> web.Response:
    return await _set_paused(request, PAUSED_BY_ADMIN)


async def resume_integration(request: web.Request) -> web.Response:
    return await _set_paused(request, None)


async def test_integration(request: web.Request) -> web.Response:
    """One sample event to a saved integration, with the body's or the integration's test code."""
    context = request.app[CONTEXT]
    integration = await _integration_or_404(context, request.match_info["id"])
    data = await _optional_body(request)
    code = parse_test_event_code(data, _saved_test_code(integration))
    return await _test_send(context, integration, code)


async def test_unsaved_integration(request: web.Request) -> web.Response:
    """The form's test before saving: `{vendor, source_id, config, test_event_code}` for a new
    integration, or `{integration_id, config, test_event_code}` with the form's changes to a
    saved one (its secrets kept when the form leaves them empty). Nothing is stored."""
    context = request.app[CONTEXT]
    data = expect(await _body(request), dict, "a JSON object", "the body")
    saved_id = data.get("integration_id")
    if saved_id is not None:
        if not isinstance(saved_id, str):
            raise Invalid("invalid_type", "integration_id must be a string", "integration_id")
        current = await _integration_or_404(context, saved_id)
        destination = destinations.get(current.vendor)
        config = destination.patch_config(current.config, data.get("config", {}), "config")
        integration = dataclasses.replace(current, config=config or current.config)
    else:
        body = {k: data[k] for k in ("vendor", "source_id", "config") if k in data}
        integration = parse_new_integration({**body, "name": "unsaved"}, lambda: "", _now())
        if await context.store.get_source(integration.source_id) is None:
            raise Invalid(
                "unknown_source", f"source {integration.source_id!r} does not exist", "source_id"
            )
    code = parse_test_event_code(data, _saved_test_code(integration))
    return await _test_send(context, integration, code)


def _saved_test_code(integration: Integration) -> str | None:
    code = getattr(integration.config, "test_event_code", None)
    return code if isinstance(code, str) and code else None


def parse_test_event_code(data: Any, saved: str | None) -> str | None:
    """The body's `test_event_code` (1 to 64 characters), else the integration's."""
    raw = data.get("test_event_code") if isinstance(data, dict) else None
    if raw is None:
        return saved
    if not isinstance(raw, str):
        raise Invalid("invalid_type", "test_event_code must be a string", "test_event_code")
    code = raw.strip()
    if not code:
        return saved
    if len(code) > 64:
        raise Invalid(
            "invalid_value", "test_event_code must be at most 64 characters", "test_event_code"
        )
    return code


async def _test_send(
    context: AdminContext, integration: Integration, code: str | None
) -> web.Response:
    destination = destinations.get(integration.vendor)
    if destination.has_test_mode and code is None:
        # Without a code the sample would land in the pixel's production data.
        raise Invalid(
            "test_event_code_required",
            "a test send needs a test event code (Events Manager > your pixel > Test events), "
            "so that the sample never reaches production data",
            "test_event_code",
        )
    source = await context.store.get_source(integration.source_id)
    now = time.time()
    sample = destination.sample_event(integration, now)
    body = destination.request_body(integration, source, [sample], test_event_code=code)
    client = context.clients[integration.vendor]
    answer = await client.send(integration, source, [sample], test_event_code=code)
    accepted = destination.classify(answer) is Verdict.ACCEPTED
    event_id = note_test_send(context, integration, sample, body, code, answer, accepted, now)
    reply = {
        "http_status": answer.http_status,
        "code": answer.code,
        "message": answer.message,
        "request_id": answer.request_id,
    }
    return _json(
        {
            "sent": answer.transport_error is None,
            "accepted": accepted,
            "event_id": event_id,
            "test_event_code": code,
            "request": {"body": body},
            "answer": reply,
            "tiktok": reply,  # the name this answer had before other destinations
            "error": answer.transport_error,
        }
    )


async def _optional_body(request: web.Request) -> Any:
    raw = await request.read()
    return parse_json(raw) if raw.strip() else {}


async def public_url(request: web.Request) -> web.Response:
    """The collection endpoint's public address for snippets: GATEWAY_PUBLIC_URL, else this
    request's scheme and host (with the collection port in place of an explicit admin port)."""
    settings = request.app[CONTEXT].settings
    if settings.public_url:
        return _json({"public_url": settings.public_url, "configured": True})
    host = request.host
    admin_port = f":{settings.admin_port}"
    if host.endswith(admin_port):
        host = host[: -len(admin_port)] + f":{settings.collect_port}"
    return _json({"public_url": f"{request.scheme}://{host}", "configured": False})


# --------------------------------------------------------------------------------- dead letters


async def list_dead_letters(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    integration = await _integration_or_404(context, request.match_info["id"])
    limit, offset = parse_page(request.query)
    items = await context.queue.list_dead_letters(integration.id, limit, offset)
    return _json(
        {"dead_letters": [dead_letter_json(d) for d in items], "limit": limit, "offset": offset}
    )


async def _selected(
    context: AdminContext, integration_id: str, selection: Selection
) -> list[DeadLetter]:
    """Every dead letter of the integration the selection names, read page by page."""
    found: list[DeadLetter] = []
    offset = 0
    while True:
        page = await context.queue.list_dead_letters(integration_id, _LIST_CHUNK, offset)
        found.extend(d for d in page if selection.matches(d))
        if len(page) < _LIST_CHUNK:
            return found
        offset += len(page)


async def replay_dead_letters(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    integration = await _integration_or_404(context, request.match_info["id"])
    selection = parse_selection(await _body(request))
    source = await context.store.get_source(integration.source_id)
    default = source.consent_default if source is not None else ConsentDefault.DENY
    candidates = await _selected(context, integration.id, selection)
    allowed = [d for d in candidates if consent_allows(integration, d.consent, default)]
    skipped: list[dict[str, Any]] = [
        {"id": d.id, "reason": "consent"}
        for d in candidates
        if not consent_allows(integration, d.consent, default)
    ]
    if selection.ids is not None:
        known = {str(d.id) for d in candidates}
        skipped += [{"id": i, "reason": "not_found"} for i in selection.ids if i not in known]
    # The destination's own checks again: what collection set aside for a missing field must
    # not go out the same way it came in.
    destination = destinations.get(integration.vendor)
    failing = {d.id: _recheck(destination, integration, source, d) for d in allowed}
    still_failing = [d for d in allowed if failing[d.id] is not None]
    sendable = [d.id for d in allowed if failing[d.id] is None]
    replayed = (
        await context.queue.replay_dead_letters(integration.id, sendable, time.time())
        if sendable
        else []
    )
    if replayed and context.wake is not None:
        context.wake(integration.id)
    # The debugger shows them queued again until the worker has sent them.
    note_dead_letters(context, integration.id, replayed, QUEUED, "replayed from dead letters")
    for dead_letter in still_failing:
        why = f"still failing: {failing[dead_letter.id]}"
        note_dead_letters(context, integration.id, [dead_letter], DEAD_LETTERED, why)
    return _json(
        {
            "replayed": len(replayed),
            "replayed_event_ids": [d.event_id for d in replayed],
            "skipped": skipped,
            "still_failing": [
                {
                    "id": d.id,
                    "event_id": d.event_id,
                    "reason": failing[d.id],
                    "message": f"still failing: {failing[d.id]}",
                }
                for d in still_failing
            ],
        }
    )


def _recheck(
    destination: Destination, integration: Integration, source: Source | None, dead: DeadLetter
) -> str | None:
    """Why the dead letter would still be refused, or None when it may be sent."""
    if dead.payload is None:  # a backend that cannot show it: trust the operator, as before
        return None
    return destination.check_event(dead.payload, integration, source)


async def fix_dead_letter(request: web.Request) -> web.Response:
    """Correct a dead letter's fields, show the event that would be sent, and (unless a
    preview) send it: queued again under the same event_id, the dead letter gone."""
    context = request.app[CONTEXT]
    integration = await _integration_or_404(context, request.match_info["id"])
    body = parse_fix(await _body(request))
    dead = await _dead_letter_or_404(context, integration.id, request.match_info["dead_letter_id"])
    if dead.payload is None:
        raise Conflict("not_supported", "this queue cannot show the stored event")
    destination = destinations.get(integration.vendor)
    event_name, payload = destination.fix_event(dead.payload, body.changes, "changes")
    source = await context.store.get_source(integration.source_id)
    reason = destination.check_event(payload, integration, source)
    default = source.consent_default if source is not None else ConsentDefault.DENY
    answer: dict[str, Any] = {
        "dead_letter": dead_letter_json(dead),
        "event_name": event_name,
        "payload": json.loads(payload),
        "still_failing": None if reason is None else f"still failing: {reason}",
        "consent": consent_allows(integration, dead.consent, default),
        "replayed": False,
    }
    if body.preview:
        return _json(answer)
    if reason is not None:
        raise Conflict("still_failing", f"still failing: {reason}; the event stays a dead letter")
    if not answer["consent"]:
        raise Conflict("consent", "the hit's consent does not allow this integration")
    # Queued first, then the dead letter removed: a crash between the two leaves a dead letter
    # of an event already sent (TikTok drops the duplicate by event_id), never a lost event.
    fixed = NewEvent(
        integration.id, dead.event_id, event_name, dead.event_time, payload, dead.consent
    )
    await context.queue.enqueue([fixed])
    await context.queue.purge_dead_letters(integration.id, [dead.id])
    if context.wake is not None:
        context.wake(integration.id)
    note_dead_letters(context, integration.id, [dead], QUEUED, "replayed after a fix")
    answer["replayed"] = True
    return _json(answer)


async def _dead_letter_or_404(
    context: AdminContext, integration_id: str, dead_letter_id: str
) -> DeadLetter:
    found = await _selected(context, integration_id, Selection(ids=(dead_letter_id,)))
    if not found:
        raise NotFound("dead letter", dead_letter_id)
    return found[0]


async def purge_dead_letters(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    integration = await _integration_or_404(context, request.match_info["id"])
    raw = await request.read()
    if raw.strip():
        data = parse_json(raw)
    else:
        data = selection_from_query(request.query, request.query.getall("ids", []))
    selection = parse_selection(data)
    if selection.everything:
        purged = await context.queue.purge_dead_letters(integration.id, None)
    else:
        ids = [d.id for d in await _selected(context, integration.id, selection)]
        purged = await context.queue.purge_dead_letters(integration.id, ids) if ids else 0
    return _json({"purged": purged})
