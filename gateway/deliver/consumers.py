"""The integrations as consumers of the hit log, seen by the delivery worker as its `Queue`.

Collection appends each hit once to the log (`gateway/log/`). Each integration is a consumer
with its own cursor on its source's records: a claim reads the records after the cursor, plans
each for the integration (`record.py`: consent, what its destination sends, the transform) and
hands the worker the events, with the integration's due retries first. Only failures are copied
out of the log:

    ack          the events are done                  (cursor moves, counted delivered)
    release      copied to the retry set with a time  (cursor moves; with an error, counted failed)
    dead_letter  copied to the dead letters           (cursor moves)

The cursor moves once per claim, when every event of its records is settled, so a process that
dies mid-batch reads the batch again: at least once, never lost. Events that never came from the
log (a replayed dead letter, a fixed event, a re-processed range) enter the retry set, due now.

The worker's and settlement's code is the same as on the former per-integration queue: this
class is the seam between the two designs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from gateway.config.base import ConfigStore
from gateway.core.metrics import Metrics
from gateway.core.models import (
    ClaimedEvent,
    DeadLetter,
    Integration,
    IntegrationStats,
    NewEvent,
    ReadyInfo,
    Source,
)
from gateway.deliver.configcache import ConfigCache
from gateway.deliver.queue import EnqueueListener, Queue
from gateway.deliver.record import Planned, UnreadableRecord, plan_for, read_record
from gateway.ledger.base import DEAD_LETTERED, DENIED, Claim, Failure, Ledger
from gateway.log.base import DeadLetterItem, FailedItem, HitLog, Lag, LogEntry, Retry, Start

log = logging.getLogger(__name__)

# Ready events counted at most (as the queue did): ten of TikTok's largest batches.
_READY_CAP = 10_000
# A claim reads the log again while consent and mapping left its batch short, up to this often.
_MAX_READS_PER_CLAIM = 4
# How often a claim takes over, on a shared log, records a dead replica read and never settled.
_TAKE_OVER_EVERY_S = 5.0
# Delivery's work between two yields to the event loop. In one process collection shares the
# loop, and a hit needs several passes of it (its request, the group commit, the answer): each
# pass waits for at most one slice. At 25 records a slice (~0.8 ms) the passes of a hit that
# came while a batch was planned added up to 5-15 ms, the p99 of a paced load.
_SLICE_S = 0.0003
# ... unless delivery is behind: with more than this many records unread, collection is taking
# the loop from it (a saturated process runs dozens of requests between two slices), so it
# takes longer slices and catches up rather than let the backlog grow until the log is full.
_BEHIND_RECORDS = 2000
_BEHIND_SLICE_S = 0.003
# A claim's lease until the worker says otherwise (ready_info takes over before any claim).
_DEFAULT_LEASE_S = 60.0
# Claim ids say where an event came from: a log entry or a retry.
_ENTRY, _RETRY = "e", "r"


class StoredEvent(msgspec.Struct, array_like=True, frozen=True):
    """A transformed event as the retry set and the dead letters keep it (opaque to the log)."""

    event_name: str
    event_time: int
    payload: bytes  # the destination's event as JSON
    consent: dict[str, bool] | None
    enqueued_at: float
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None
    # Its external_id starts with a user id's hash (match quality tells those apart).
    user_id_known: bool = False


@dataclass(frozen=True, slots=True)
class LogEvent(ClaimedEvent):
    """A claimed event with what match quality needs: whether its record named a user, and
    whether this is its first send straight from the log (a retry, a replayed dead letter or
    a re-processed event was counted before, or is no hit's first send)."""

    user_id_known: bool = False
    first_send: bool = False


_encode = msgspec.msgpack.Encoder().encode
_decode_stored = msgspec.msgpack.Decoder(StoredEvent).decode


def stored_event(event: NewEvent, enqueued_at: float) -> bytes:
    """How a transformed event is kept in the retry set or the dead letters."""
    return _encode(_stored(event, enqueued_at))


def _stored(event: NewEvent, enqueued_at: float, user_id_known: bool = False) -> StoredEvent:
    return StoredEvent(
        event.event_name,
        event.event_time,
        event.payload,
        event.consent,
        enqueued_at,
        user_id_known=user_id_known,
    )


def _slice_s(claims: _Claims) -> float:
    return _BEHIND_SLICE_S if claims.unread > _BEHIND_RECORDS else _SLICE_S


class _LoopShare:
    """Yields to the event loop once `slice_s` of work has run since the last yield."""

    __slots__ = ("_slice_s", "_until")

    def __init__(self, slice_s: float) -> None:
        self._slice_s = slice_s
        self._until = time.perf_counter() + slice_s

    async def yield_if_due(self) -> None:
        if time.perf_counter() >= self._until:
            await asyncio.sleep(0)
            self._until = time.perf_counter() + self._slice_s


@dataclass(slots=True)
class _Held:
    event: ClaimedEvent
    stored: StoredEvent
    entry_id: str | None  # the log entry it came from
    retry_id: str | None  # the retry it came from (None: straight from the log)


@dataclass(slots=True)
class _Claims:
    """What one integration has claimed and not settled, and the log entries behind it."""

    held: dict[str, _Held] = field(default_factory=dict)
    entries: list[LogEntry] = field(default_factory=list)
    open_from_log: set[str] = field(default_factory=set)
    # When the lease of the log entries in hand runs out (the worker then looks again).
    lease_until: float | None = None
    taken_over_at: float = float("-inf")
    # Entries taken over from a replica that died, not handed to the worker yet.
    taken: list[LogEntry] = field(default_factory=list)
    lease_s: float = _DEFAULT_LEASE_S
    # Records unread at the last look (`ready_info`): how long delivery's slices of the loop are.
    unread: int = 0


class LogConsumers(Queue):
    """Every integration's view of the hit log, as the delivery worker's queue."""

    def __init__(
        self,
        hitlog: HitLog,
        store: ConfigStore,
        metrics: Metrics,
        *,
        ledger: Ledger | None = None,
        config_ttl_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = hitlog
        self._store = store
        self._metrics = metrics
        self._ledger = ledger  # the debugger's store: one claim row per read, never per event
        self._configs = ConfigCache(store, metrics, monotonic=monotonic, ttl_s=config_ttl_s)
        self._monotonic = monotonic
        self._claims: dict[str, _Claims] = {}
        self._known: set[str] = set()  # consumers known to exist
        self._listeners: list[EnqueueListener] = []

    @property
    def log(self) -> HitLog:
        """The hit log itself, for what the debugger reads of it."""
        return self._log

    # -- lifecycle and what collection tells -----------------------------------------------

    async def open(self) -> None:
        """The log is opened (and closed) by its owner; nothing of its own to open."""

    async def close(self) -> None:
        self._claims.clear()

    def add_enqueue_listener(self, listener: EnqueueListener) -> bool:
        self._listeners.append(listener)
        return True

    def remove_enqueue_listener(self, listener: EnqueueListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def appended(self, integration_ids: Sequence[str], count: int, received_at: float) -> None:
        """Collection in this process appended `count` records these integrations will read."""
        for listener in list(self._listeners):
            for integration_id in integration_ids:
                listener(integration_id, count, received_at)

    def refresh(self) -> None:
        """Forget cached integration configs (the admin API changed one)."""
        self._configs.clear()

    # -- consumers --------------------------------------------------------------------------

    async def ensure_consumer(self, integration: Integration) -> None:
        """Give the integration a cursor, from its creation on, if it has none yet.

        The Management API creates it with the integration; this catches integrations made
        before the log existed or by another process, without losing the records since then.
        """
        if integration.id in self._known:
            return
        await self._log.add_consumer(integration.id, integration.source_id, _start(integration))
        self._known.add(integration.id)

    # -- the worker's side ------------------------------------------------------------------

    async def ready_info(self, integration_id: str, now: float) -> ReadyInfo:
        if not await self._has_consumer(integration_id):
            return ReadyInfo(0, None, None)
        lag = await self._log.lag(integration_id)
        retries = await self._log.retry_info(integration_id, now)
        claims = self._claims.setdefault(integration_id, _Claims())
        in_hand = len(claims.entries)
        if lag.unread is not None and lag.entries - lag.unread - in_hand - len(claims.taken) > 0:
            # Another replica holds entries: take them over if it died (else they stay its).
            await self._take_over_due(claims, integration_id)
        from_log, oldest_in_log = _unread(lag, in_hand)
        claims.unread = from_log
        if claims.taken:
            from_log += len(claims.taken)
            first = min(e.received_at for e in claims.taken)
            oldest_in_log = first if oldest_in_log is None else min(oldest_in_log, first)
        ready = min(_READY_CAP, from_log + retries.due)
        oldest = [t for t in (oldest_in_log, retries.oldest_due_at) if t is not None]
        if from_log == 0:
            oldest = [retries.oldest_due_at] if retries.oldest_due_at is not None else []
        # Entries in hand are leased, as the queue's claimed events were: until their lease
        # ends they are not ready, but they are still there (a drain must not think it done).
        waiting = [] if retries.next_at is None else [retries.next_at]
        if in_hand and claims.lease_until is not None:
            waiting.append(claims.lease_until)
        if lag.entries - from_log - in_hand > 0:
            # Another replica holds entries: look again when they could be taken over.
            waiting.append(now + _TAKE_OVER_EVERY_S)
        return ReadyInfo(
            ready, min(oldest) if oldest and ready else None, min(waiting) if waiting else None
        )

    async def claim(
        self, integration_id: str, limit: int, now: float, lease_s: float, at_least: int = 1
    ) -> list[ClaimedEvent]:
        integration = await self._configs.get(integration_id)
        if integration is None:
            return []
        await self.ensure_consumer(integration)
        claims = self._claims.setdefault(integration_id, _Claims())
        if at_least > 1 and not await self._at_least_ready(integration_id, claims, at_least, now):
            return []  # another worker took the full batch this one expected
        out = [
            self._hold(claims, retry, now)
            for retry in await self._log.claim_retries(integration_id, now, limit, lease_s)
        ]
        if len(out) < limit:
            out += await self._claim_from_log(claims, integration, limit - len(out), now, lease_s)
        if not claims.open_from_log and claims.entries:
            await self._commit(integration_id, claims)
        return out

    async def _at_least_ready(
        self, integration_id: str, claims: _Claims, at_least: int, now: float
    ) -> bool:
        lag = await self._log.lag(integration_id)
        from_log, _ = _unread(lag, len(claims.entries))
        from_log += len(claims.taken)
        if from_log >= at_least:
            return True
        return from_log + (await self._log.retry_info(integration_id, now)).due >= at_least

    async def _claim_from_log(
        self, claims: _Claims, integration: Integration, limit: int, now: float, lease_s: float
    ) -> list[ClaimedEvent]:
        source = await self._configs.get_source(integration.source_id)
        if source is None:
            return []
        out: list[ClaimedEvent] = []
        claims.lease_s = lease_s
        await self._take_over_due(claims, integration.id)
        entries, claims.taken = claims.taken[:limit], claims.taken[limit:]
        for _ in range(_MAX_READS_PER_CLAIM):
            if len(entries) < limit - len(out):
                entries += await self._log.read(integration.id, limit - len(out) - len(entries))
            if not entries:
                break
            claims.entries += entries
            claims.lease_until = now + lease_s
            planned = await self._plan_all(entries, integration, source, _slice_s(claims))
            out += await self._settle_planned(claims, integration, entries, planned, now)
            if len(out) >= limit:
                break
            entries = []
        return out

    async def _take_over_due(self, claims: _Claims, integration_id: str) -> None:
        """On a shared log, what a replica that died read and never settled comes back (looked
        for at most every few seconds: it costs Redis a scan of the group's pending entries)."""
        mono = self._monotonic()
        if mono - claims.taken_over_at < _TAKE_OVER_EVERY_S:
            return
        claims.taken_over_at = mono
        claims.taken += await self._log.take_over(integration_id, claims.lease_s)

    async def _plan_all(
        self, entries: list[LogEntry], integration: Integration, source: Source, slice_s: float
    ) -> list[Planned | None]:
        """Plan a batch's records, giving the event loop back every slice: in one process, a
        batch of 500 planned in one go would hold collection's requests for tens of ms."""
        planned: list[Planned | None] = []
        share = _LoopShare(slice_s)
        for entry in entries:
            planned.append(self._plan(entry, integration, source))
            await share.yield_if_due()
        return planned

    def _plan(self, entry: LogEntry, integration: Integration, source: Source) -> Planned | None:
        try:
            read = read_record(entry.data, entry.event_id)
        except UnreadableRecord as exc:
            log.warning("hit log record %s cannot be read and is skipped: %s", entry.id, exc)
            return None
        return plan_for(read, integration, source, entry.received_at, entry.event_id)

    async def _settle_planned(
        self,
        claims: _Claims,
        integration: Integration,
        entries: list[LogEntry],
        planned: list[Planned | None],
        now: float,
    ) -> list[ClaimedEvent]:
        """Hand out what is to be sent, dead-letter what the destination refuses at once."""
        out: list[ClaimedEvent] = []
        refused: dict[str, list[FailedItem]] = {}
        shown: list[Failure] = []
        share = _LoopShare(_slice_s(claims))
        sendable = 0
        for entry, plan in zip(entries, planned, strict=True):
            await share.yield_if_due()
            if plan is None:
                continue
            event = plan.event
            if event is None:
                continue
            sendable += 1
            known = plan.user_id_known
            if plan.rejected is not None:
                data = stored_event(event, entry.received_at)
                item = FailedItem(data, event.event_id, entry.id, attempts=0)
                refused.setdefault(plan.rejected, []).append(item)
                shown.append(_refused(integration.id, event, plan.rejected, entry, now))
                continue
            claim_id = f"{_ENTRY}{entry.id}"
            # Encoded only if the event fails (`_failed`): most are delivered and forgotten.
            stored = _stored(event, entry.received_at, known)
            claimed = LogEvent(
                claim_id,
                event.event_id,
                event.event_name,
                event.event_time,
                event.payload,
                1,
                entry.received_at,
                known,
                first_send=True,
            )
            claims.held[claim_id] = _Held(claimed, stored, entry.id, None)
            claims.open_from_log.add(claim_id)
            out.append(claimed)
        self._metrics.enqueued_counter(integration.id).inc(sendable)  # once per read, not per event
        self._note_claim(integration, entries, planned, shown, now)
        for reason, items in refused.items():
            await self._log.dead_letter(integration.id, items, reason, None, now)
            await self._log.add_counts(integration.id, dead_lettered=len(items))
            self._metrics.events_skipped.labels(integration.id, reason).inc(len(items))
            self._metrics.events_dead_lettered.labels(integration.id, reason).inc(len(items))
        return out

    def _note_claim(
        self,
        integration: Integration,
        entries: list[LogEntry],
        planned: list[Planned | None],
        refused: list[Failure],
        now: float,
    ) -> None:
        """The debugger's rows of one read: the claim (which events, how many denied) and the
        events the transform refused. Nothing per event that was read and sent or kept back."""
        if self._ledger is None or not entries:
            return
        read = [(e, p) for e, p in zip(entries, planned, strict=True) if p is not None]
        received = [e.received_at for e in entries]
        claim = Claim(
            integration.id,
            integration.source_id,
            now,
            [p.event_id for _, p in read],
            min(received),
            max(received),
            denied=sum(p.decision == DENIED for _, p in read),
        )
        self._ledger.note([claim, *refused])

    def _hold(self, claims: _Claims, retry: Retry, now: float) -> ClaimedEvent:
        stored = _decode_stored(retry.data)
        claim_id = f"{_RETRY}{retry.id}"
        claimed = LogEvent(
            claim_id,
            retry.event_id or "",
            stored.event_name,
            stored.event_time,
            stored.payload,
            retry.attempts + 1,
            stored.enqueued_at,
            stored.user_id_known,
        )
        claims.held[claim_id] = _Held(claimed, stored, retry.entry_id, retry.id)
        return claimed

    async def ack(self, integration_id: str, ids: Sequence[int | str], now: float) -> None:
        held = self._take(integration_id, ids)
        retries = [h.retry_id for h in held if h.retry_id is not None]
        if retries:
            await self._log.retried(integration_id, retries)
        await self._log.add_counts(integration_id, delivered=len(held), success_at=now)
        await self._settled(integration_id, held)

    async def release(
        self,
        integration_id: str,
        ids: Sequence[int | str],
        retry_at: float,
        error: str | None,
        now: float,
    ) -> None:
        held = self._take(integration_id, ids)
        retries = [h.retry_id for h in held if h.retry_id is not None]
        if retries:
            await self._log.reschedule(
                integration_id, retries, retry_at, error, count_attempt=error is not None
            )
        fresh = [
            self._failed(h, now, counted=error is not None) for h in held if h.retry_id is None
        ]
        if fresh:
            await self._log.retry_later(integration_id, fresh, retry_at, error)
        if error is not None:
            await self._log.add_counts(integration_id, failed=len(held), last_error=error)
        await self._settled(integration_id, held)

    async def dead_letter(
        self,
        integration_id: str,
        ids: Sequence[int | str],
        reason: str,
        answer: str | None,
        now: float,
    ) -> None:
        held = self._take(integration_id, ids)
        items = [self._failed(h, now, counted=True) for h in held]
        await self._log.dead_letter(integration_id, items, reason, answer, now)
        retries = [h.retry_id for h in held if h.retry_id is not None]
        if retries:
            await self._log.retried(integration_id, retries)
        await self._log.add_counts(
            integration_id, dead_lettered=len(held), last_error=answer or reason
        )
        await self._settled(integration_id, held)

    def _take(self, integration_id: str, ids: Sequence[int | str]) -> list[_Held]:
        claims = self._claims.get(integration_id)
        if claims is None:
            return []
        return [h for h in (claims.held.pop(str(i), None) for i in ids) if h is not None]

    @staticmethod
    def _failed(held: _Held, now: float, *, counted: bool) -> FailedItem:
        """The retry set's or dead letters' copy of a claimed event (the attempt counted when
        it was held against the event)."""
        stored = held.stored
        attempts = held.event.attempts if counted else held.event.attempts - 1
        data = _encode(
            msgspec.structs.replace(
                stored, first_attempt_at=stored.first_attempt_at or now, last_attempt_at=now
            )
        )
        return FailedItem(data, held.event.event_id, held.entry_id, attempts=attempts)

    async def _settled(self, integration_id: str, held: list[_Held]) -> None:
        claims = self._claims.get(integration_id)
        if claims is None:
            return
        for item in held:
            claims.open_from_log.discard(str(item.event.id))
        if not claims.open_from_log and claims.entries:
            await self._commit(integration_id, claims)

    async def _commit(self, integration_id: str, claims: _Claims) -> None:
        entries, claims.entries = claims.entries, []
        claims.lease_until = None
        await self._log.commit(integration_id, entries)

    async def dead_letter_new(
        self, events: Sequence[NewEvent], reason: str, answer: str | None, now: float
    ) -> None:
        for integration_id, group in _by_integration(events).items():
            items = [FailedItem(stored_event(e, now), e.event_id, None, 0) for e in group]
            await self._has_consumer(integration_id)
            await self._log.dead_letter(integration_id, items, reason, answer, now)
            await self._log.add_counts(integration_id, dead_lettered=len(items))

    async def enqueue(self, events: Sequence[NewEvent]) -> None:
        """Events made outside the log (a fixed dead letter, a re-processed range): due now."""
        now = time.time()
        for integration_id, group in _by_integration(events).items():
            await self._has_consumer(integration_id)
            items = [FailedItem(stored_event(e, now), e.event_id, None, 0) for e in group]
            await self._log.retry_later(integration_id, items, now, None)
            for listener in list(self._listeners):
                listener(integration_id, len(items), now)

    async def _has_consumer(self, integration_id: str) -> bool:
        """Whether the integration has a cursor, giving it one when it exists and has none."""
        if integration_id in self._known:
            return True
        if integration_id in await self._log.consumers():
            self._known.add(integration_id)
            return True
        # An integration nobody has claimed for yet still has records waiting since it was
        # made: its cursor starts there now, or its status would say nothing is queued. The
        # store itself is asked, so that an integration just deleted gets no cursor back.
        integration = await self._store.get_integration(integration_id)
        if integration is None:
            return False
        await self.ensure_consumer(integration)
        return True

    # -- what the Management API and the sweep ask ------------------------------------------

    async def hits_between(
        self, source_id: str, since: float, until: float, limit: int
    ) -> list[LogEntry]:
        """The retained records of a source received in [since, until), oldest first (at most
        `limit`): what re-processing plans again."""
        out: list[LogEntry] = []
        after: str | None = None
        while len(out) < limit:
            page = await self._log.read_range(
                source_id, since, until, min(1000, limit - len(out)), after
            )
            if not page:
                break
            out += page
            after = page[-1].id
        return out

    async def stats(self, integration_id: str) -> IntegrationStats:
        if not await self._has_consumer(integration_id):
            return IntegrationStats()
        lag = await self._log.lag(integration_id)
        retries = await self._log.retry_info(integration_id, time.time())
        counts = await self._log.counts(integration_id)
        return IntegrationStats(
            queued=lag.entries + retries.total,
            delivered=counts.delivered,
            failed=counts.failed,
            dead_lettered=counts.dead_lettered,
            last_error=counts.last_error,
            last_success_at=counts.last_success_at,
        )

    async def depth(self) -> int:
        return await self._log.depth()

    async def size_bytes(self) -> int | None:
        return await self._log.size_bytes()

    async def integrations_with_events(self) -> list[str]:
        # Integrations made by another process (or before the log) get their cursor here.
        for integration in await self._store.list_integrations():
            if integration.id not in self._known:
                await self.ensure_consumer(integration)
        now = time.time()
        busy = []
        for consumer_id in await self._log.consumers():
            lag = await self._log.lag(consumer_id)
            if lag.entries > 0 or (await self._log.retry_info(consumer_id, now)).total > 0:
                busy.append(consumer_id)
        return busy

    async def list_dead_letters(
        self, integration_id: str, limit: int = 100, offset: int = 0
    ) -> list[DeadLetter]:
        if not await self._has_consumer(integration_id):
            return []
        items = await self._log.list_dead_letters(integration_id, limit, offset)
        return [_dead_letter(item) for item in items]

    async def replay_dead_letters(
        self, integration_id: str, ids: Sequence[int | str] | None, now: float
    ) -> list[DeadLetter]:
        if not await self._has_consumer(integration_id):
            return []
        chosen = None if ids is None else [str(i) for i in ids]
        moved = await self._log.replay_dead_letters(integration_id, chosen, now)
        if moved:  # `dead_lettered` counts the dead letters there are, as it always did
            await self._log.add_counts(integration_id, dead_lettered=-len(moved))
        for listener in list(self._listeners):
            listener(integration_id, len(moved), now)
        return [_dead_letter(item) for item in moved]

    async def purge_dead_letters(self, integration_id: str, ids: Sequence[int | str] | None) -> int:
        if not await self._has_consumer(integration_id):
            return 0
        chosen = None if ids is None else [str(i) for i in ids]
        purged = await self._log.purge_dead_letters(integration_id, chosen)
        if purged:
            await self._log.add_counts(integration_id, dead_lettered=-purged)
        return purged

    async def recover_leases(self, now: float) -> int:
        """Nothing to do: a restarted handle reads again what it had not committed, and a dead
        replica's records are taken over as claims go (`take_over`)."""
        return 0

    async def drop_integration(self, integration_id: str) -> None:
        # The integration was deleted from the store: a claim must not find it in the cache and
        # give it a cursor again, which no one would ever move (retention would keep its
        # source's records for good).
        self._configs.clear()
        self._claims.pop(integration_id, None)
        self._known.discard(integration_id)
        await self._log.drop_consumer(integration_id)


def _unread(lag: Lag, in_hand: int) -> tuple[int, float | None]:
    """Entries this handle may read now, and when the oldest of them was received."""
    if lag.unread is not None:  # a shared log: what other replicas hold is theirs
        return lag.unread, lag.oldest_unread_at
    return max(0, lag.entries - in_hand), lag.oldest_received_at


def _start(integration: Integration) -> Start:
    """Where a new consumer starts: the records since the integration was made."""
    created = created_at(integration)
    return "tail" if created is None else created


def created_at(integration: Integration) -> float | None:
    """When the integration was made, as a Unix time (None: its record does not say)."""
    try:
        return dt.datetime.fromisoformat(integration.created_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _refused(
    integration_id: str, event: NewEvent, reason: str, entry: LogEntry, now: float
) -> Failure:
    """The debugger's row of an event the transform refused: dead-lettered, never sent (its
    payload counts for match quality, as the event stored to send that it is)."""
    return Failure(
        integration_id,
        event.event_id,
        DEAD_LETTERED,
        reason,
        None,
        0,
        now,
        entry.received_at,
        payload=event.payload,
    )


def _by_integration(events: Sequence[NewEvent]) -> dict[str, list[NewEvent]]:
    grouped: dict[str, list[NewEvent]] = {}
    for event in events:
        grouped.setdefault(event.integration_id, []).append(event)
    return grouped


def _dead_letter(item: DeadLetterItem) -> DeadLetter:
    stored = _decode_stored(item.data)
    return DeadLetter(
        id=int(item.id) if item.id.isdigit() else item.id,
        integration_id=item.consumer_id,
        event_id=item.event_id or "",
        event_name=stored.event_name,
        event_time=stored.event_time,
        reason=item.reason,
        answer=item.answer,
        attempts=item.attempts,
        first_attempt_at=stored.first_attempt_at,
        last_attempt_at=stored.last_attempt_at,
        dead_lettered_at=item.dead_lettered_at,
        consent=stored.consent,
        payload=stored.payload,
    )
