"""Group commit, shared by the hit log's backends: appends that arrive while a commit is in
flight wait together and share the next one.

Each backend says how a group is stored (`commit`: one SQLite transaction, one Redis script) and
which of its calls fit under the log's bound; this module does the waiting and the answering.
A caller whose events fit gets its 2xx only after the commit that stored them; one whose events
did not fit gets `QueueFull`; when the commit fails, every caller gets a `StoreError` of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from prometheus_client.registry import Collector

from gateway.core.errors import QueueFull, StoreError
from gateway.core.metrics import CountedElsewhere

Item = TypeVar("Item")


@dataclass(slots=True)
class Waiting(Generic[Item]):
    """One enqueue call waiting for the next group commit: what it stores, and how many events."""

    item: Item
    count: int
    future: asyncio.Future[None]


class GroupCommit(Generic[Item]):
    """`commit(items)` stores the items that fit and says which did, in order.

    `max_events` caps the events of one commit (a Redis script blocks Redis while it runs);
    `committed` hears of the items each commit stored. `commits` counts the commits that stored
    something and `enqueued` the events they stored.
    """

    def __init__(
        self,
        commit: Callable[[list[Item]], Awaitable[Sequence[bool]]],
        *,
        max_events: int | None = None,
        committed: Callable[[list[Item]], None] | None = None,
    ) -> None:
        self.commits = 0
        self.enqueued = 0
        self._commit = commit
        self._max_events = max_events
        self._committed = committed
        self._pending: list[Waiting[Item]] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Calls waiting for the next commit."""
        return len(self._pending)

    async def submit(self, item: Item, count: int) -> None:
        """Wait until `item` is stored (or refused: `QueueFull`, `StoreError`)."""
        waiting = Waiting(item, count, asyncio.get_running_loop().create_future())
        self._pending.append(waiting)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await waiting.future

    async def finish(self) -> None:
        """Let the commit in flight, and the calls already waiting, finish."""
        if self._flusher is not None:
            await self._flusher

    async def _flush(self) -> None:
        """Commit whatever is pending, again and again until nothing is."""
        try:
            # No linger: what arrived while the last commit was in flight goes at once (the
            # former queue's linger bought CPU with latency; the paced p99 cannot spare it).
            while self._pending:
                # A caller that gave up (its request was cancelled) never answered 2xx.
                calls = [c for c in self._take() if not c.future.done()]
                if calls:
                    await self._commit_group(calls)
        finally:
            self._flusher = None

    def _take(self) -> list[Waiting[Item]]:
        if self._max_events is None:
            taken, self._pending = self._pending, []
            return taken
        size, n, pending = 0, 0, self._pending
        while n < len(pending) and (n == 0 or size + pending[n].count <= self._max_events):
            size += pending[n].count
            n += 1
        taken, self._pending = self._pending[:n], self._pending[n:]
        return taken

    async def _commit_group(self, calls: list[Waiting[Item]]) -> None:
        try:
            accepted = await self._commit([c.item for c in calls])
        except Exception as exc:
            for call in calls:
                if not call.future.done():
                    # A fresh error per caller: one exception object raised in many tasks would
                    # collect all their tracebacks.
                    error = StoreError(str(exc) or type(exc).__name__)
                    error.__cause__ = exc
                    call.future.set_exception(error)
            return
        stored = [c for c, ok in zip(calls, accepted, strict=True) if ok]
        if stored:
            self.commits += 1
            self.enqueued += sum(c.count for c in stored)
            if self._committed is not None:
                self._committed([c.item for c in stored])
        for call, ok in zip(calls, accepted, strict=True):
            if not call.future.done():
                if ok:
                    call.future.set_result(None)
                else:
                    call.future.set_exception(QueueFull())


class GroupCommitting:
    """What a queue that enqueues through a `GroupCommit` (as `_group`) tells of its commits:
    `commits`, `enqueued` (this instance only), and the two as Prometheus counters."""

    _group: GroupCommit[Any]

    # (name, help) of the commits counter and of the stored-events counter. Another kind of
    # store (the hit log) names its own, so one process can register both in one registry.
    commit_metric_names: ClassVar[tuple[tuple[str, str], tuple[str, str]]] = (
        ("gateway_group_commits", "Group commits by this process"),
        ("gateway_group_committed_items", "Items stored by this process's group commits"),
    )

    @property
    def commits(self) -> int:
        return self._group.commits

    @property
    def enqueued(self) -> int:
        return self._group.enqueued

    @property
    def events_per_commit(self) -> float:
        """Mean events stored per group commit so far (0 before the first)."""
        return self.enqueued / self.commits if self.commits else 0.0

    def commit_metrics(self) -> Collector:
        """Prometheus counters of the group commits (read at scrape time, nothing per hit):
        named by `commit_metric_names` (the hit log's: `gateway_log_commits_total` and
        `gateway_log_committed_records_total`); their rates' ratio is the records per commit."""
        (commits_name, commits_help), (stored_name, stored_help) = self.commit_metric_names
        return CountedElsewhere(
            [
                (commits_name, commits_help, lambda: self.commits),
                (stored_name, stored_help, lambda: self.enqueued),
            ]
        )
