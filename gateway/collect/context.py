"""What the collection surface is given: enough to route, append and count hits, nothing more.

Built by `gateway.wiring`. Nothing here can reach a destination over the network: collection
only appends hits to the hit log, and the delivery worker (when it runs in this process) is told
through `appended`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.collect.cookies import IdentityCodec
from gateway.collect.route import Router
from gateway.core.metrics import Metrics
from gateway.core.settings import Settings
from gateway.ledger.base import Claim
from gateway.ledger.refused import RefusedHits
from gateway.log.base import LogRecord


class LogWriter(Protocol):
    """The hit log's writer side: all collection may do with it."""

    async def append(self, records: Sequence[LogRecord]) -> list[str]: ...


# Told after an append: the integrations that will read the records, how many there were, and
# when they were received.
Appended = Callable[[Sequence[str], int, float], None]


@dataclass(frozen=True, slots=True)
class CollectContext:
    settings: Settings
    router: Router
    log: LogWriter
    metrics: Metrics
    identity_codec: IdentityCodec
    # The ledger's buffered write, for hits no integration will read (never waited for).
    note: Callable[[Sequence[Claim]], None]
    # Tells the in-process delivery worker of new records (None when this process runs none).
    appended: Appended | None = None
    # The requests this process refused, for the debugger (in memory, bounded).
    refused: RefusedHits = field(default_factory=RefusedHits)
