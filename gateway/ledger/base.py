"""The ledger: one record per (event_id, integration) saying what became of a hit.

It answers "did this order reach TikTok?" and feeds the event debugger. Collection notes what it
saw (a redacted summary of the hit, the consent decision, the TikTok payload, which is already
hashed); the delivery worker notes every outcome (TikTok's answer, attempts). A hit that consent
kept from an integration gets a record too, so "why was nothing sent?" has an answer.

Nothing here is on the hot path's critical section: `observe` and `settle` append to a buffer
in memory and return; a background task writes the buffer in batches. A record still in the
buffer when the process dies is lost. That is accepted: the ledger is a debugging aid, not the
queue (the queue alone decides what is delivered). The buffer is bounded by bytes
(`MAX_BUFFERED_BYTES`): when the writer falls behind (a flood of hits during an outage), the
oldest records are dropped and counted rather than let memory grow. Everything the records need
beyond what collection and delivery hand over (JSON text, the signals of a payload) is made on
the writer's thread, not on the event loop.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.identity import ADDRESS_KEYS, Identity
from gateway.core.models import ConsentDefault, Integration

log = logging.getLogger(__name__)

# The user fields match quality is measured on, in the order the API lists them. Each is a bit
# of a record's `signals` (its position): new names go at the end, so stored masks keep meaning.
SIGNALS = (
    "ttp",
    "ttclid",
    "email",
    "phone",
    "external_id",
    "ip",
    "user_agent",
    "first_name",
    "last_name",
    "city",
    "state",
    "country",
    "zip_code",
)
# Not a payload key: collection tells whether the event's external_id held a user id (it is
# sent first, hashed, so the payload alone cannot show it). Kept well clear of SIGNALS' bits.
USER_ID_BIT = 1 << 30
# What the summary reports besides SIGNALS: external_id split by where it came from.
EXTERNAL_ID_USER = "external_id_user"  # a user id (identify, or the hit's own user_id)
EXTERNAL_ID_ANONYMOUS = "external_id_anonymous"  # only the anonymous id
MATCH_SIGNALS = (*SIGNALS, EXTERNAL_ID_USER, EXTERNAL_ID_ANONYMOUS)

# What a record's delivery status may be.
QUEUED = "queued"  # stored, not yet sent
DELIVERED = "delivered"  # TikTok accepted it
RETRYING = "retrying"  # TikTok (or the network) failed; it will be sent again
PAUSED = "paused"  # the integration was paused; the event waits for a resume
REJECTED = "rejected"  # its batch was refused for content; isolation decides its fate
DEAD_LETTERED = "dead_lettered"  # set aside with a reason; replay sends it again
NOT_SENT = "not_sent"  # consent kept it from this integration, or the source has none
IDENTIFIED = "identified"  # an identify hit: nothing sent, its hashed traits kept for later

GRANTED = "granted"
DENIED = "denied"
NO_INTEGRATION = "no_integration"


def explain_consent(
    integration: Integration, consent: Mapping[str, bool] | None, default: ConsentDefault
) -> tuple[str, str]:
    """(decision, reason) for one hit and one integration; agrees with `route.consent_allows`."""
    categories = integration.consent_categories
    if not categories:
        return GRANTED, "the integration needs no consent category"
    if consent is None:
        decision = GRANTED if default is ConsentDefault.GRANT else DENIED
        return decision, f"the hit carries no consent; the source's default is {default.value}"
    missing = [c for c in categories if consent.get(c) is not True]
    if missing:
        return DENIED, "no consent for " + ", ".join(missing)
    return GRANTED, "consent given for " + ", ".join(categories)


class RawHit:
    """The whole hit as the gateway decoded it (traits hashed) and the facts of its request.

    One per hit, shared by the records of every integration of its source. Collection hands
    over how to render it, not the text: the JSON is made once, on the ledger's writer thread
    (the first record that needs it), so the request path only allocates this object.
    """

    __slots__ = ("_render", "_text")

    def __init__(self, render: Callable[[], bytes]) -> None:
        self._render = render
        self._text: str | None = None

    @classmethod
    def of(cls, data: bytes) -> RawHit:
        """A raw hit rendered already: a hit log record, read by delivery."""
        return cls(lambda: data)

    def text(self) -> str | None:
        """The JSON, made on first use; None if it cannot be made (the record is kept without
        it rather than the writer's whole batch lost)."""
        if self._text is None:
            try:
                self._text = self._render().decode("utf-8")
            except Exception:
                log.warning("raw hit could not be rendered; its records are kept without it")
                self._text = ""
        return self._text or None


@dataclass(frozen=True, slots=True)
class Observation:
    """What collection saw of one hit for one integration (None: the source has none)."""

    event_id: str
    integration_id: str | None
    source_id: str
    hit: dict[str, Any]  # redacted summary: type, event, page_url, consent; never raw PII
    decision: str
    decision_reason: str
    tiktok_event: str | None
    payload: bytes | None  # the TikTok event as stored in the queue (hashed)
    status: str
    reason: str | None
    received_at: float
    user_id_known: bool = False  # the event's external_id starts with a user id's hash
    raw: RawHit | None = None  # the whole hit and its request's facts (None: a test send)


@dataclass(frozen=True, slots=True)
class StoredHit:
    """A record's raw hit, as re-processing reads it back."""

    event_id: str
    raw: str  # the JSON `RawHit.text` gave
    tiktok_event: str | None  # the destination's event name it was stored as (None: not sent)
    status: str
    received_at: float


@dataclass(frozen=True, slots=True)
class TikTokReply:
    """TikTok's answer to the request that carried an event, as the debugger shows it."""

    http_status: int | None
    code: int | None
    message: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the delivery worker learnt about one event."""

    event_id: str
    integration_id: str
    status: str
    attempts: int
    at: float
    reason: str | None = None
    answer: TikTokReply | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    source_id: str | None = None
    integration_id: str | None = None
    event: str | None = None  # the hit's event name or the TikTok event name
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class MatchQuality:
    events: int
    counts: dict[str, int] = field(default_factory=dict)


# The outcomes a timeline counts, each event once at its latest status.
OUTCOME_DELIVERED = "delivered"
OUTCOME_FAILED = "failed"  # TikTok or the network failed it; it is being retried (or paused)
OUTCOME_DEAD_LETTERED = "dead_lettered"
OUTCOME_DENIED = "denied"  # consent kept it from the integration
OUTCOMES = (OUTCOME_DELIVERED, OUTCOME_FAILED, OUTCOME_DEAD_LETTERED, OUTCOME_DENIED)


@dataclass(frozen=True, slots=True)
class TimelineBucket:
    """One time bucket of an integration's timeline."""

    outcomes: dict[str, int]  # per OUTCOMES name, by when the event reached it
    quality: MatchQuality  # the events received in the bucket that were stored to send


class Answer(Protocol):
    """A destination's answer as `destinations.base.Answer` carries it (no HTTP client here)."""

    @property
    def http_status(self) -> int | None: ...
    @property
    def code(self) -> int | None: ...
    @property
    def message(self) -> str: ...
    @property
    def request_id(self) -> str | None: ...


class Claimed(Protocol):
    """A claimed event as `models.ClaimedEvent` carries it."""

    @property
    def event_id(self) -> str: ...
    @property
    def attempts(self) -> int: ...


# What each `tiktok.Verdict` means for the events of the request, as the debugger says it.
_STATUS_BY_VERDICT = {
    "accepted": DELIVERED,
    "throttled": RETRYING,
    "retry": RETRYING,
    "pause": PAUSED,
    "too_large": RETRYING,  # split and sent again at once
    "reject_content": REJECTED,  # isolation decides which of them are dead-lettered
}


def reply(answer: Answer) -> TikTokReply:
    return TikTokReply(answer.http_status, answer.code, answer.message, answer.request_id)


def status_of(verdict: str) -> str:
    """The ledger status of the events of a request TikTok answered with this verdict."""
    return _STATUS_BY_VERDICT.get(verdict, RETRYING)


def outcomes(
    integration_id: str,
    events: Sequence[Claimed],
    status: str,
    at: float,
    *,
    answer: Answer | None = None,
    reason: str | None = None,
) -> list[Outcome]:
    """One outcome per event, with TikTok's answer when there is one."""
    tiktok = reply(answer) if answer is not None else None
    return [
        Outcome(e.event_id, integration_id, status, e.attempts, at, reason, tiktok) for e in events
    ]


class Ledger(abc.ABC):
    """Per-event records, written behind the caller's back and read by the Management API."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Write what is buffered, then release the files."""

    @abc.abstractmethod
    def observe(self, observations: Sequence[Observation]) -> None:
        """Buffer collection's records; never waits."""

    @abc.abstractmethod
    def settle(self, outcomes: Sequence[Outcome]) -> None:
        """Buffer delivery outcomes; never waits."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Write what is buffered now (tests, shutdown)."""

    @abc.abstractmethod
    async def records(
        self, filters: Filters, limit: int, after: int | None = None
    ) -> list[dict[str, Any]]:
        """Records as JSON objects: the newest first, or with `after` those changed since that
        `seq`, oldest first (what a live view tails)."""

    @abc.abstractmethod
    async def last_seq(self) -> int:
        """The `seq` of the latest change (0 when there is none)."""

    @abc.abstractmethod
    async def match_quality(self, integration_id: str, since: float) -> MatchQuality:
        """How many events sent to the integration since then carried each of `MATCH_SIGNALS`."""

    @abc.abstractmethod
    async def raw_hits(
        self, integration_id: str, since: float, until: float, limit: int
    ) -> list[StoredHit]:
        """The integration's records received in [since, until) that kept their raw hit, oldest
        first, at most `limit`."""

    @abc.abstractmethod
    async def statuses(
        self, integration_id: str, event_ids: Sequence[str]
    ) -> dict[str, tuple[str, str | None]]:
        """The status and destination event name of the integration's records of these events
        (an event without a record is left out)."""

    @abc.abstractmethod
    async def timeline(
        self, integration_id: str, since: float, bucket_s: int, count: int
    ) -> list[TimelineBucket]:
        """`count` buckets of `bucket_s` seconds from `since`: each event counted once, at its
        latest outcome, and the match quality of the events received in each bucket."""


def hit_summary(
    hit_type: str | None,
    event: str | None,
    source_id: str,
    page_url: str | None,
    consent: Mapping[str, bool] | None,
    from_server: bool,
) -> dict[str, Any]:
    """The part of a hit the ledger keeps: no traits, no user id, nothing to hash."""
    return {
        "type": hit_type,
        "event": event,
        "source_id": source_id,
        "page_url": page_url,
        "consent": dict(consent) if consent is not None else None,
        "from_server": from_server,
    }


def hashed_identity(identity: Identity) -> dict[str, Any]:
    """What an identify hit taught, as the debugger shows it: hashes only (never a raw trait)."""
    fields: dict[str, Any] = {
        "user_id": identity.user_id_hash,
        "email": list(identity.email_hashes) or None,
        "phone": list(identity.phone_hashes) or None,
        **{name: getattr(identity, name) for name in ADDRESS_KEYS},
    }
    return {name: value for name, value in fields.items() if value}
