"""The event debugger's part of the Management API: the ledger by event, recent, live, and the
match quality of an integration.

    GET /v1/admin/events/{event_id}                      every record of one event
    GET /v1/admin/events?source_id=&integration_id=&event=&event_id=&limit=&after=
    GET /v1/admin/events/stream?(same filters)           Server-Sent Events, one per change
    GET /v1/admin/integrations/{id}/match-quality?hours=

The stream tails the ledger's `seq` (one counter for every process sharing the data directory),
so it shows what any `--workers` process collected or delivered. It is authenticated like every
admin call, with the Bearer header: the UI reads it with `fetch` and a stream reader rather
than `EventSource` (which cannot send headers), so the admin token never appears in a URL.
A client that reconnects sends `Last-Event-ID` (or `after`) and misses nothing still retained.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from gateway.admin.context import AdminContext
from gateway.admin.schema import int_param, iso_utc
from gateway.core.errors import AdminError, Invalid, NotFound
from gateway.ledger.base import MATCH_SIGNALS, Filters

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
        records = await context.ledger.records(filters, limit, after)
        cursor = records[-1]["seq"] if after is not None and records else after
        if cursor is None:
            cursor = await context.ledger.last_seq()
        return web.json_response({"records": records, "cursor": cursor})

    async def get_event(request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        records = await context.ledger.records(Filters(event_id=event_id), MAX_LIMIT)
        if not records:
            hours = context.settings.ledger_retention_hours
            raise _NoRecord(f"no record of event {event_id!r} in the last {hours} hours")
        return web.json_response({"event_id": event_id, "records": records})

    async def stream_events(request: web.Request) -> web.StreamResponse:
        filters, _, after = parse_event_query(request.query)
        if after is None:
            after = _last_event_id(request.headers)
        cursor = after if after is not None else await context.ledger.last_seq()
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
            records = await context.ledger.records(filters, _STREAM_BATCH, cursor)
            for record in records:
                cursor = record["seq"]
                await response.write(_sse("record", record, cursor))
            if len(records) == _STREAM_BATCH:
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

    app.router.add_routes(
        [
            web.get(f"{prefix}/events", list_events),
            # Before {event_id}, which would otherwise take "stream" for an id.
            web.get(f"{prefix}/events/stream", stream_events),
            web.get(f"{prefix}/events/{{event_id}}", get_event),
            web.get(f"{prefix}/integrations/{{id}}/match-quality", match_quality),
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
