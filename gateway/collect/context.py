"""What the collection surface is given: enough to route, store and count hits, nothing more.

Built by `gateway.wiring`. Nothing here can reach a destination over the network: collection
only writes events to the queue, and the delivery worker (when it runs in this process) is told
through `notify`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.collect.cookies import IdentityCodec
from gateway.collect.route import Router
from gateway.core.metrics import Metrics
from gateway.core.models import NewEvent
from gateway.core.settings import Settings
from gateway.ledger.base import Observation
from gateway.ledger.refused import RefusedHits


class EventWriter(Protocol):
    """The queue's writer side: all collection may do with it."""

    async def enqueue(self, events: Sequence[NewEvent]) -> None: ...

    async def dead_letter_new(
        self, events: Sequence[NewEvent], reason: str, answer: str | None, now: float
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class CollectContext:
    settings: Settings
    router: Router
    events: EventWriter
    metrics: Metrics
    identity_codec: IdentityCodec
    # The ledger's buffered write: the debugger's records of each hit, never waited for.
    observe: Callable[[Sequence[Observation]], None]
    # Wakes the in-process delivery worker for an integration with new events (None when this
    # process runs no worker).
    notify: Callable[[str], None] | None = None
    # The requests this process refused, for the debugger (in memory, bounded).
    refused: RefusedHits = field(default_factory=RefusedHits)
