"""The debugger's store: what delivery learnt, per request and per failure, never per event.

The hit log keeps every hit as received; the integrations' routing says what each of them
makes of it (consent, the transform). What only delivery knows is written here, behind the
caller's back:

    a claim    one row per read of the log by an integration: the event ids it read, how many
               consent kept back (the timeline's "denied"), so "read, nothing sent" is known
    a batch    one row per request sent: verdict, attempts, the destination's answer, the event
               count, per-signal counts for match quality, and the exact request body
               (zlib-compressed: the payloads the debugger shows come out of it by event id)
    a failure  one row per event that did not deliver (retrying, paused, dead-lettered): why,
               and the answer
    a test     a Management API test send (it never was a hit): its body and answer

A delivered or denied event has no row of its own. Every row takes the next `seq` (one counter
for every process sharing the file), which the debugger's live view tails.

Nothing here is on the hot path's critical section: the calls append to a buffer in memory and
return; a background task writes the buffer in batches (bodies are rendered and compressed on
the writer's thread). A row still in the buffer when the process dies is lost: the store is a
debugging aid, not the queue. The buffer is bounded by bytes; past the bound the oldest rows
are dropped and counted.
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


def consent_decision(
    integration: Integration, consent: Mapping[str, bool] | None, default: ConsentDefault
) -> str:
    """GRANTED or DENIED for one hit and one integration: `explain_consent`'s decision without
    its reason (delivery decides for every record; the reason is made when the debugger asks)."""
    categories = integration.consent_categories
    if not categories:
        return GRANTED
    if consent is None:
        return GRANTED if default is ConsentDefault.GRANT else DENIED
    return GRANTED if all(consent.get(c) is True for c in categories) else DENIED


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


@dataclass(frozen=True, slots=True)
class TikTokReply:
    """TikTok's answer to the request that carried an event, as the debugger shows it."""

    http_status: int | None
    code: int | None
    message: str
    request_id: str | None


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


class Sent(Protocol):
    """An event as the worker sent it (`models.ClaimedEvent`); a log consumer's also says
    `user_id_known` (its external_id starts with a user id's hash) and `first_send`."""

    @property
    def event_id(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def attempts(self) -> int: ...
    @property
    def enqueued_at(self) -> float: ...


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


@dataclass(frozen=True, slots=True)
class Claim:
    """One read of the log by an integration (or, with integration_id '', hits collection
    stored for a source without integrations): which events, and how many consent denied."""

    integration_id: str
    source_id: str
    at: float
    event_ids: Sequence[str]
    received_from: float
    received_until: float
    denied: int = 0


@dataclass(frozen=True, slots=True)
class SentBatch:
    """One request to a destination. `render` makes its exact body (on the writer's thread).
    Match quality counts an event's signals at its first send (a log consumer's event says
    `first_send`)."""

    integration_id: str
    at: float
    status: str
    answer: TikTokReply | None
    events: Sequence[Sent]
    render: Callable[[], bytes]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """An event that did not deliver. `payload` (an event never sent: the transform refused it)
    lets match quality count it as the event stored to send that it was."""

    integration_id: str
    event_id: str
    status: str
    reason: str | None
    answer: TikTokReply | None
    attempts: int
    at: float
    received_at: float
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class TestSend:
    """A Management API test send: shown in the debugger, counted nowhere."""

    integration_id: str
    source_id: str
    event_id: str
    at: float
    status: str
    reason: str
    answer: TikTokReply
    hit: dict[str, Any]  # the summary the debugger shows, the request body in it


@dataclass(frozen=True, slots=True)
class Change:
    """A stored row, as the debugger reads it back. `event_ids`: the events it is about (a
    batch's come from its body, which `body` holds decompressed)."""

    seq: int
    kind: str  # CLAIM, BATCH, FAILURE or TEST
    integration_id: str
    source_id: str | None
    at: float
    status: str | None
    reason: str | None
    answer: dict[str, Any] | None
    attempts: int
    event_ids: list[str]
    body: bytes | None = None
    hit: dict[str, Any] | None = None  # a test send's
    # The first and last receive time of the records the row is about (None: a row without).
    received: tuple[float, float] | None = None


CLAIM, BATCH, FAILURE, TEST = "claim", "batch", "failure", "test"


def failures(
    integration_id: str,
    events: Sequence[Sent],
    status: str,
    at: float,
    *,
    reason: str | None,
    answer: Answer | None = None,
) -> list[Failure]:
    """One failure per event, with the destination's answer when there is one."""
    said = reply(answer) if answer is not None else None
    return [
        Failure(integration_id, e.event_id, status, reason, said, e.attempts, at, e.enqueued_at)
        for e in events
    ]


class Ledger(abc.ABC):
    """Claims, batches and failures, written behind the caller's back; read by the debugger."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Write what is buffered, then release the files."""

    @abc.abstractmethod
    def note(self, rows: Sequence[Claim | SentBatch | Failure | TestSend]) -> None:
        """Buffer rows; never waits."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Write what is buffered now (tests, shutdown)."""

    @abc.abstractmethod
    async def changes(
        self, after: int, limit: int, integration_id: str | None = None
    ) -> list[Change]:
        """Rows written after `seq`, oldest first (what a live view tails)."""

    @abc.abstractmethod
    async def last_seq(self) -> int:
        """The `seq` of the latest row (0 when there is none)."""

    @abc.abstractmethod
    async def batches(
        self, integration_id: str, received_from: float, received_until: float
    ) -> list[Change]:
        """The integration's batches whose events were received in a range overlapping
        [received_from, received_until], the newest first, bodies decompressed."""

    @abc.abstractmethod
    async def failures(self, integration_id: str, event_ids: Sequence[str]) -> dict[str, Change]:
        """The latest failure row of each of these events of the integration."""

    @abc.abstractmethod
    async def claimed(
        self, integration_id: str, received_from: float, received_until: float
    ) -> set[str]:
        """The event ids the integration read among hits received in the range."""

    @abc.abstractmethod
    async def tests(self, event_id: str | None, limit: int) -> list[Change]:
        """Test sends, the newest first (only this event's with an id)."""

    @abc.abstractmethod
    async def paused_batches(self, integration_id: str) -> int:
        """Requests kept whose answer paused the integration."""

    @abc.abstractmethod
    async def match_quality(self, integration_id: str, since: float) -> MatchQuality:
        """How many events sent to the integration since then carried each of `MATCH_SIGNALS`."""

    @abc.abstractmethod
    async def timeline(
        self, integration_id: str, since: float, bucket_s: int, count: int
    ) -> list[TimelineBucket]:
        """`count` buckets of `bucket_s` seconds from `since`: events by outcome when they
        reached it, and the match quality of the events first sent in each bucket."""


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
