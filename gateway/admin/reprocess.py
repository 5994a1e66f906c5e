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
go out as they were). Only the ledger's records are read: raw hits are kept as long as the
ledger keeps records (`GATEWAY_LEDGER_RETENTION_HOURS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from gateway import destinations
from gateway.admin.context import AdminContext
from gateway.admin.schema import _instant, iso_utc, parse_json
from gateway.collect.route import consent_allows
from gateway.core.errors import Invalid, NotFound
from gateway.core.hit import Hit
from gateway.core.identity import Identity
from gateway.core.models import Integration, NewEvent, Source
from gateway.core.validation import expect
from gateway.destinations.base import Destination, HitContext, Rejected
from gateway.ledger.base import (
    DELIVERED,
    PAUSED,
    QUEUED,
    REJECTED,
    RETRYING,
    Observation,
    RawHit,
    StoredHit,
    explain_consent,
    hit_summary,
)

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


@dataclass(slots=True)
class Replanned:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    events: list[NewEvent] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)


def add_reprocess(app: web.Application, context: AdminContext, prefix: str) -> None:
    async def reprocess(request: web.Request) -> web.Response:
        integration = await context.store.get_integration(request.match_info["id"])
        if integration is None:
            raise NotFound("integration", request.match_info["id"])
        since, until, dry_run = parse_reprocess(parse_json(await request.read()))
        stored = await context.ledger.raw_hits(integration.id, since, until, REPROCESS_MAX + 1)
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
            context.ledger.observe(replanned.observations)
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
    destination = destinations.get(integration.vendor)
    out = Replanned()
    for item in stored:
        out.counts["hits"] += 1
        _replan_one(item, integration, source, destination, out)
    return out


def _replan_one(
    item: StoredHit,
    integration: Integration,
    source: Source | None,
    destination: Destination,
    out: Replanned,
) -> None:
    raw = json.loads(item.raw)
    resolved = raw.get("resolved")
    decoded = _decoded_hit(raw.get("hit"))
    if resolved is None or decoded is None:  # an identify hit: nothing to send
        out.counts["not_sendable"] += 1
        return
    hit, identity = decoded
    consent = hit.context.consent if hit.context else None
    if source is None or not consent_allows(integration, consent, source.consent_default):
        out.counts["skipped_consent"] += 1
        return
    sendable = destination.sendable(hit, integration)
    if sendable is None:
        out.counts["not_sendable"] += 1
        return
    context = HitContext(
        event_id=item.event_id,
        event_time=int(resolved["event_time"]),
        anonymous_id=resolved.get("anonymous_id"),
        ttp=resolved.get("ttp"),
        ttclid=resolved.get("ttclid"),
        ip=resolved.get("ip"),
        user_agent=resolved.get("user_agent"),
        locale=resolved.get("locale"),
        identity=identity.filled_from(_identity(resolved.get("identity"))),
    )
    result = destination.transform(sendable, context, integration, source)
    if isinstance(result, Rejected):
        out.counts["rejected"] += 1
        return
    if item.status in _PENDING:
        out.counts["skipped_pending"] += 1
        return
    if item.status == DELIVERED and item.tiktok_event == result.event_name:
        out.counts["skipped_delivered"] += 1
        return
    out.counts["queue"] += 1
    payload = msgspec.json.encode(result.event)
    out.events.append(
        NewEvent(
            integration.id, item.event_id, result.event_name, context.event_time, payload, consent
        )
    )
    decision, why = explain_consent(integration, consent, source.consent_default)
    page = hit.context.page if hit.context else None
    from_server = bool((raw.get("request") or {}).get("from_server"))
    summary = hit_summary(
        hit.type, hit.event, source.id, page.url if page else None, consent, from_server
    )
    out.observations.append(
        Observation(
            event_id=item.event_id,
            integration_id=integration.id,
            source_id=source.id,
            hit=summary,
            decision=decision,
            decision_reason=why,
            tiktok_event=result.event_name,
            payload=payload,
            status=QUEUED,
            reason="re-processed with the current mapping",
            received_at=item.received_at,  # stays in its time range (and re-processable)
            user_id_known=context.identity.user_id_hash is not None,
            raw=RawHit(item.raw.encode),  # kept as read, so the hit stays re-processable
        )
    )


def _decoded_hit(data: Any) -> tuple[Hit, Identity] | None:
    """The stored hit without its hashed traits and user id, and the identity they make."""
    if not isinstance(data, dict):
        return None
    data = dict(data)
    traits = data.pop("traits", None)
    user_id_hash = data.pop("user_id", None)
    context = data.get("context")
    context_traits = None
    if isinstance(context, dict):
        context = dict(context)
        context_traits = context.pop("traits", None)
        data["context"] = context
    try:
        hit = msgspec.json.decode(msgspec.json.encode(data), type=Hit)
    except msgspec.ValidationError:
        return None
    if hit.type == "identify":
        return None
    # The hit's own traits win over the identity cookie's, context.traits first (as collected).
    identity = _identity(context_traits).filled_from(_identity(traits))
    if isinstance(user_id_hash, str):
        identity = Identity(user_id_hash=user_id_hash).filled_from(identity)
    return hit, identity


def _identity(hashes: Any) -> Identity:
    """An identity from `hashed_identity`'s JSON (hashes only)."""
    if not isinstance(hashes, dict):
        return Identity()

    def text(name: str) -> str | None:
        value = hashes.get(name)
        return value if isinstance(value, str) else None

    def many(name: str) -> tuple[str, ...]:
        value = hashes.get(name)
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

    return Identity(
        user_id_hash=text("user_id"),
        email_hashes=many("email"),
        phone_hashes=many("phone"),
        first_name=text("first_name"),
        last_name=text("last_name"),
        city=text("city"),
        state=text("state"),
        country=text("country"),
        zip_code=text("zip_code"),
    )
