"""Re-processing: plan an integration's stored raw hits again with its current settings.

    POST /v1/admin/integrations/{id}/reprocess  {"since", "until", "dry_run"}

After a mapping change, the hits of a time range are planned again as collection planned them
(the same event_id, event time, click ids, cookies and identity hashes, which the raw record
kept), with the integration's current mapping and consent categories. `dry_run` (the default)
only counts; `"dry_run": false` queues the events.

Event ids are kept. TikTok drops an event whose event_id and event name it saw in the last 48
hours, so a re-sent event arrives only when its event name changed (the mapping sent it as the
wrong event) or it never reached TikTok; a new event_id would instead count every conversion
twice. So events already delivered under the same event name are skipped (TikTok would drop
them, or count them twice after 48 hours), and so are events still waiting in the queue (they
go out as they were). The hits come from the hit log, which keeps them at least as long as
the debugger's window (`GATEWAY_LEDGER_RETENTION_HOURS`); what became of each is the debugger's
record of it (the integration's claims, requests and failures in the ledger). Hits received
before the integration existed are planned too: that is how an integration added later gets a
time range of the retained log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.admin.context import AdminContext
from gateway.admin.events import records_of
from gateway.admin.schema import _instant, iso_utc, parse_json
from gateway.core.errors import Invalid, NotFound
from gateway.core.models import Integration, NewEvent, Source
from gateway.core.validation import expect
from gateway.deliver.consumers import created_at
from gateway.deliver.record import UnreadableRecord, plan_for, read_record
from gateway.ledger.base import (
    DELIVERED,
    DENIED,
    NOT_SENT,
    PAUSED,
    QUEUED,
    REJECTED,
    RETRYING,
    Failure,
)
from gateway.log.base import LogEntry

# Hits one call plans at most: a wider range is refused (narrow it), never half-queued.
REPROCESS_MAX = 10_000
# Statuses of an event still in the queue: it goes out as it was stored.
_PENDING = frozenset({QUEUED, RETRYING, PAUSED, REJECTED})
COUNTS = (
    "hits",  # raw hits of the integration in the range
    "queue",  # events queued (or that would be)
    "skipped_consent",  # the hit's consent does not allow the integration (now)
    "rejected",  # the destination refuses the event (e.g. a purchase without value)
    "skipped_delivered",  # delivered under the same event name: TikTok would drop it
    "skipped_pending",  # still in the queue
    "not_sendable",  # identify hits, and hits the destination never sends
)


@dataclass(frozen=True, slots=True)
class StoredHit:
    """A hit of the log, and what became of it for the integration."""

    event_id: str
    raw: str  # the log record's JSON
    tiktok_event: str | None  # the destination's event name it was sent as (None: not sent)
    status: str | None  # None: the integration never read it (see `_stored_hits`)
    received_at: float


@dataclass(slots=True)
class Replanned:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    events: list[NewEvent] = field(default_factory=list)


def add_reprocess(app: web.Application, context: AdminContext, prefix: str) -> None:
    async def reprocess(request: web.Request) -> web.Response:
        integration = await context.store.get_integration(request.match_info["id"])
        if integration is None:
            raise NotFound("integration", request.match_info["id"])
        since, until, dry_run = parse_reprocess(parse_json(await request.read()))
        stored = await _stored_hits(context, integration, since, until)
        complete = len(stored) <= REPROCESS_MAX
        if not complete and not dry_run:
            raise Invalid(
                "too_many_hits",
                f"more than {REPROCESS_MAX} hits in the range: re-process a shorter range",
                "until",
            )
        source = await context.store.get_source(integration.source_id)
        replanned = replan(stored[:REPROCESS_MAX], integration, source)
        if not dry_run and replanned.events:
            await context.queue.enqueue(replanned.events)
            now = time.time()
            context.ledger.note(
                [
                    Failure(integration.id, e.event_id, QUEUED, _REQUEUED, None, 0, now, now)
                    for e in replanned.events
                ]
            )
            if context.wake is not None:
                context.wake(integration.id)
        return web.json_response(
            {
                "integration_id": integration.id,
                "since": iso_utc(since),
                "until": iso_utc(until),
                "dry_run": dry_run,
                "complete": complete,  # False: more hits than one call plans (dry run only)
                "retention_hours": context.settings.ledger_retention_hours,
                "counts": replanned.counts,
                "event_ids": [e.event_id for e in replanned.events[:100]],
            }
        )

    app.router.add_post(f"{prefix}/integrations/{{id}}/reprocess", reprocess)


async def _stored_hits(
    context: AdminContext, integration: Integration, since: float, until: float
) -> list[StoredHit]:
    """The source's hits of the range from the hit log, each with what the integration's
    debugger record says became of it (an integration added since never saw the older ones)."""
    entries = await context.queue.hits_between(
        integration.source_id, since, until, REPROCESS_MAX + 1
    )
    known = await _statuses(context, integration, entries)
    created = created_at(integration) or 0.0
    stored = []
    for entry in entries:
        event_id = entry.event_id or ""
        status, tiktok_event = known.get(event_id, (None, None))
        if status is None:
            # Not read by it: not yet (it will go out with the current mapping anyway), or
            # received before the integration existed (re-processing is how it gets them).
            status = QUEUED if entry.received_at >= created else NEVER_READ
        stored.append(
            StoredHit(event_id, entry.data.decode(), tiktok_event, status, entry.received_at)
        )
    return stored


# The status of a hit an integration never read (received before it was made).
NEVER_READ = "never_read"
_REQUEUED = "re-processed with the current mapping"


async def _statuses(
    context: AdminContext, integration: Integration, entries: list[LogEntry]
) -> dict[str, tuple[str, str | None]]:
    """What became of the hits the integration read: the debugger's record of each (its latest
    request or failure); read and neither sent nor failed is "not sent" (consent kept it back,
    or its destination sends no such hit). A hit it never read is left out."""
    if not entries:
        return {}
    received = [e.received_at for e in entries]
    read = await context.ledger.claimed(integration.id, min(received), max(received))
    mine = [e for e in entries if e.event_id in read]
    found: dict[str, tuple[str, str | None]] = {}
    for record in await records_of(context, mine, integration.id):
        status = record["delivery"]["status"]
        if record["seq"] == 0:  # no request or failure row: read, nothing sent
            status = NOT_SENT
        found[record["event_id"]] = (status, record["tiktok_event"] if record["seq"] else None)
    return found


def parse_reprocess(data: Any) -> tuple[float, float, bool]:
    """`since` and `until` (ISO 8601, since before until), `dry_run` (default true)."""
    obj = expect(data, dict, "a JSON object", "the body")
    unknown = sorted(set(obj) - {"since", "until", "dry_run"})
    if unknown:
        raise Invalid("unknown_field", f"{unknown[0]} is not a re-process field", unknown[0])
    for name in ("since", "until"):
        if name not in obj:
            raise Invalid("missing_field", f"{name} is required", name)
    since, until = _instant(obj["since"], "since"), _instant(obj["until"], "until")
    if until <= since:
        raise Invalid("invalid_value", "until must be later than since", "until")
    dry_run = obj.get("dry_run", True)
    if not isinstance(dry_run, bool):
        raise Invalid("invalid_type", "dry_run must be true or false", "dry_run")
    return since, until, dry_run


def replan(stored: list[StoredHit], integration: Integration, source: Source | None) -> Replanned:
    """Plan each stored hit again for the integration, with its current settings; no I/O."""
    out = Replanned()
    for item in stored:
        out.counts["hits"] += 1
        _replan_one(item, integration, source, out)
    return out


def _replan_one(
    item: StoredHit,
    integration: Integration,
    source: Source | None,
    out: Replanned,
) -> None:
    try:
        read = read_record(item.raw.encode(), item.event_id)
    except UnreadableRecord:
        out.counts["not_sendable"] += 1
        return
    if source is None:
        out.counts["skipped_consent"] += 1
        return
    planned = plan_for(read, integration, source, item.received_at, None, routed_only=False)
    event = planned.event
    if event is None:
        denied = planned.decision == DENIED
        out.counts["skipped_consent" if denied else "not_sendable"] += 1
        return
    if planned.rejected is not None:
        out.counts["rejected"] += 1
        return
    if item.status in _PENDING:
        out.counts["skipped_pending"] += 1
        return
    if item.status == DELIVERED and item.tiktok_event == event.event_name:
        out.counts["skipped_delivered"] += 1
        return
    out.counts["queue"] += 1
    out.events.append(event)
