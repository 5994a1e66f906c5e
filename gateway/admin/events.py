"""The debugger's records, made from what is kept anyway: nothing is stored per event for it.

A record is one hit as one integration saw it:

    the hit as received       the hit log's record (traits hashed, the request's facts)
    consent and the payload   the integration's current routing, planned as delivery plans it
                              (`deliver.record.plan_for`: consent, the transform)
    what became of it         the ledger's rows of the integration: the latest request that
                              carried the event (its status and answer, and the payload as
                              sent, taken from the request's stored body), or the latest
                              failure row, whichever came last; neither: "queued" when there
                              is something to send (not read yet, or read and in flight),
                              else what planning says (not sent, identified)

A source without an integration (or a hit that came while none was enabled) shows one record
without an integration. Test sends (never hits) come from their own rows.

Each record has a position (`seq`): the ledger row that last changed it times `SPAN`, plus its
index in that row (a batch's events in body order, a claim's in the order read). The live view
tails rows and shows each row's records in that order, so a position says exactly where a
client stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway import destinations
from gateway.admin.context import AdminContext
from gateway.admin.schema import iso_utc as iso
from gateway.core.models import Integration, Source
from gateway.deliver.record import Planned, ReadHit, UnreadableRecord, plan_for, read_record
from gateway.destinations.base import Destination
from gateway.ledger.base import (
    BATCH,
    GRANTED,
    NO_INTEGRATION,
    NOT_SENT,
    QUEUED,
    TEST,
    Change,
    Filters,
    hit_summary,
)
from gateway.log.base import LogEntry

# Positions per ledger row: more than any request or read holds (TikTok takes 1,000 events).
SPAN = 4096
# A replayed or fixed event is queued again with a new receive time: batches sent since its
# note are looked at from this long before it.
_REQUEUED_SLACK_S = 60.0


@dataclass(slots=True)
class _Shown:
    """A record being made, and what finding its delivery needs."""

    record: dict[str, Any]
    integration_id: str | None
    event_id: str
    received_at: float
    sendable: bool  # planning made an event of it (its state is in batches or failures)


@dataclass(slots=True)
class _Sent:
    """An event as a batch carried it."""

    batch: Change
    index: int
    payload: dict[str, Any]


@dataclass(slots=True)
class _Sources:
    """Sources and their integrations, read once per call."""

    context: AdminContext
    sources: dict[str, Source | None] = field(default_factory=dict)
    integrations: dict[str, list[Integration]] = field(default_factory=dict)

    async def get(self, source_id: str) -> tuple[Source | None, list[Integration]]:
        if source_id not in self.sources:
            self.sources[source_id] = await self.context.store.get_source(source_id)
            self.integrations[source_id] = await self.context.store.list_integrations(source_id)
        return self.sources[source_id], self.integrations[source_id]


async def records_of(
    context: AdminContext,
    entries: Sequence[LogEntry],
    only_integration: str | None = None,
    sources: _Sources | None = None,
) -> list[dict[str, Any]]:
    """The records of these log entries, in their order (each entry once per integration that
    read it, or once without one); only one integration's with `only_integration` ('': the
    records without an integration)."""
    sources = sources or _Sources(context)
    shown: list[_Shown] = []
    for entry in entries:
        source, integrations = await sources.get(entry.source_id)
        shown += _plan_entry(entry, source, integrations, only_integration)
    await _add_delivery(context, shown)
    return [s.record for s in shown]


def _plan_entry(
    entry: LogEntry,
    source: Source | None,
    integrations: list[Integration],
    only_integration: str | None,
) -> list[_Shown]:
    try:
        read = read_record(entry.data, entry.event_id)
    except UnreadableRecord:
        return []
    raw = _raw(entry.data)
    routed = []
    if source is not None:
        for integration in integrations:
            planned = plan_for(read, integration, source, entry.received_at, entry.event_id)
            if planned.decision != NO_INTEGRATION:
                routed.append((integration.id, planned))
    if not routed:
        return [_unrouted_record(read, entry, raw)] if only_integration in (None, "") else []
    return [
        _planned_record(planned, entry, raw)
        for integration_id, planned in routed
        if only_integration is None or integration_id == only_integration
    ]


def _raw(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _planned_record(planned: Planned, entry: LogEntry, raw: Any) -> _Shown:
    seen = planned.observation()
    event = planned.event
    record = _record(
        event_id=seen.event_id,
        integration_id=seen.integration_id,
        source_id=seen.source_id,
        event=seen.hit.get("event"),
        tiktok_event=seen.tiktok_event,
        received_at=entry.received_at,
        hit=seen.hit,
        raw=raw,
        consent={"decision": seen.decision, "reason": seen.decision_reason},
        payload=json.loads(event.payload) if event is not None else None,
        delivery=_delivery(seen.status, 0, seen.reason, None, entry.received_at),
    )
    sendable = event is not None
    return _Shown(record, seen.integration_id, seen.event_id, entry.received_at, sendable)


def _unrouted_record(read: ReadHit, entry: LogEntry, raw: Any) -> _Shown:
    hit = read.hit
    consent = hit.context.consent if hit.context else None
    page = hit.context.page if hit.context else None
    summary = hit_summary(
        hit.type, hit.event, entry.source_id, page.url if page else None, consent, read.from_server
    )
    if read.learned is not None:
        summary["identity"] = read.learned
    event_id = read.context.event_id if read.context else (entry.event_id or "")
    record = _record(
        event_id=event_id,
        integration_id=None,
        source_id=entry.source_id,
        event=hit.event,
        tiktok_event=None,
        received_at=entry.received_at,
        hit=summary,
        raw=raw,
        consent={"decision": NO_INTEGRATION, "reason": "the source has no enabled integration"},
        payload=None,
        delivery=_delivery(NOT_SENT, 0, None, None, entry.received_at),
    )
    return _Shown(record, None, event_id, entry.received_at, False)


def _record(**fields: Any) -> dict[str, Any]:
    received_at = fields.pop("received_at")
    return {"seq": 0, **fields, "received_at": iso(received_at)}


def _delivery(
    status: str, attempts: int, reason: str | None, answer: Any, updated_at: float | None
) -> dict[str, Any]:
    return {
        "status": status,
        "attempts": attempts,
        "reason": reason,
        "answer": answer,
        "updated_at": iso(updated_at),
    }


async def _add_delivery(context: AdminContext, shown: list[_Shown]) -> None:
    """Fill in what became of each sendable record, integration by integration."""
    by_integration: dict[str, list[_Shown]] = {}
    for item in shown:
        if item.sendable and item.integration_id:
            by_integration.setdefault(item.integration_id, []).append(item)
    for integration_id, items in by_integration.items():
        await _deliveries(context, integration_id, items)


async def _deliveries(context: AdminContext, integration_id: str, items: list[_Shown]) -> None:
    ledger = context.ledger
    destination = await _destination_of(context, integration_id)
    received = [i.received_at for i in items]
    failed = await ledger.failures(integration_id, [i.event_id for i in items])
    batches = await ledger.batches(integration_id, min(received), max(received))
    sent = _carried(destination, batches)
    requeued = [f.at for f in failed.values() if f.status == QUEUED]
    if requeued:  # queued again under a new receive time: look at what went since
        later = await ledger.batches(integration_id, min(requeued) - _REQUEUED_SLACK_S, 2e10)
        for event_id, carried in _carried(destination, later).items():
            if event_id not in sent or sent[event_id].batch.seq < carried.batch.seq:
                sent[event_id] = carried
    for item in items:
        _apply(item, sent.get(item.event_id), failed.get(item.event_id))


def _carried(destination: Destination | None, batches: Iterable[Change]) -> dict[str, _Sent]:
    """event_id -> the latest of these batches that carried it (batches come newest first)."""
    out: dict[str, _Sent] = {}
    for batch in batches:
        for index, payload in enumerate(_events_in(destination, batch.body)):
            event_id = payload.get("event_id")
            if isinstance(event_id, str) and event_id not in out:
                out[event_id] = _Sent(batch, index, payload)
    return out


def _events_in(destination: Destination | None, body: bytes | None) -> list[dict[str, Any]]:
    """The events of a stored request body, in order (none when its integration is gone)."""
    if destination is None or body is None:
        return []
    return destination.events_in_body(body)


async def _destination_of(context: AdminContext, integration_id: str) -> Destination | None:
    integration = await context.store.get_integration(integration_id)
    return None if integration is None else destinations.get(integration.vendor)


def _apply(item: _Shown, sent: _Sent | None, failed: Change | None) -> None:
    record = item.record
    if sent is not None and (failed is None or sent.batch.seq > failed.seq):
        batch = sent.batch
        record["seq"] = batch.seq * SPAN + min(sent.index, SPAN - 1)
        record["payload"] = sent.payload
        if isinstance(sent.payload.get("event"), str):
            record["tiktok_event"] = sent.payload["event"]
        record["delivery"] = _delivery(
            batch.status or QUEUED, batch.attempts, batch.reason, batch.answer, batch.at
        )
    elif failed is not None:
        record["seq"] = failed.seq * SPAN
        # A dead letter says why in words: the answer is that of the request that carried it.
        answer = failed.answer or (sent.batch.answer if sent is not None else None)
        if sent is not None:
            record["payload"] = sent.payload
        record["delivery"] = _delivery(
            failed.status or QUEUED, failed.attempts, failed.reason, answer, failed.at
        )
    else:
        record["delivery"]["status"] = QUEUED


def test_record(change: Change) -> dict[str, Any]:
    """A test send's record, from its own row."""
    hit = change.hit or {}
    return {
        "seq": change.seq * SPAN,
        "event_id": change.event_ids[0] if change.event_ids else "",
        "integration_id": change.integration_id or None,
        "source_id": change.source_id,
        "event": hit.get("event"),
        "tiktok_event": hit.get("event"),
        "hit": hit,
        "raw": None,
        "consent": {"decision": GRANTED, "reason": "a test send from the Management API"},
        "payload": None,
        "delivery": _delivery(
            change.status or QUEUED, change.attempts, change.reason, change.answer, change.at
        ),
        "received_at": iso(change.at),
    }


def matches(record: Mapping[str, Any], filters: Filters) -> bool:
    if filters.source_id and record.get("source_id") != filters.source_id:
        return False
    if filters.integration_id and record.get("integration_id") != filters.integration_id:
        return False
    if filters.event_id and record.get("event_id") != filters.event_id:
        return False
    names = (record.get("event"), record.get("tiktok_event"))
    return not filters.event or filters.event in names


# --- the live view: the records of ledger rows ----------------------------------------------


async def records_of_change(
    context: AdminContext, change: Change, filters: Filters, sources: _Sources
) -> list[dict[str, Any]]:
    """The records a ledger row is about, each at its position in the row."""
    if change.kind == TEST:
        record = test_record(change)
        return [record] if matches(record, filters) else []
    source_id = change.source_id
    destination: Destination | None = None
    if source_id is None or change.kind == BATCH:
        integration = await context.store.get_integration(change.integration_id)
        if integration is None:
            return []
        source_id = source_id or integration.source_id
        destination = destinations.get(integration.vendor)
    if filters.source_id and filters.source_id != source_id:
        return []
    if change.kind == BATCH:
        event_ids = [str(e.get("event_id")) for e in _events_in(destination, change.body)]
    else:
        event_ids = change.event_ids
    index = {event_id: i for i, event_id in reversed(list(enumerate(event_ids)))}
    wanted = [e for e in index if not filters.event_id or e == filters.event_id]
    if not wanted:
        return []
    entries = await context.queue.log.find_many(source_id, wanted, change.received)
    out = []
    for record in await records_of(context, _latest(entries), change.integration_id, sources):
        if not matches(record, filters):
            continue
        position = change.seq * SPAN + min(index.get(record["event_id"], 0), SPAN - 1)
        out.append({**record, "seq": position})
    out.sort(key=lambda r: int(r["seq"]))
    return out


def _latest(entries: list[LogEntry]) -> list[LogEntry]:
    """One entry per event id: a hit sent twice shows as its latest."""
    by_event: dict[str | None, LogEntry] = {}
    for entry in entries:
        by_event[entry.event_id] = entry
    return list(by_event.values())


async def changed_after(
    context: AdminContext, position: int, filters: Filters, limit: int
) -> list[dict[str, Any]]:
    """Records of the rows after `position` (a record's `seq`), oldest first, whole rows at a
    time until about `limit` records (a row's records are never split between two calls)."""
    sources = _Sources(context)
    out: list[dict[str, Any]] = []
    # From the row `position` is in: a client may have stopped in the middle of it.
    after = max(position // SPAN - 1, 0)
    while len(out) < limit:
        changes = await context.ledger.changes(after, _ROWS_PER_READ, filters.integration_id)
        if not changes:
            break
        for change in changes:
            records = await records_of_change(context, change, filters, sources)
            out += [r for r in records if int(r["seq"]) > position]
            after = change.seq
            if len(out) >= limit:
                break
    return out


_ROWS_PER_READ = 50


def cursor_of(last_seq: int) -> int:
    """The position after every record of the rows up to `last_seq`."""
    return last_seq * SPAN + SPAN - 1
