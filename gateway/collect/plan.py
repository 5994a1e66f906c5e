"""Planning a request's hits: identity, consent, click ids, event times, and per integration
what to store or set aside and what the ledger records; no I/O here.

Protocol-neutral: every collection protocol decodes its requests into hits and hands them here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import msgspec

from gateway import destinations
from gateway.collect import cookies
from gateway.collect.rawhit import RawRequest, raw_hit
from gateway.collect.route import Route, consent_allows
from gateway.core import ids
from gateway.core.errors import HitError
from gateway.core.hit import Hit
from gateway.core.identity import Identity, traits_identity
from gateway.core.models import NewEvent
from gateway.destinations.base import HitContext, Rejected
from gateway.ledger.base import (
    DEAD_LETTERED,
    DENIED,
    IDENTIFIED,
    NO_INTEGRATION,
    NOT_SENT,
    QUEUED,
    Observation,
    explain_consent,
    hashed_identity,
    hit_summary,
)

# Browser hits may be a little ahead of or behind the server; server sources may backfill.
MAX_FUTURE_SKEW_S = 300


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
    identity_cookie_present: bool = False  # a `_dfuser` came (its value is never shown)


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
    # The request's facts the records show with each raw hit (cookies set are added later).
    request: RawRequest | None = None


def plan_hits(hits: list[Hit], route: Route, facts: RequestFacts, max_age_days: int) -> Plan:
    """Decide, hit by hit and integration by integration, what to store; no I/O here."""
    plan = Plan(identity=facts.identity)
    plan.ttp = facts.ttp or (None if facts.from_server else ids.new_uuid())
    plan.anonymous_id = facts.anonymous_id
    plan.request = RawRequest(
        received_at=facts.received_at,
        ip=facts.ip,
        user_agent=facts.user_agent,
        locale=facts.locale,
        from_server=facts.from_server,
        source_id=route.source.id,
        cookies_read={
            cookies.TTP: facts.ttp,
            cookies.ANONYMOUS_ID: facts.anonymous_id,
            cookies.TTCLID: facts.ttclid_cookie,
        },
        identity_cookie_present=facts.identity_cookie_present,
    )
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
        learned = _apply_identify(hit, route, plan) if allowed else None
        # Recorded too (hashed traits only), so the debugger shows what identify taught.
        _observe(hit, route, facts, hit.message_id or ids.new_event_id(), {}, plan, None, learned)
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
        destination = destinations.get(integration.vendor)
        sendable = destination.sendable(hit, integration)
        if sendable is None:  # e.g. Segment's alias, group and screen: recorded, not sent
            continue
        result = destination.transform(sendable, context, integration, route.source)
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
    _observe(hit, route, facts, context.event_id, stored, plan, context)


def _observe(
    hit: Hit,
    route: Route,
    facts: RequestFacts,
    event_id: str,
    stored: dict[str, tuple[NewEvent, str | None]],
    plan: Plan,
    context: HitContext | None,
    learned: Identity | None = None,
) -> None:
    """The ledger's records of one hit: every integration of its source, sent or not."""
    consent = hit.context.consent if hit.context else None
    page = hit.context.page if hit.context else None
    summary = hit_summary(
        hit.type, hit.event, route.source.id, page.url if page else None, consent, facts.from_server
    )
    if learned is not None:
        summary["identity"] = hashed_identity(learned)
    # Match quality tells identified visitors from anonymous ones (external_id's first entry).
    user_id_known = hit.user_id is not None or plan.identity.user_id_hash is not None
    raw = (
        raw_hit(hit, plan.request, route.source.default_phone_region, context)
        if plan.request is not None
        else None
    )

    def record(integration_id: str | None, decision: str, why: str) -> Observation:
        event, reason = stored.get(integration_id or "", (None, None))
        if event is None and learned is not None and decision != DENIED:
            status, reason = IDENTIFIED, "identify: later events of this visitor carry its traits"
        elif event is None:  # consent kept it from this integration, or there is none
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
            raw=raw,
        )

    if not route.integrations:
        plan.observed.append(record(None, NO_INTEGRATION, "the source has no enabled integration"))
    for integration in route.integrations:
        decision, why = explain_consent(integration, consent, route.source.consent_default)
        plan.observed.append(record(integration.id, decision, why))


def _apply_identify(hit: Hit, route: Route, plan: Plan) -> Identity:
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
    return learned


def _ttclid_from_page(hit: Hit) -> str | None:
    """The click id of the page URL, else of a referrer trusted for it (`referrer_trusted`)."""
    page = hit.context.page if hit.context else None
    if page is None:
        return None
    clicked = _ttclid_of(page.url)
    referrer = page.referrer
    # Most referrers hold no click id: look for one before parsing hosts to trust it.
    if (
        clicked is None
        and referrer
        and "ttclid=" in referrer
        and referrer_trusted(referrer, page.url)
    ):
        clicked = _ttclid_of(referrer)
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
