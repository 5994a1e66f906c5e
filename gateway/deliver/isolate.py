"""Isolation of the events TikTok rejects for their content, by splitting the batch it refused.

A piece known to hold a bad event is split; its left half is sent. If the left half is
accepted, the right half must hold the bad event: it is split without being sent whole.
If the left half fails, it is searched, and the right half is sent on its own. A single
bad event costs about log2(n) extra requests.

While nothing has succeeded and every failure carried the same code, the fault may not be
the events' at all (an unknown pixel fails everything alike): failing right halves are then
set aside instead of searched. If no success comes by the time the search has gone down to
one event and back up (about 2*log2(n) requests), the integration is paused and the events
go back unblamed; otherwise the set-aside halves are searched as usual.

An answer that is not a content rejection (throttled, TikTok down, token rejected) interrupts
the search: what was proven bad stays dead-lettered, the rest is retried or waits for a resume.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from gateway.core.models import ClaimedEvent, Integration
from gateway.deliver.settle import Holding, Settlement, Stopping, pause_reason
from gateway.destinations.base import Answer, Verdict

log = logging.getLogger("gateway.deliver.worker")

# Sends one piece of the batch (taking a token from the integration's bucket) and classifies.
Send = Callable[[Sequence[ClaimedEvent]], Awaitable[tuple[Answer, Verdict]]]


class Interrupted(Exception):
    """TikTok answered something during isolation that stops it (throttled, down, paused)."""

    def __init__(self, answer: Answer, verdict: Verdict) -> None:
        super().__init__(verdict.value)
        self.answer = answer
        self.verdict = verdict


class Isolation:
    """Finds and dead-letters the bad events of one refused batch (see the module docstring)."""

    def __init__(
        self,
        settle: Settlement,
        holding: Holding,
        integration: Integration,
        send: Send,
        first_answer: Answer,
    ) -> None:
        self._settle = settle
        self._holding = holding
        self._integration = integration
        self._send = send
        self._first = first_answer
        self._uniform = True  # no success yet, every failure with the first answer's code
        self._bad: list[tuple[ClaimedEvent, str]] = []
        self._deferred: list[tuple[list[ClaimedEvent], str]] = []
        self.requests = 0
        self.dead_lettered = 0

    async def run(self, events: Sequence[ClaimedEvent]) -> None:
        batch = list(events)
        outcome = "isolated"
        try:
            await self._search_bad(batch, self._first.describe())
            if self._uniform and len(batch) > 1:
                outcome = "uniform_fault"
                await self._pause_for_uniform_fault()
                return
            while self._deferred:
                piece, message = self._deferred.pop()
                await self._search_bad(piece, message)
            await self._dead_letter_bad()
        except Interrupted as stop:
            outcome = f"interrupted_{stop.verdict.value}"
            await self._settle_interrupted(stop)
        except Stopping:
            outcome = "stopping"
            if not self._uniform:
                await self._dead_letter_bad()
            raise
        finally:
            log.info(
                "isolation integration=%s events=%d extra_requests=%d dead_lettered=%d outcome=%s",
                self._holding.integration_id,
                len(batch),
                self.requests,
                self.dead_lettered,
                outcome,
            )

    async def _search_bad(self, piece: list[ClaimedEvent], message: str) -> None:
        """`piece` holds at least one bad event: find them."""
        if len(piece) == 1:
            self._bad.append((piece[0], message))
            return
        left, right = halves(piece)
        left_answer = await self._probe(left)
        if left_answer is None:
            await self._search_bad(right, message)
            return
        await self._search_bad(left, left_answer.describe())
        await self._search_unknown(right)

    async def _search_unknown(self, piece: list[ClaimedEvent]) -> None:
        answer = await self._probe(piece)
        if answer is None:
            return
        if self._uniform:
            self._deferred.append((piece, answer.describe()))
            return
        await self._search_bad(piece, answer.describe())

    async def _probe(self, piece: list[ClaimedEvent]) -> Answer | None:
        """Send a piece: None when accepted (and acked), TikTok's answer when rejected."""
        self.requests += 1
        self._settle.counters.isolation_requests += 1
        answer, verdict = await self._send(piece)
        if verdict is Verdict.ACCEPTED:
            await self._settle.ack(self._holding, piece)
            self._uniform = False
            return None
        if verdict is Verdict.REJECT_CONTENT:
            if answer.code != self._first.code:
                self._uniform = False
            return answer
        raise Interrupted(answer, verdict)

    async def _dead_letter_bad(self) -> None:
        by_message: dict[str, list[ClaimedEvent]] = {}
        for event, message in self._bad:
            if event.id in self._holding.leased:
                by_message.setdefault(message, []).append(event)
        for message, events in by_message.items():
            await self._settle.dead_letter(self._holding, events, "rejected", message)
            self.dead_lettered += len(events)
        self._bad.clear()

    async def _pause_for_uniform_fault(self) -> None:
        reason = (
            f"{pause_reason(self._first)} (every part of a batch, down to single events,"
            " was rejected alike)"
        )
        await self._settle.pause(self._holding, self._integration, self._holding.held(), reason)

    async def _settle_interrupted(self, stop: Interrupted) -> None:
        # What was already proven bad stays proven; the rest is retried or waits for a resume.
        if not self._uniform:
            await self._dead_letter_bad()
        held = self._holding.held()
        if not held:
            return
        if stop.verdict is Verdict.PAUSE:
            reason = pause_reason(stop.answer)
            await self._settle.pause(self._holding, self._integration, held, reason)
        else:
            await self._settle.retry(self._holding, held, stop.answer)


def halves(events: Sequence[ClaimedEvent]) -> tuple[list[ClaimedEvent], list[ClaimedEvent]]:
    middle = len(events) // 2
    return list(events[:middle]), list(events[middle:])
