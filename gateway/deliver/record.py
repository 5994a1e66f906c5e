"""A hit log record read back, and planned for one integration: delivery's half of collection.

Collection appends each hit once (`gateway/collect/rawhit.py` renders the record): the hit as
decoded, its traits and user id already hashed, the request's facts, and what collection
resolved for it (event id and time, cookies, click id, the identity cookie's hashes). Every
integration of the source reads the same record and decides here, with its own settings, whether
and what to send: consent, whether its destination sends that kind of hit, and the transform.
Re-processing (`admin/reprocess.py`) plans stored records the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from gateway import destinations
from gateway.core.hit import Context, Hit
from gateway.core.identity import Identity
from gateway.core.models import Integration, NewEvent, Source
from gateway.destinations.base import HitContext, Rejected
from gateway.ledger.base import (
    DEAD_LETTERED,
    DENIED,
    GRANTED,
    IDENTIFIED,
    NO_INTEGRATION,
    NOT_SENT,
    QUEUED,
    Observation,
    consent_decision,
    explain_consent,
    hashed_identity,
    hit_summary,
)


class _Request(msgspec.Struct):
    from_server: bool = False
    # The integrations enabled when the hit came (None: a record that does not say).
    integrations: list[str] | None = None


class _Hashes(msgspec.Struct):
    """Hashes as a record holds them (`ledger.base.hashed_identity`'s shape)."""

    user_id: str | None = None
    email: list[str] | None = None
    phone: list[str] | None = None
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    zip_code: str | None = None

    def identity(self) -> Identity:
        return Identity(
            user_id_hash=self.user_id,
            email_hashes=tuple(self.email or ()),
            phone_hashes=tuple(self.phone or ()),
            first_name=self.first_name,
            last_name=self.last_name,
            city=self.city,
            state=self.state,
            country=self.country,
            zip_code=self.zip_code,
        )


# The hit as a record stores it, decoded in one pass straight into the structs delivery plans
# with: the same fields as the native protocol's `Hit`, but `traits`, `context.traits` and
# `user_id` hold hashes, and `type` is any string (Segment's alias, group and screen calls keep
# their own type, which the native schema does not take from a client). The field overrides
# narrow nothing a reader uses: the traits are replaced by None before the hit leaves here.
class _StoredContext(Context, omit_defaults=True):
    traits: _Hashes | None = None  # type: ignore[assignment]


class _StoredHit(Hit, omit_defaults=True):
    type: str | None = None  # type: ignore[assignment]
    traits: _Hashes | None = None  # type: ignore[assignment]
    context: _StoredContext | None = None


class _Resolved(msgspec.Struct):
    event_id: str
    event_time: int
    anonymous_id: str | None = None
    ttp: str | None = None
    ttclid: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    locale: str | None = None
    identity: _Hashes | None = None


class _Record(msgspec.Struct):
    hit: _StoredHit
    request: _Request = msgspec.field(default_factory=_Request)
    resolved: _Resolved | None = None


_decode_record = msgspec.json.Decoder(_Record).decode


@dataclass(frozen=True, slots=True)
class ReadHit:
    """A record as delivery plans it."""

    hit: Hit  # without traits and user id: their hashes are in `identity` / `context.identity`
    context: HitContext | None  # None: an identify hit, which teaches and sends nothing
    from_server: bool
    learned: dict[str, Any] | None  # an identify hit's hashed traits, as the debugger shows them
    user_id_known: bool  # the event's external_id starts with a user id's hash
    # The integrations enabled when the hit came: a later-enabled one does not send it.
    routed: frozenset[str] | None = None


class UnreadableRecord(ValueError):
    """A record this version cannot read (it is skipped, and said so in the log)."""


def read_record(data: bytes, event_id: str | None) -> ReadHit:
    """Decode what collection appended; UnreadableRecord when it is not a record."""
    try:
        record = _decode_record(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UnreadableRecord(str(exc)) from None
    stored = record.hit
    own = _own_identity(stored)
    hit = _without_hashes(stored)
    resolved = record.resolved
    routed = _routed(record.request)
    if resolved is None or hit.type == "identify":
        learned = hashed_identity(own)
        return ReadHit(hit, None, record.request.from_server, learned, False, routed)
    identity = own.filled_from(identity_of(resolved.identity))
    context = HitContext(
        event_id=event_id or resolved.event_id,
        event_time=resolved.event_time,
        anonymous_id=resolved.anonymous_id,
        ttp=resolved.ttp,
        ttclid=resolved.ttclid,
        ip=resolved.ip,
        user_agent=resolved.user_agent,
        locale=resolved.locale,
        identity=identity,
    )
    return ReadHit(
        hit, context, record.request.from_server, None, identity.user_id_hash is not None, routed
    )


def _own_identity(stored: _StoredHit) -> Identity:
    """The hit's own traits over the identity cookie's: context.traits first (as collected),
    and its user id's hash before everything."""
    context_traits = stored.context.traits if stored.context is not None else None
    own = identity_of(context_traits).filled_from(identity_of(stored.traits))
    if stored.user_id is not None:
        own = Identity(user_id_hash=stored.user_id).filled_from(own)
    return own


def _without_hashes(stored: _StoredHit) -> Hit:
    """The hit as delivery's destinations read it: no traits, no user id (their hashes are in
    the identity), so nothing reads a hash as a raw trait."""
    context = stored.context
    if context is not None and context.traits is not None:
        context = msgspec.structs.replace(context, traits=None)
    if stored.traits is None and stored.user_id is None and context is stored.context:
        return stored  # most hits: nothing to take out
    return msgspec.structs.replace(stored, traits=None, user_id=None, context=context)


def _routed(request: _Request) -> frozenset[str] | None:
    return None if request.integrations is None else frozenset(request.integrations)


_NOBODY = Identity()


def identity_of(hashes: _Hashes | None) -> Identity:
    """An identity from the hashes a record holds (none: nobody)."""
    return _NOBODY if hashes is None else hashes.identity()


class Planned(msgspec.Struct, frozen=True):
    """What one record means for one integration.

    `event` is what to send (`rejected` None) or to dead-letter at once (`rejected` the reason);
    no event: consent kept the hit from the integration, or it sends no such hit. Delivery
    needs only the decision; `observation()` makes what the debugger shows of it (the hit's
    summary, the consent decision and its reason, the payload) when the debugger asks.
    """

    event: NewEvent | None
    rejected: str | None
    event_id: str  # the event id the debugger shows ("" for an identify hit without one)
    decision: str  # GRANTED, DENIED or NO_INTEGRATION
    status: str
    reason: str | None
    user_id_known: bool
    read: ReadHit
    integration: Integration
    source: Source
    received_at: float

    def observation(self) -> Observation:
        hit, read = self.read.hit, self.read
        consent = hit.context.consent if hit.context else None
        if self.decision == NO_INTEGRATION:
            why = _NOT_ROUTED
        else:
            why = explain_consent(self.integration, consent, self.source.consent_default)[1]
        page = hit.context.page if hit.context else None
        summary = hit_summary(
            hit.type,
            hit.event,
            self.source.id,
            page.url if page else None,
            consent,
            read.from_server,
        )
        if read.context is None and read.learned is not None:
            summary["identity"] = read.learned
        event = self.event
        return Observation(
            event_id=self.event_id,
            integration_id=self.integration.id,
            source_id=self.source.id,
            hit=summary,
            decision=self.decision,
            decision_reason=why,
            tiktok_event=event.event_name if event else None,
            payload=event.payload if event else None,
            status=self.status,
            reason=self.reason,
            received_at=self.received_at,
            user_id_known=self.user_id_known,
        )


_NOT_ROUTED = "the integration was not enabled when the hit came"


def plan_for(
    read: ReadHit,
    integration: Integration,
    source: Source,
    received_at: float,
    event_id: str | None,
    *,
    routed_only: bool = True,
) -> Planned:
    """Decide, for one integration, what the record becomes (no I/O).

    With `routed_only` (delivery), a hit that came while the integration was not enabled is
    not its own; re-processing a range on an operator's request plans those too.
    """
    hit = read.hit
    consent = hit.context.consent if hit.context else None
    decision = consent_decision(integration, consent, source.consent_default)
    shown_id = read.context.event_id if read.context else (event_id or "")
    if routed_only and read.routed is not None and integration.id not in read.routed:
        # Disabled when the hit came, as collection's routing table said: not this one's hit.
        decision = NO_INTEGRATION
    event: NewEvent | None = None
    rejected: str | None = None
    status, reason = NOT_SENT, ("consent" if decision == DENIED else None)
    if read.context is None:
        if decision == GRANTED:
            status, reason = IDENTIFIED, "identify: later events of this visitor carry its traits"
    elif decision == GRANTED:
        destination = destinations.get(integration.vendor)
        sendable = destination.sendable(hit, integration)
        if sendable is not None:
            result = destination.transform(sendable, read.context, integration, source)
            event = NewEvent(
                integration_id=integration.id,
                event_id=read.context.event_id,
                event_name=result.event_name,
                event_time=read.context.event_time,
                payload=msgspec.json.encode(result.event),
                consent=consent,
            )
            if isinstance(result, Rejected):
                rejected = result.reason
                status, reason = DEAD_LETTERED, result.reason
            else:
                status, reason = QUEUED, None
    return Planned(
        event,
        rejected,
        shown_id,
        decision,
        status,
        reason,
        read.user_id_known,
        read,
        integration,
        source,
        received_at,
    )
