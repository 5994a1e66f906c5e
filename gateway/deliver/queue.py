"""The queue the delivery worker and settlement work against, whatever stores the events.

`consumers.LogConsumers` implements it over the hit log: each integration's events are its
source's log records, planned for it when claimed, and its retries and dead letters.

Life of an event: `enqueue` (durable when it returns) -> `claim` (leased to one worker for
`lease_s`; an expired lease makes it claimable again, which is how a crashed worker's events come
back) -> one of `ack` (TikTok accepted: gone, counted delivered), `release` (retry at a later time,
counted failed) or `dead_letter` (kept aside with the reason until replayed or purged).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

from gateway.core.models import ClaimedEvent, DeadLetter, IntegrationStats, NewEvent, ReadyInfo

# Told, on the event loop, after each commit of this queue instance's enqueues: the integration,
# how many of its events the commit stored, and the enqueue time of the first of them.
EnqueueListener = Callable[[str, int, float], None]


class Queue(abc.ABC):
    """A durable, per-integration event queue with leases, dead letters and counters."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Create files/tables as needed and start background writers."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending writes and release resources."""

    @abc.abstractmethod
    async def enqueue(self, events: Sequence[NewEvent]) -> None:
        """Store events durably; returns only once they would survive a process crash.

        Raises `QueueFull` when a bound would be exceeded: the number of queued events, or the
        bytes the queue takes in its storage where the backend measures them (`size_bytes`).
        Nothing of that call is stored then. Concurrent callers share commits (group commit).
        """

    def add_enqueue_listener(self, listener: EnqueueListener) -> bool:
        """Be told of every commit of this instance's enqueues (see `EnqueueListener`), so a
        delivery worker in the same process knows what arrives without asking `ready_info`.

        False when this backend does not tell; the caller must then ask the store.
        """
        return False

    def remove_enqueue_listener(self, listener: EnqueueListener) -> None:
        """Stop telling `listener` (nothing happens when it was not added)."""
        del listener  # this backend tells nobody

    @abc.abstractmethod
    async def ready_info(self, integration_id: str, now: float) -> ReadyInfo:
        """How many events could be claimed now, and how old the oldest is.

        A backend may stop counting past 10,000 due events (less what is leased): ten batches of
        TikTok's largest tell a worker enough, and counting a backlog of millions would not.
        """

    @abc.abstractmethod
    async def claim(
        self, integration_id: str, limit: int, now: float, lease_s: float, at_least: int = 1
    ) -> list[ClaimedEvent]:
        """Lease up to `limit` ready events, oldest first, and count one attempt on each.

        With fewer than `at_least` ready, lease none: a worker of several that expects a full
        batch passes the batch size, so when another one took that batch first it does not
        send what was left as a small one.
        """

    @abc.abstractmethod
    async def ack(self, integration_id: str, ids: Sequence[int | str], now: float) -> None:
        """TikTok accepted these: remove them and count them delivered."""

    @abc.abstractmethod
    async def release(
        self,
        integration_id: str,
        ids: Sequence[int | str],
        retry_at: float,
        error: str | None,
        now: float,
    ) -> None:
        """Give leased events back, claimable again at `retry_at`.

        With an `error` the attempt counts as failed and becomes the integration's last error;
        without one (a pause, a shutdown) the attempt is not held against the events.
        """

    @abc.abstractmethod
    async def dead_letter(
        self,
        integration_id: str,
        ids: Sequence[int | str],
        reason: str,
        answer: str | None,
        now: float,
    ) -> None:
        """Move leased events aside with the reason and TikTok's answer."""

    @abc.abstractmethod
    async def dead_letter_new(
        self, events: Sequence[NewEvent], reason: str, answer: str | None, now: float
    ) -> None:
        """Record events that were never queued (e.g. a purchase without value) as dead letters."""

    @abc.abstractmethod
    async def stats(self, integration_id: str) -> IntegrationStats:
        """Counters and the last error/success of one integration."""

    @abc.abstractmethod
    async def depth(self) -> int:
        """Events queued across all integrations (dead letters excluded)."""

    async def size_bytes(self) -> int | None:
        """Bytes the queue takes in its storage (queued events and dead letters), or None when
        this backend does not measure them (and so bounds only the number of events)."""
        return None

    @abc.abstractmethod
    async def integrations_with_events(self) -> list[str]:
        """Integrations that have queued events (so a worker knows whom to serve)."""

    @abc.abstractmethod
    async def list_dead_letters(
        self, integration_id: str, limit: int = 100, offset: int = 0
    ) -> list[DeadLetter]:
        """Dead letters of one integration, oldest first."""

    @abc.abstractmethod
    async def replay_dead_letters(
        self, integration_id: str, ids: Sequence[int | str] | None, now: float
    ) -> list[DeadLetter]:
        """Move dead letters (these ids, or all when None) back to the queue, ready now.

        Returns the dead letters that were moved; their `event_id` is unchanged. The caller
        decides beforehand which ids may go (consent is re-checked there).
        """

    @abc.abstractmethod
    async def purge_dead_letters(self, integration_id: str, ids: Sequence[int | str] | None) -> int:
        """Delete dead letters (these ids, or all when None); returns how many."""

    @abc.abstractmethod
    async def recover_leases(self, now: float) -> int:
        """Make events leased by a delivery worker that no longer runs claimable now.

        Called when a delivery worker starts. The embedded queue has one delivering process per
        data directory, so every lease left in it belongs to a process that died: without this a
        restart after SIGKILL would wait for the leases to expire. Returns how many came back.
        """

    @abc.abstractmethod
    async def drop_integration(self, integration_id: str) -> None:
        """Forget an integration's events, dead letters and counters (it was deleted)."""
