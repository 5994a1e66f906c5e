"""What the admin surface is given: the stores it manages and hooks into delivery.

Built by `gateway.wiring`. The delivery worker is reached only through `wake` and `refresh`
(None when this process runs no worker).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.collect.route import Router
from gateway.config.base import ConfigStore
from gateway.core.metrics import Metrics
from gateway.core.settings import Secret, Settings
from gateway.deliver.consumers import LogConsumers
from gateway.destinations.base import Client
from gateway.ledger.base import Ledger
from gateway.ledger.refused import RefusedHits
from gateway.ledger.requests import RequestStats


@dataclass(frozen=True, slots=True)
class AdminContext:
    settings: Settings
    metrics: Metrics
    store: ConfigStore
    queue: LogConsumers  # the integrations' view of the hit log
    ledger: Ledger
    router: Router
    admin_tokens: tuple[Secret, ...]
    clients: Mapping[str, Client]  # per vendor: the integration test's sample send
    # Send an integration's waiting events now (after a resume or a replay).
    wake: Callable[[str], None] | None = None
    # Re-read the configuration now (a source's envelope changed).
    refresh: Callable[[], None] | None = None
    # The requests collection refused in this process (shared with the collect context).
    refused: RefusedHits = field(default_factory=RefusedHits)
    # Batch sizes and latencies of the requests this process's worker sent, per minute.
    request_stats: RequestStats = field(default_factory=RequestStats)
