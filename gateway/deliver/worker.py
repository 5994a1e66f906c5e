"""The delivery worker: batches queued events per integration and sends them to its destination.

One asyncio task (a "lane") per integration that has events. A lane sleeps until a batch is due
(full, or its oldest event has waited `batch_max_wait_ms`), takes a token from the
integration's bucket for every request, claims the batch with a lease, and settles every event
by what the destination's `classify` says about its answer:

    ACCEPTED        ack
    THROTTLED       release with backoff; the integration's own bucket slows down and gives
                    nothing until TikTok's Retry-After has passed
    RETRY           release with backoff
    PAUSE           release without error, pause the integration with TikTok's reason
    TOO_LARGE       split in halves and send each
    REJECT_CONTENT  isolate the bad events by splitting (`isolate.py`), dead-letter only them;
                    when every piece fails alike the fault is not the events': pause instead

After a few requests in a row failed on TikTok's side, a lane stops walking through its backlog:
it sends one batch per (jittered, growing, at most 30 s) backoff period until one is accepted, so
a long outage costs a trickle of probes, not a retry storm (`ratelimit.Pacing`), and TikTok's
return is noticed within half a minute.

A lane does not ask the store after every enqueue. The queue tells the worker what this process
committed (`Queue.add_enqueue_listener`); the lane adds that to what the store said when it last
asked, and looks again only when a batch is due by that reckoning (full, or its oldest has waited
`batch_max_wait_ms`), when its wait is over, and at least every sweep interval while a batch
fills (other processes' events, expired leases). Every decision is still taken on a fresh
`ready_info`; the reckoning only decides when to ask.

Events older than `event_max_age_days` are dead-lettered ("too_old") instead of sent. A lease
that is neither acked, released nor dead-lettered when a batch ends (or the worker stops) is
released without error, so nothing is lost and no attempt is held against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway import destinations
from gateway.config.base import ConfigStore
from gateway.core.metrics import Metrics
from gateway.core.models import ClaimedEvent, Integration, ReadyInfo, Source
from gateway.core.settings import Settings
from gateway.deliver.backoff import MAX_RETRY_AFTER_S
from gateway.deliver.configcache import ConfigCache
from gateway.deliver.isolate import Isolation, halves
from gateway.deliver.queue import Queue
from gateway.deliver.ratelimit import RECOVERY_S, Pacing, TokenBucket
from gateway.deliver.settle import Holding, Settlement, Stopping, pause_reason
from gateway.destinations.base import Answer, Client, Verdict
from gateway.ledger.base import Ledger, SentBatch, reply, status_of
from gateway.ledger.requests import RequestStats

if TYPE_CHECKING:  # redis is imported only by deployments that configure it
    from gateway.deliver.ratelimit_redis import SharedBuckets

log = logging.getLogger(__name__)

_DAY_S = 86_400.0
# How often a lane looks again at an integration it may not send for (paused, disabled, deleted).
_INACTIVE_POLL_S = 0.25
# After an unexpected error (the store is locked, the disk is full) a lane waits this long.
_ERROR_PAUSE_S = 1.0
# A lane never sleeps less than this when waiting for a retry time, so it cannot spin.
_MIN_SLEEP_S = 0.005
# After another worker took the full batch this one expected: look again this much later at
# the soonest (the next ready_info normally says how long to wait).
_LOST_RACE_PAUSE_S = 0.05
_FAILED = frozenset({Verdict.RETRY, Verdict.THROTTLED})


@dataclass(slots=True)
class _Lane(Holding):
    """One integration's delivery loop, and (as a `Holding`) the events it has claimed."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    bucket: TokenBucket | None = None  # shared with the lanes before it (the worker keeps it)
    # True from claim to the end of a batch (drain must not mistake a claim for an empty queue).
    busy: bool = False
    # Events this process enqueued since the lane last asked the store, and the first one's
    # enqueue time.
    local_count: int = 0
    local_oldest: float | None = None
    # While the lane waits for a batch: what the store said (ready events), the clock time
    # before which pacing lets nothing leave, and when the lane will look again.
    known_ready: int = 0
    not_before: float = 0.0
    sleeping_until: float | None = None
    # The batch's token, taken before its claim (see `_run_batch`), not yet spent on a request.
    token_taken: bool = False


class DeliveryWorker:
    """Delivers queued events to TikTok. `start()`, then `stop()`; `notify(id)` after enqueues.

    Counters for tests and logs: `requests_sent`, `events_delivered`, `events_retried`,
    `events_dead_lettered`, `isolation_requests` (requests beyond the first of a rejected batch).
    """

    def __init__(
        self,
        queue: Queue,
        store: ConfigStore,
        clients: Mapping[str, Client],
        settings: Settings,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        lease_s: float = 60.0,
        sweep_interval_s: float = 0.5,
        config_ttl_s: float = 5.0,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        probe_cap_s: float = 30.0,
        stop_timeout_s: float | None = None,
        throttle_recovery_s: float = RECOVERY_S,
        ledger: Ledger | None = None,
        shared_buckets: SharedBuckets | None = None,
        request_stats: RequestStats | None = None,
    ) -> None:
        self._queue = queue
        # The timeline's batch sizes and latencies, per minute in memory (never waited on).
        self._request_stats = request_stats
        # With a Redis queue: the cluster's buckets, taken after this process's own.
        self._shared = shared_buckets
        self._ledger = ledger
        self._store = store
        # One sender per vendor (the registry's destinations), on the shared HTTP session.
        self._clients = clients
        self._settings = settings
        self._metrics = metrics
        # `clock` is the queue's time (wall clock: it is stored); `monotonic` paces the buckets.
        self._clock = clock
        self._monotonic = monotonic
        self._lease_s = lease_s
        self._sweep_interval_s = sweep_interval_s
        # How long `stop` lets requests to TikTok in flight finish (GATEWAY_SHUTDOWN_TIMEOUT_S).
        self._stop_timeout_s = (
            settings.shutdown_timeout_s if stop_timeout_s is None else stop_timeout_s
        )
        self._max_events = settings.batch_max_events
        self._max_wait_s = settings.batch_max_wait_ms / 1000.0
        self._max_age_s = settings.event_max_age_days * _DAY_S

        self._lanes: dict[str, _Lane] = {}
        # True once the queue tells this worker what this process enqueues (see the module doc).
        self._told = False
        self._pacing = Pacing(
            clock=clock,
            monotonic=monotonic,
            rng=rng,
            backoff_base_s=backoff_base_s,
            # Probes back off to at most `probe_cap_s`, not the events' five minutes: one
            # request in 30 s is nothing to TikTok, and a recovery is noticed within 30 s.
            backoff_cap_s=min(backoff_cap_s, probe_cap_s),
            recovery_s=throttle_recovery_s,
        )
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._started = False
        self._configs = ConfigCache(store, metrics, monotonic=monotonic, ttl_s=config_ttl_s)

        self.requests_sent = 0
        self.events_delivered = 0
        self.events_retried = 0
        self.events_dead_lettered = 0
        self.isolation_requests = 0
        self._settle = Settlement(
            queue,
            store,
            metrics,
            self,
            clock=clock,
            rng=rng,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
            on_pause=self._configs.put,
            ledger=ledger,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        recovered = await self._queue.recover_leases(self._clock())
        if recovered:
            log.info("took back %d events leased by a delivery worker that stopped", recovered)
        self._started = True
        self._stopping.clear()
        self._told = self._queue.add_enqueue_listener(self._enqueued)
        self._supervisor = asyncio.create_task(self._supervise(), name="delivery-supervisor")

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop claiming; let requests in flight finish within the timeout, then cancel them.

        Whatever is still leased afterwards is released without error: nothing is lost.
        """
        timeout = self._stop_timeout_s if timeout_s is None else timeout_s
        self._stopping.set()
        self._queue.remove_enqueue_listener(self._enqueued)
        self._told = False
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.wake.set()
        tasks = [lane.task for lane in lanes if lane.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for lane in lanes:
            await self._settle.give_back(lane)
        self._lanes.clear()
        self._started = False

    def notify(self, integration_id: str) -> None:
        """Events were enqueued for this integration: make sure a lane serves it.

        When the queue tells the worker what it committed, the lane already knows and decides
        itself whether a batch is due; otherwise the lane looks at the store now.
        """
        if not self._started or self._stopping.is_set():
            return
        lane = self._lanes.get(integration_id)
        if lane is None:
            self._start_lane(integration_id)
        elif not self._told:
            lane.wake.set()

    def wake(self, integration_id: str) -> None:
        """Look at this integration's events now (they were replayed, it was resumed)."""
        if not self._started or self._stopping.is_set():
            return
        lane = self._lanes.get(integration_id)
        if lane is None:
            self._start_lane(integration_id)
        else:
            lane.wake.set()

    def _enqueued(self, integration_id: str, count: int, enqueued_at: float) -> None:
        """The queue committed `count` events of this process for the integration."""
        if not self._started or self._stopping.is_set():
            return
        lane = self._lanes.get(integration_id)
        if lane is None:
            self._start_lane(integration_id)  # its first step asks the store
            return
        lane.local_count += count
        if lane.local_oldest is None:
            lane.local_oldest = enqueued_at
        # Busy with a batch, or paused: it asks the store before it waits again.
        if lane.sleeping_until is not None and self._due_sooner(lane, lane.sleeping_until):
            lane.wake.set()

    def _due_sooner(self, lane: _Lane, until: float) -> bool:
        """Whether, with what this process enqueued, the lane's batch is due before `until`."""
        if lane.local_oldest is None:
            return False
        if lane.known_ready + lane.local_count >= self._max_events:
            due = self._clock()
        else:
            due = lane.local_oldest + self._max_wait_s
        return max(due, lane.not_before) < until

    def refresh(self) -> None:
        """Forget cached integration configs (the admin API resumed or changed one)."""
        self._configs.clear()
        for lane in self._lanes.values():
            lane.wake.set()

    async def drain(self, timeout_s: float, *, until_empty: bool = True) -> None:
        """Return once active integrations have nothing left to send; TimeoutError otherwise.

        With `until_empty` (the default) events waiting for a retry must have gone too; without
        it only events that are ready now count. Paused and disabled integrations are ignored.
        """
        deadline = self._monotonic() + timeout_s
        while not await self._drained(until_empty):
            if self._monotonic() > deadline:
                raise TimeoutError(f"the queue did not drain within {timeout_s} s")
            await asyncio.sleep(0.02)

    # -- discovery ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """The upkeep sweep: lanes for every integration with events, and the depth gauge."""
        while not self._stopping.is_set():
            try:
                for integration_id in await self._queue.integrations_with_events():
                    if integration_id not in self._lanes:
                        self._start_lane(integration_id)
                self._metrics.queue_depth.set(await self._queue.depth())
                size = await self._queue.size_bytes()
                if size is not None:
                    self._metrics.queue_bytes.set(size)
            except Exception:
                log.exception("delivery sweep failed")
            await self._sleep_until_stopped(self._sweep_interval_s)

    def _start_lane(self, integration_id: str) -> None:
        lane = _Lane(integration_id)
        self._lanes[integration_id] = lane
        lane.task = asyncio.create_task(self._run_lane(lane), name=f"delivery-{integration_id}")

    async def _drained(self, until_empty: bool) -> bool:
        if any(lane.busy or lane.leased for lane in self._lanes.values()):
            return False
        for integration_id in await self._queue.integrations_with_events():
            integration = await self._store.get_integration(integration_id)
            if not _is_active(integration):
                continue
            if integration_id not in self._lanes and not self._stopping.is_set():
                self._start_lane(integration_id)
            info = await self._queue.ready_info(integration_id, self._clock())
            if info.ready > 0 or (until_empty and info.next_retry_at is not None):
                return False
        return True

    # -- one integration's loop --------------------------------------------------------------

    async def _run_lane(self, lane: _Lane) -> None:
        try:
            while not self._stopping.is_set():
                lane.wake.clear()
                try:
                    if not await self._step(lane):
                        return
                except Stopping:
                    return
                except Exception:
                    # A batch's own `finally` already tried to give its events back; if that
                    # failed too, the next batch (or the lease running out) does it.
                    log.exception("delivery failed integration=%s", lane.integration_id)
                    await self._sleep(lane, _ERROR_PAUSE_S)
        finally:
            if self._lanes.get(lane.integration_id) is lane:
                del self._lanes[lane.integration_id]

    async def _step(self, lane: _Lane) -> bool:
        """Wait for, or send, one batch. False when the integration has no events left."""
        # What the store says from here on includes every commit the queue has told of.
        lane.local_count = 0
        lane.local_oldest = None
        info = await self._queue.ready_info(lane.integration_id, self._clock())
        if info.ready == 0 and info.next_retry_at is None:
            # Nothing queued; a notify or an enqueue that arrived meanwhile means there is again.
            return lane.wake.is_set() or lane.local_count > 0
        integration = await self._configs.get(lane.integration_id)
        if not _is_active(integration):
            # A resume must not wait for the cache: look again in the store itself.
            integration = await self._configs.get(lane.integration_id, fresh=True)
        if integration is None or not _is_active(integration):
            await self._sleep(lane, _INACTIVE_POLL_S)
            return True
        config = integration.config
        lane.bucket = self._pacing.bucket(
            lane.integration_id, config.rate_limit_rps, config.rate_limit_burst
        )
        batch_delay = self._batch_delay(info)
        pacing_delay = self._pacing.wait_s(lane.integration_id)
        if batch_delay > 0 or pacing_delay > 0:
            await self._wait_for_batch(lane, info.ready, batch_delay, pacing_delay)
            # A due batch that only waited for its token goes at once: asking the store again
            # would spend, on every request, time in which a burst of 1 saves no token.
            if batch_delay > 0 or self._pacing.wait_s(lane.integration_id) > 0:
                return True
        at_least = self._max_events if self._full_batch_contested(info) else 1
        if not await self._run_batch(lane, integration, at_least):
            await self._sleep(lane, _LOST_RACE_PAUSE_S)
        return True

    def _full_batch_contested(self, info: ReadyInfo) -> bool:
        """True when the batch is due only because it is full, and other workers deliver from
        the same queue: one of them may claim it first, and the rest should then wait to fill
        up rather than go as a small batch (each request spends a token of TikTok's limit)."""
        if self._shared is None or info.ready < self._max_events:
            return False
        oldest = info.oldest_enqueued_at
        return oldest is None or oldest + self._max_wait_s > self._clock()

    async def _wait_for_batch(
        self, lane: _Lane, ready: int, batch_delay: float, pacing_delay: float
    ) -> None:
        """Sleep until the batch is due; `_enqueued` wakes the lane if it becomes due sooner."""
        delay = max(batch_delay, pacing_delay)
        if self._told and pacing_delay < batch_delay:
            # This process's enqueues are told of, other processes' events and expired leases
            # are not: while a batch fills, look at the store at least every sweep interval.
            delay = min(delay, max(self._sweep_interval_s, pacing_delay))
        now = self._clock()
        lane.known_ready = ready
        lane.not_before = now + pacing_delay
        if self._due_sooner(lane, now + delay):  # enqueued while the lane asked the store
            return
        lane.sleeping_until = now + delay
        try:
            await self._sleep(lane, delay)
        finally:
            lane.sleeping_until = None

    def _batch_delay(self, info: ReadyInfo) -> float:
        """Seconds until a batch is due: full, or its oldest ready event has waited enough."""
        now = self._clock()
        if info.ready >= self._max_events:
            return 0.0
        if info.ready == 0 or info.oldest_enqueued_at is None:
            next_at = info.next_retry_at if info.next_retry_at is not None else now
            return max(_MIN_SLEEP_S, next_at - now)
        return max(0.0, info.oldest_enqueued_at + self._max_wait_s - now)

    async def _run_batch(self, lane: _Lane, integration: Integration, at_least: int) -> bool:
        """Claim and deliver one batch; False when a claim of `at_least` found too few."""
        lane.busy = True
        lane.paused = False
        try:
            if at_least == 1:
                # The token before the claim: with a small burst none accrues while the claim
                # runs, so taking it after would stretch each request's period by the claim's
                # time and leave part of TikTok's rate limit unused.
                await self._take_token(lane)
                lane.token_taken = True
            # Otherwise the claim may find nothing (another worker took the batch): the token
            # is taken when the request goes, so a lost race spends none.
            now = self._clock()
            events = await self._queue.claim(
                lane.integration_id, self._max_events, now, self._lease_s, at_least
            )
            if not events and at_least > 1:
                return False
            lane.hold(events)
            fresh = await self._drop_too_old(lane, events, now)
            if fresh:
                await self._deliver(lane, integration, fresh)
            return True
        finally:
            # Anything not settled (stopping, an error) goes back without blame.
            await self._settle.give_back(lane)
            lane.busy = False
            lane.token_taken = False

    async def _drop_too_old(
        self, lane: _Lane, events: list[ClaimedEvent], now: float
    ) -> list[ClaimedEvent]:
        cutoff = now - self._max_age_s
        old = [e for e in events if e.event_time < cutoff]
        if old:
            days = self._settings.event_max_age_days
            await self._settle.dead_letter(
                lane, old, "too_old", f"event_time is older than {days} days; TikTok refuses it"
            )
        return [e for e in events if e.event_time >= cutoff]

    # -- sending -----------------------------------------------------------------------------------

    async def _deliver(
        self, lane: _Lane, integration: Integration, events: Sequence[ClaimedEvent]
    ) -> None:
        answer, verdict = await self._send(lane, integration, events)
        if verdict is Verdict.ACCEPTED:
            await self._settle.ack(lane, events)
        elif verdict in (Verdict.THROTTLED, Verdict.RETRY):
            await self._settle.retry(lane, events, answer)
        elif verdict is Verdict.PAUSE:
            await self._settle.pause(lane, integration, events, pause_reason(answer))
        elif verdict is Verdict.TOO_LARGE:
            await self._split_and_resend(lane, integration, events, answer)
        else:

            async def send(piece: Sequence[ClaimedEvent]) -> tuple[Answer, Verdict]:
                return await self._send(lane, integration, piece)

            await Isolation(self._settle, lane, integration, send, answer).run(events)

    async def _split_and_resend(
        self,
        lane: _Lane,
        integration: Integration,
        events: Sequence[ClaimedEvent],
        answer: Answer,
    ) -> None:
        if len(events) == 1:
            # One event TikTok calls too large: no split can help it.
            await self._settle.dead_letter(lane, events, "too_large", answer.describe())
            return
        for half in halves(events):
            if lane.paused:
                return
            await self._deliver(lane, integration, half)

    async def _send(
        self, lane: _Lane, integration: Integration, events: Sequence[ClaimedEvent]
    ) -> tuple[Answer, Verdict]:
        if lane.token_taken:
            lane.token_taken = False
        else:
            await self._take_token(lane)
        destination = destinations.get(integration.vendor)
        # Every event of a lane comes from the integration's one source: one envelope fits all.
        source = await self._configs.get_source(integration.source_id)
        started = self._monotonic()
        answer = await self._clients[integration.vendor].send(
            integration, source, [e.payload for e in events]
        )
        elapsed = self._monotonic() - started
        verdict = destination.classify(answer)
        self.requests_sent += 1
        if self._ledger is not None:
            self._note_batch(integration, source, events, verdict, answer)
        self._metrics.tiktok_requests.labels(lane.integration_id, verdict.value).inc()
        self._metrics.tiktok_request_seconds.observe(elapsed)
        self._metrics.batch_size.observe(len(events))
        if self._request_stats is not None:
            self._request_stats.note(lane.integration_id, self._clock(), len(events), elapsed)
        if verdict is Verdict.THROTTLED:
            self._pacing.throttled(lane.integration_id, answer.retry_after_s)
            if self._shared is not None and lane.bucket is not None:
                await self._shared.slow_down(
                    lane.integration_id,
                    lane.bucket.rate_per_s,
                    lane.bucket.burst,
                    hold_s=min(answer.retry_after_s or 0.0, MAX_RETRY_AFTER_S),
                )
            self._show_rate(lane)
        if self._pacing.answered(lane.integration_id, failed=verdict in _FAILED):
            log.warning(
                "tiktok keeps failing integration=%s: one probe batch per backoff until it answers",
                lane.integration_id,
            )
        log.debug(
            "tiktok answered integration=%s events=%d verdict=%s code=%s request_id=%s",
            lane.integration_id,
            len(events),
            verdict.value,
            answer.code,
            answer.request_id,
        )
        return answer, verdict

    def _note_batch(
        self,
        integration: Integration,
        source: Source | None,
        events: Sequence[ClaimedEvent],
        verdict: Verdict,
        answer: Answer,
    ) -> None:
        """The debugger's row of this request: buffered, never waited on; its body (exactly
        what the destination posted, never the token, which travels in a header) is made again
        on the store's writer thread."""
        assert self._ledger is not None
        destination = destinations.get(integration.vendor)
        payloads = [e.payload for e in events]

        def render() -> bytes:
            return destination.request_bytes(integration, source, payloads)

        status = status_of(verdict.value)
        self._ledger.note(
            [SentBatch(integration.id, self._clock(), status, reply(answer), events, render)]
        )

    async def _take_token(self, lane: _Lane) -> None:
        """One token per request (and one of the cluster's, when shared); waits for it, unless
        the worker is stopping."""
        assert lane.bucket is not None
        while True:
            if self._stopping.is_set():
                raise Stopping
            now = self._monotonic()
            if lane.bucket.try_take(now):
                self._show_rate(lane)
                break
            await self._sleep_until_stopped(lane.bucket.wait_time(now))
        while self._shared is not None:
            if self._stopping.is_set():
                raise Stopping
            bucket = lane.bucket
            wait = await self._shared.take(lane.integration_id, bucket.rate_per_s, bucket.burst)
            if wait <= 0:
                return
            await self._sleep_until_stopped(wait)

    def _show_rate(self, lane: _Lane) -> None:
        if lane.bucket is not None:
            rate = lane.bucket.current_rate
            self._metrics.integration_send_rate.labels(lane.integration_id).set(rate)

    async def _sleep(self, lane: _Lane, delay: float) -> None:
        """Sleep up to `delay`, or until the lane is notified (or the worker stops)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lane.wake.wait(), delay)

    async def _sleep_until_stopped(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)


def _is_active(integration: Integration | None) -> bool:
    return integration is not None and integration.enabled and integration.paused_reason is None
