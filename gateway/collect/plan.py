"""Planning a request's hits: identity, consent for cookies, click ids and event times, so each
hit can be appended to the hit log once with what collection resolved for it; no I/O here.

Protocol-neutral: every collection protocol decodes its requests into hits and hands them here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from gateway.collect import cookies
from gateway.collect.rawhit import HitHashes, RawRequest
from gateway.collect.route import Route, consent_allows
from gateway.core import ids
from gateway.core.errors import HitError
from gateway.core.hit import Hit
from gateway.core.identity import Identity
from gateway.destinations.base import HitContext
from gateway.ledger.base import Claim
from gateway.log.base import LogRecord

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
class PlannedHit:
    """One hit as the log keeps it: the hit, and what collection resolved for it (None for an
    identify hit, which sends nothing itself)."""

    hit: Hit
    event_id: str
    context: HitContext | None
    hashes: HitHashes | None = None  # its traits and user id, hashed (None: it has none)


@dataclass(slots=True)
class Plan:
    """The outcome of a request's hits: the records to append and the cookies to set."""

    hits: list[PlannedHit] = field(default_factory=list)
    identity: Identity = field(default_factory=Identity)
    identity_changed: bool = False
    any_allowed: bool = False
    ttclid_clicked: str | None = None
    ttp: str | None = None
    anonymous_id: str | None = None
    # The request's facts every record of it carries (cookies set are added before appending).
    request: RawRequest | None = None


def plan_hits(hits: list[Hit], route: Route, facts: RequestFacts, max_age_days: int) -> Plan:
    """Resolve, hit by hit, identity, cookies, click ids and event times; no I/O here.

    What to send, and to whom, is delivery's to decide (`deliver/record.py`): consent here only
    decides whether the visitor may be identified and cookied at all (any integration allowed).
    """
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
        integrations=[i.id for i in route.integrations],
    )
    for hit in hits:
        _plan_hit(hit, route, facts, plan, max_age_days)
    return plan


def _plan_hit(hit: Hit, route: Route, facts: RequestFacts, plan: Plan, max_age_days: int) -> None:
    consent = hit.context.consent if hit.context else None
    allowed = any(
        consent_allows(i, consent, route.source.consent_default) for i in route.integrations
    )
    if allowed:
        plan.any_allowed = True
    anonymous_id = hit.anonymous_id or plan.anonymous_id
    if anonymous_id is None and not facts.from_server:
        anonymous_id = ids.new_uuid()
    if plan.anonymous_id is None and not facts.from_server:
        plan.anonymous_id = anonymous_id
    hashes = HitHashes.of(hit, route.source.default_phone_region)
    if hit.type == "identify":
        if allowed:
            _apply_identify(hashes.learned() if hashes is not None else Identity(), plan)
        plan.hits.append(PlannedHit(hit, hit.message_id or ids.new_event_id(), None, hashes))
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
    plan.hits.append(PlannedHit(hit, context.event_id, context, hashes))


def _apply_identify(learned: Identity, plan: Plan) -> None:
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


def no_integration(plan: Plan, route: Route, records: list[LogRecord]) -> Claim:
    """The debugger's row for hits whose source has no enabled integration: nobody will read
    them from the log, so collection says which they were (the debugger shows them from the
    log, as not sent)."""
    received = [record.received_at for record in records]
    return Claim(
        integration_id="",
        source_id=route.source.id,
        at=max(received),
        event_ids=[planned.event_id for planned in plan.hits],
        received_from=min(received),
        received_until=max(received),
    )
