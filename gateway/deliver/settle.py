"""What becomes of claimed events once TikTok has answered: the queue side of delivery.

Every claimed event ends in exactly one of these, and `Settlement` is the one place that does
them (with their counters, metrics and log lines):

    ack          TikTok accepted it: gone from the queue, counted delivered
    retry        released with capped, jittered backoff (never before Retry-After), counted failed
    pause        released unblamed; the integration is paused with TikTok's reason
    dead_letter  set aside with the reason and TikTok's answer
    give_back    released unblamed (the worker stops, an error): nothing is lost

`Holding` is what one integration's lane has claimed and not settled yet; whatever a batch leaves
in it is given back when the batch ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from gateway.config.base import ConfigStore
from gateway.core.metrics import Metrics
from gateway.core.models import ClaimedEvent, Integration
from gateway.deliver.backoff import retry_at
from gateway.deliver.queue import Queue
from gateway.destinations.base import Answer
from gateway.ledger.base import DEAD_LETTERED, PAUSED, RETRYING, Ledger, failures

log = logging.getLogger("gateway.deliver.worker")


class Stopping(Exception):
    """The worker is stopping: send nothing more, give back what is held."""


class Counters(Protocol):
    """The delivery worker's counters that settling events moves (tests and logs read them)."""

    events_delivered: int
    events_retried: int
    events_dead_lettered: int
    isolation_requests: int


@dataclass(slots=True)
class Holding:
    """The events one integration's lane has claimed and not yet settled, by queue id."""

    integration_id: str
    leased: dict[int | str, ClaimedEvent] = field(default_factory=dict)
    # Set when the current batch paused the integration: send nothing more from it.
    paused: bool = False

    def hold(self, events: Sequence[ClaimedEvent]) -> None:
        self.leased.update((e.id, e) for e in events)

    def held(self) -> list[ClaimedEvent]:
        return list(self.leased.values())

    def forget(self, events: Sequence[ClaimedEvent]) -> None:
        for event in events:
            self.leased.pop(event.id, None)


class Settlement:
    """Acks, retries, pauses, dead-letters and gives back claimed events."""

    def __init__(
        self,
        queue: Queue,
        store: ConfigStore,
        metrics: Metrics,
        counters: Counters,
        *,
        clock: Callable[[], float],
        rng: Callable[[], float],
        backoff_base_s: float,
        backoff_cap_s: float,
        on_pause: Callable[[Integration], None],
        ledger: Ledger | None = None,
    ) -> None:
        self._ledger = ledger
        self._queue = queue
        self._store = store
        self._metrics = metrics
        self.counters = counters
        self._clock = clock
        self._rng = rng
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        # Told the integration as it now is (paused), so caches say so before the store does.
        self._on_pause = on_pause

    async def ack(self, holding: Holding, events: Sequence[ClaimedEvent]) -> None:
        await self._queue.ack(holding.integration_id, ids(events), self._clock())
        holding.forget(events)
        self.counters.events_delivered += len(events)
        self._metrics.events_delivered.labels(holding.integration_id).inc(len(events))

    async def retry(
        self, holding: Holding, events: Sequence[ClaimedEvent], answer: Answer
    ) -> float:
        """Release with backoff; returns when the events may be tried again (clock time)."""
        now = self._clock()
        attempt = max(e.attempts for e in events)
        when = retry_at(
            now,
            attempt,
            base_s=self._backoff_base_s,
            cap_s=self._backoff_cap_s,
            rng=self._rng,
            retry_after_s=answer.retry_after_s,
        )
        error = answer.describe()
        self._note(holding, events, RETRYING, now, error, answer)
        await self._queue.release(holding.integration_id, ids(events), when, error, now)
        holding.forget(events)
        self.counters.events_retried += len(events)
        self._metrics.events_failed.labels(holding.integration_id).inc(len(events))
        log.warning(
            "delivery will retry integration=%s events=%d attempt=%d in_s=%.2f error=%s",
            holding.integration_id,
            len(events),
            attempt,
            when - now,
            error,
        )
        return when

    async def pause(
        self,
        holding: Holding,
        integration: Integration,
        events: Sequence[ClaimedEvent],
        reason: str,
    ) -> None:
        """Pause the integration; its events go back unblamed and wait for the resume."""
        now = self._clock()
        if events:
            self._note(holding, events, PAUSED, now, reason)
            await self._queue.release(holding.integration_id, ids(events), now, None, now)
            holding.forget(events)
        await self._store.set_paused(holding.integration_id, reason)
        holding.paused = True
        self._on_pause(replace(integration, paused_reason=reason))
        self._metrics.integration_paused.labels(holding.integration_id).set(1)
        log.warning("integration paused integration=%s reason=%s", holding.integration_id, reason)

    async def dead_letter(
        self, holding: Holding, events: Sequence[ClaimedEvent], reason: str, answer: str | None
    ) -> None:
        now = self._clock()
        self._note(holding, events, DEAD_LETTERED, now, f"{reason}: {answer}" if answer else reason)
        await self._queue.dead_letter(holding.integration_id, ids(events), reason, answer, now)
        holding.forget(events)
        self.counters.events_dead_lettered += len(events)
        self._metrics.events_dead_lettered.labels(holding.integration_id, reason).inc(len(events))
        log.warning(
            "events dead-lettered integration=%s events=%d reason=%s answer=%s",
            holding.integration_id,
            len(events),
            reason,
            answer,
        )

    async def give_back(self, holding: Holding) -> None:
        """Release, without error, every event the lane still holds."""
        if not holding.leased:
            return
        held = holding.held()
        now = self._clock()
        await self._queue.release(holding.integration_id, ids(held), now, None, now)
        holding.forget(held)

    def _note(
        self,
        holding: Holding,
        events: Sequence[ClaimedEvent],
        status: str,
        now: float,
        why: str,
        answer: Answer | None = None,
    ) -> None:
        """Tell the debugger's store: a row per event that did not deliver (buffered, never
        waited on). Delivered events have none: their request's batch row says it."""
        if self._ledger is not None:
            rows = failures(holding.integration_id, events, status, now, reason=why, answer=answer)
            self._ledger.note(rows)


def pause_reason(answer: Answer) -> str:
    return answer.describe()


def ids(events: Sequence[ClaimedEvent]) -> list[int | str]:
    return [e.id for e in events]
