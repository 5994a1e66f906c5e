"""The event debugger's part of the Management API: hits by event, recent, live, and the match
quality of an integration. The records are made from the hit log, the integrations' routing and
the ledger's batch and failure rows (`admin/events.py`); nothing is stored per event for them.

    GET /v1/admin/events/{event_id}                      every record of one event
    GET /v1/admin/events?source_id=&integration_id=&event=&event_id=&limit=&after=
    GET /v1/admin/events/stream?(same filters)           Server-Sent Events, one per change
    GET /v1/admin/integrations/{id}/match-quality?hours=
    GET /v1/admin/integrations/{id}/timeline?hours=1|24  outcomes, batches, latency, match quality
    GET /v1/admin/refused?source_id=&limit=             requests collection refused (in memory)
    POST /v1/admin/events/search  {"q", "hours", "source_id", "integration_id", "limit"}

Search takes one term and finds it wherever the debugger keeps it: an event_id, an order_id,
an event name (the hit's or TikTok's), a ttclid, or a user: an email address or an external id
(user id), hashed here as collection hashes them and matched against the hashed payloads; a
SHA-256 the operator already has matches as is. It is a POST so the term (perhaps an email
address) travels in a body, which no access log or proxy log records, never in the URL.

The stream tails the ledger's rows (one `seq` counter for every process sharing the data
directory: a claim of an integration's reads, a request sent, a failure), so it shows what any
`--workers` process read or delivered; a record's `seq` is its position in that order. It is
authenticated like every admin call, with the Bearer header: the UI reads it with `fetch` and a
stream reader rather than `EventSource` (which cannot send headers), so the admin token never
appears in a URL.
A client that reconnects sends `Last-Event-ID` (or `after`) and misses nothing still retained.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from gateway import destinations
from gateway.admin.context import AdminContext
from gateway.admin.events import changed_after, cursor_of, matches, records_of, test_record
from gateway.admin.schema import int_param, iso_utc, parse_json
from gateway.core.errors import AdminError, Invalid, NotFound
from gateway.core.hashing import hash_email, hash_external_id
from gateway.core.models import DeadLetter, Integration
from gateway.core.validation import expect
from gateway.destinations.base import Answer
from gateway.ledger.base import (
    DELIVERED,
    MATCH_SIGNALS,
    OUTCOMES,
    REJECTED,
    Failure,
    Filters,
    TestSend,
    TimelineBucket,
    reply,
)
from gateway.ledger.requests import RequestFigures

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
POLL_S = 0.25  # how often a stream looks for new changes
HEARTBEAT_S = 15.0  # a comment line that keeps proxies from closing an idle stream
_STREAM_BATCH = 200
MAX_SEQ = 2**62  # what SQLite's and Redis's integers hold with room to spare
LAST_EVENT_ID = "Last-Event-ID"
_ASCII_NUMBER = re.compile(r"[0-9]{1,19}")


class _NoRecord(NotFound):
    def __init__(self, message: str) -> None:
        AdminError.__init__(self, "not_found", message)


_STREAMS_STOP: Final = web.AppKey("debugger_streams_stop", asyncio.Event)


def add_debugger(app: web.Application, context: AdminContext, prefix: str) -> None:
    """Route the debugger's calls on the admin app; open streams end when the app shuts down."""
    stop = asyncio.Event()
    app[_STREAMS_STOP] = stop

    async def end_streams(_app: web.Application) -> None:
        stop.set()

    # on_shutdown runs before aiohttp waits for handlers: streams must not hold shutdown up.
    app.on_shutdown.append(end_streams)

    async def list_events(request: web.Request) -> web.Response:
        filters, limit, after = parse_event_query(request.query)
        if after is None:
            cursor = cursor_of(await context.ledger.last_seq())
            records, _ = await recent(context, filters, limit)
            return web.json_response({"records": records, "cursor": cursor})
        records = (await changed_after(context, after, filters, limit))[:limit]
        cursor = records[-1]["seq"] if records else after
        return web.json_response({"records": records, "cursor": cursor})

    async def get_event(request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        records = await _records_of_event(context, event_id)
        if not records:
            hours = context.settings.ledger_retention_hours
            raise _NoRecord(f"no record of event {event_id!r} in the last {hours} hours")
        for record in records:
            record["request"] = await _request_preview(context, record)
        return web.json_response({"event_id": event_id, "records": records})

    async def stream_events(request: web.Request) -> web.StreamResponse:
        filters, _, after = parse_event_query(request.query)
        if after is None:
            after = _last_event_id(request.headers)
        cursor = after if after is not None else cursor_of(await context.ledger.last_seq())
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            }
        )
        await response.prepare(request)
        try:
            with context.metrics.admin_streams_open.track_inprogress():
                await _stream(request, response, filters, cursor)
        except ConnectionError:
            pass  # the client went away: nothing to answer
        return response

    async def _stream(
        request: web.Request, response: web.StreamResponse, filters: Filters, cursor: int
    ) -> None:
        await response.write(_sse("ready", {"cursor": cursor}, None))
        beat_at = time.monotonic() + HEARTBEAT_S
        # aiohttp does not cancel a handler whose client has gone, and writing to a closed
        # connection fails only at the next heartbeat: look at the connection on every poll.
        while not stop.is_set() and not _client_gone(request):
            records = await changed_after(context, cursor, filters, _STREAM_BATCH)
            for record in records:
                cursor = record["seq"]
                await response.write(_sse("record", record, cursor))
            if len(records) >= _STREAM_BATCH:
                continue  # behind: catch up before sleeping
            if time.monotonic() >= beat_at:
                await response.write(b": keep-alive\n\n")
                beat_at = time.monotonic() + HEARTBEAT_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)

    async def match_quality(request: web.Request) -> web.Response:
        integration_id = request.match_info["id"]
        if await context.store.get_integration(integration_id) is None:
            raise NotFound("integration", integration_id)
        retention = context.settings.ledger_retention_hours
        hours = int_param(request.query, "hours", 1, retention) or retention
        since = time.time() - hours * 3600
        quality = await context.ledger.match_quality(integration_id, since)
        signals = {
            name: {
                "events": quality.counts.get(name, 0),
                "share": round(quality.counts.get(name, 0) / quality.events, 4)
                if quality.events
                else None,
            }
            for name in MATCH_SIGNALS
        }
        return web.json_response(
            {
                "integration_id": integration_id,
                "window_hours": hours,
                "since": iso_utc(since),
                "events": quality.events,
                "signals": signals,
            }
        )

    async def timeline(request: web.Request) -> web.Response:
        integration_id = request.match_info["id"]
        if await context.store.get_integration(integration_id) is None:
            raise NotFound("integration", integration_id)
        hours = _timeline_hours(request.query)
        bucket_s = TIMELINE_BUCKET_S[hours]
        count = hours * 3600 // bucket_s
        # Buckets end at the next whole bucket, so the last one is the one still filling.
        until = (int(time.time()) // bucket_s + 1) * bucket_s
        since = until - count * bucket_s
        buckets = await context.ledger.timeline(integration_id, since, bucket_s, count)
        requests = context.request_stats.buckets(integration_id, since, bucket_s, count)
        points = [
            _timeline_point(since + i * bucket_s, bucket, figures)
            for i, (bucket, figures) in enumerate(zip(buckets, requests, strict=True))
        ]
        return web.json_response(
            {
                "integration_id": integration_id,
                "hours": hours,
                "bucket_seconds": bucket_s,
                "since": iso_utc(since),
                "until": iso_utc(until),
                "outcomes": list(OUTCOMES),
                "signals": list(TIMELINE_SIGNALS),
                "totals": {name: sum(b.outcomes[name] for b in buckets) for name in OUTCOMES},
                "points": points,
            }
        )

    async def refused_requests(request: web.Request) -> web.Response:
        source_id = request.query.get("source_id") or None
        limit = int_param(request.query, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
        ring = context.refused
        found = ring.recent(source_id, limit)
        return web.json_response(
            {
                "refused": [{**r.as_json(), "at": iso_utc(r.at)} for r in found],
                # The ring is this process's memory: bounded, and empty after a restart.
                "capacity": ring.capacity,
                "total": ring.total,
            }
        )

    async def search_events(request: web.Request) -> web.Response:
        retention = context.settings.ledger_retention_hours
        search, filters, limit = parse_search(parse_json(await request.read()), retention)
        found, complete = await _search(context, search, filters, limit)
        return web.json_response(
            {
                "records": found,
                "hours": search.hours,
                "since": iso_utc(search.since),
                # False: the scan stopped at its bound before the start of the time range.
                "complete": complete,
            }
        )

    app.router.add_routes(
        [
            web.get(f"{prefix}/events", list_events),
            web.post(f"{prefix}/events/search", search_events),
            # Before {event_id}, which would otherwise take "stream" for an id.
            web.get(f"{prefix}/events/stream", stream_events),
            web.get(f"{prefix}/events/{{event_id}}", get_event),
            web.get(f"{prefix}/integrations/{{id}}/match-quality", match_quality),
            web.get(f"{prefix}/integrations/{{id}}/timeline", timeline),
            web.get(f"{prefix}/refused", refused_requests),
        ]
    )


# A timeline's window and its bucket: a minute over the last hour, ten minutes over the day.
TIMELINE_BUCKET_S: Final = {1: 60, 24: 600}
# The match keys a timeline follows (the ones an operator can act on).
TIMELINE_SIGNALS: Final = ("ttclid", "ttp", "email", "phone", "external_id_user", "ip")


async def _request_preview(context: AdminContext, record: Mapping[str, Any]) -> Any:
    """The body the destination posts for this record's event, envelope included (for TikTok:
    `event_source`, `event_source_id`, `test_event_code`), built with the integration's current
    settings; None when nothing was stored to send or the integration is gone. The access token
    travels in a header and is never part of it."""
    payload, integration_id = record.get("payload"), record.get("integration_id")
    if payload is None or not integration_id:
        return None
    integration = await context.store.get_integration(integration_id)
    if integration is None:
        return None
    source = await context.store.get_source(integration.source_id)
    destination = destinations.get(integration.vendor)
    return destination.request_body(integration, source, [json.dumps(payload).encode()])


def _timeline_hours(query: Mapping[str, str]) -> int:
    raw = query.get("hours", "1").strip()
    if raw not in ("1", "24"):
        raise Invalid("invalid_value", "hours must be 1 or 24", "hours")
    return int(raw)


def _timeline_point(at: float, bucket: TimelineBucket, figures: RequestFigures) -> dict[str, Any]:
    quality = bucket.quality
    return {
        "at": iso_utc(at),
        **bucket.outcomes,
        "requests": figures.requests,
        "batch_size_avg": round(figures.events / figures.requests, 2) if figures.requests else None,
        "batch_size_max": figures.batch_max if figures.requests else None,
        "latency_ms_avg": _ms(figures.latency_avg_s),
        "latency_ms_max": _ms(figures.latency_max_s),
        "match": {
            "events": quality.events,
            "shares": {
                name: round(quality.counts.get(name, 0) / quality.events, 4)
                if quality.events
                else None
                for name in TIMELINE_SIGNALS
            },
        },
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def failed_requests(context: AdminContext, integration_id: str) -> int:
    """How many requests the destination refused in the way that paused the integration, among
    the requests the ledger still keeps."""
    return await context.ledger.paused_batches(integration_id)


TEST_SEND = "test"  # a debugger record's `hit.type` for a Management API test send


def note_test_send(
    context: AdminContext,
    integration: Integration,
    sample: bytes,
    body: Any,
    test_event_code: str | None,
    answer: Answer,
    accepted: bool,
    now: float,
) -> str:
    """Show a test send in the debugger, marked as one; the queue's counters never see it.

    It is no hit (the log never saw it): its own row keeps the request body in the record's hit
    summary (a sample holds no personal data), and no payload, so match quality never counts it.
    """
    try:
        event = json.loads(sample)
    except ValueError:
        event = {}
    event_id = str(event.get("event_id") or f"test_{int(now * 1000)}")
    event_name = event.get("event") if isinstance(event.get("event"), str) else None
    integration_id = integration.id or None  # an unsaved form's test has no id yet
    status = DELIVERED if accepted else REJECTED
    reason = "test send accepted" if accepted else f"test send refused: {answer.describe()}"
    hit = {
        "type": TEST_SEND,
        "event": event_name,
        "source_id": integration.source_id,
        "page_url": None,
        "consent": None,
        "from_server": True,
        "test": True,
        "test_event_code": test_event_code,
        "request": body,
    }
    context.ledger.note(
        [
            TestSend(
                integration_id or "",
                integration.source_id,
                event_id,
                now,
                status,
                reason,
                reply(answer),
                hit,
            )
        ]
    )
    return event_id


SEARCH_SCAN_MAX = 100_000  # hits a search or a filtered list reads at most, per source
_SCAN_PAGE = 200  # hits per read of the log


@dataclass(frozen=True, slots=True)
class Search:
    """One box's term, and what it may be stored as."""

    text: str  # compared as typed: event_id, order_id, ttclid; event names ignore case
    hashes: frozenset[str]  # a user term hashed as collection hashes email and external_id
    hours: int
    since: float
    since_iso: str

    def matches(self, record: Mapping[str, Any]) -> bool:
        if not self.text:
            return True
        text = self.text
        if record.get("event_id") == text:
            return True
        names = (record.get("event"), record.get("tiktok_event"))
        if any(isinstance(n, str) and n.casefold() == text.casefold() for n in names):
            return True
        payload = record.get("payload") or {}
        properties = payload.get("properties") or {}
        if isinstance(properties, dict) and properties.get("order_id") == text:
            return True
        user = payload.get("user") or {}
        if not isinstance(user, dict):
            return False
        if user.get("ttclid") == text:
            return True
        return any(_values(user.get(key)) & self.hashes for key in _USER_KEYS)


_USER_KEYS = ("email", "external_id", "phone")


def _values(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()


def parse_search(data: Any, retention_hours: int) -> tuple[Search, Filters, int]:
    """The search body: `q` (up to 200 characters), `hours` (1..retention, default 24),
    `source_id`, `integration_id` and `limit` (1..1000, default 100)."""
    obj = expect(data, dict, "a JSON object", "the body")
    unknown = sorted(set(obj) - {"q", "hours", "source_id", "integration_id", "limit"})
    if unknown:
        raise Invalid("unknown_field", f"{unknown[0]} is not a search field", unknown[0])

    def text(name: str) -> str:
        value = obj.get(name) or ""
        if not isinstance(value, str):
            raise Invalid("invalid_type", f"{name} must be a string", name)
        if len(value) > 200:
            raise Invalid("invalid_value", f"{name} must be at most 200 characters", name)
        return value.strip()

    def whole(name: str, low: int, high: int, default: int) -> int:
        value = obj.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid("invalid_type", f"{name} must be a whole number", name)
        if not low <= value <= high:
            raise Invalid("invalid_value", f"{name} must be between {low} and {high}", name)
        return value

    q = text("q")
    hours = whole("hours", 1, retention_hours, min(24, retention_hours))
    limit = whole("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
    # Hashed here, never stored or logged: the raw term lives only in this request.
    hashes = {h for h in (hash_email(q), hash_external_id(q)) if h} if q else set()
    since = time.time() - hours * 3600
    search = Search(q, frozenset(hashes), hours, since, iso_utc(since) or "")
    filters = Filters(
        source_id=text("source_id") or None, integration_id=text("integration_id") or None
    )
    return search, filters, limit


async def _search(
    context: AdminContext, search: Search, filters: Filters, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """The newest matching records received in the time range, up to `limit`; False when the
    scan stopped at `SEARCH_SCAN_MAX` before the start of the range."""
    return await recent(context, filters, limit, since=search.since, keep=search.matches)


async def recent(
    context: AdminContext,
    filters: Filters,
    limit: int,
    *,
    since: float | None = None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The newest records that match, from the log (source by source, newest first) and the
    test sends; and whether the scan was complete (not cut by `SEARCH_SCAN_MAX`)."""
    found: list[dict[str, Any]] = []
    complete = True
    sources = await _source_ids(context, filters)
    for source_id in sources:
        records, whole = await _recent_of(context, source_id, filters, limit, since, keep)
        found += records
        complete = complete and whole
    for change in await context.ledger.tests(filters.event_id, MAX_LIMIT):
        record = test_record(change)
        if since is not None and change.at < since:
            continue
        if matches(record, filters) and (keep is None or keep(record)):
            found.append(record)
    found.sort(key=lambda r: (str(r["received_at"]), int(r["seq"])), reverse=True)
    return found[:limit], complete


async def _source_ids(context: AdminContext, filters: Filters) -> list[str]:
    if filters.source_id:
        return [filters.source_id]
    if filters.integration_id:
        integration = await context.store.get_integration(filters.integration_id)
        return [integration.source_id] if integration is not None else []
    return [source.id for source in await context.store.list_sources()]


async def _recent_of(
    context: AdminContext,
    source_id: str,
    filters: Filters,
    limit: int,
    since: float | None,
    keep: Callable[[Mapping[str, Any]], bool] | None,
) -> tuple[list[dict[str, Any]], bool]:
    hitlog = context.queue.log
    found: list[dict[str, Any]] = []
    before: str | None = None
    scanned = 0
    while len(found) < limit:
        if scanned >= SEARCH_SCAN_MAX:
            return found, False
        if filters.event_id:
            entries = list(reversed(await hitlog.find(source_id, filters.event_id)))
        else:
            entries = await hitlog.newest(source_id, _SCAN_PAGE, before)
        scanned += len(entries)
        if since is not None:
            entries = [e for e in entries if e.received_at >= since]
        only = filters.integration_id
        for record in await records_of(context, entries, only):
            if matches(record, filters) and (keep is None or keep(record)):
                found.append(record)
        if filters.event_id or len(entries) < _SCAN_PAGE:
            break  # all of it read (or, with `since`, all of the range)
        before = entries[-1].id
    return found, True


async def _records_of_event(context: AdminContext, event_id: str) -> list[dict[str, Any]]:
    """Every record of one event: each source's hits with that id, and test sends."""
    records: list[dict[str, Any]] = []
    for source in await context.store.list_sources():
        entries = await context.queue.log.find(source.id, event_id)
        records += await records_of(context, entries[-1:])
    records += [test_record(change) for change in await context.ledger.tests(event_id, MAX_LIMIT)]
    return records


def note_dead_letters(
    context: AdminContext,
    integration_id: str,
    dead_letters: Sequence[DeadLetter],
    status: str,
    reason: str,
) -> None:
    """Show what an operator did with dead letters (replayed, fixed, still failing) until the
    worker sends them: a failure row each, buffered."""
    now = time.time()
    context.ledger.note(
        [
            Failure(integration_id, d.event_id, status, reason, None, d.attempts, now, now)
            for d in dead_letters
        ]
    )


def parse_event_query(query: Mapping[str, str]) -> tuple[Filters, int, int | None]:
    """The filters, `limit` (1..1000, default 100) and `after` (a `seq`) of a ledger query."""

    def text(name: str) -> str | None:
        value = query.get(name, "").strip()
        if len(value) > 200:
            raise Invalid("invalid_value", f"{name} must be at most 200 characters", name)
        return value or None

    filters = Filters(
        source_id=text("source_id"),
        integration_id=text("integration_id"),
        event=text("event"),
        event_id=text("event_id"),
    )
    limit = int_param(query, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    after = int_param(query, "after", 0, MAX_SEQ)
    return filters, limit, after


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _last_event_id(headers: Mapping[str, str]) -> int | None:
    """The `seq` a reconnecting client saw last; the ids we send are plain ASCII numbers."""
    raw = headers.get(LAST_EVENT_ID, "").strip()
    if not raw:
        return None
    # str.isdigit() also takes "²" or Arabic-Indic digits, which int() then refuses or reads.
    if not _ASCII_NUMBER.fullmatch(raw) or int(raw) > MAX_SEQ:
        raise Invalid(
            "invalid_value",
            f"{LAST_EVENT_ID} must be a whole number up to {MAX_SEQ}",
            LAST_EVENT_ID,
        )
    return int(raw)


def _sse(event: str, data: Any, event_id: int | None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    # json.dumps never emits a raw newline, so the data is one `data:` line.
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()
