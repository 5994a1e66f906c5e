"""Prometheus metrics, through prometheus-client, in a registry per process (tests run many)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@dataclass(slots=True)
class Metrics:
    registry: CollectorRegistry = field(default_factory=_registry)
    hits: Counter = field(init=False)
    hits_rejected: Counter = field(init=False)
    events_enqueued: Counter = field(init=False)
    events_skipped: Counter = field(init=False)
    events_delivered: Counter = field(init=False)
    events_failed: Counter = field(init=False)
    events_dead_lettered: Counter = field(init=False)
    tiktok_requests: Counter = field(init=False)
    tiktok_request_seconds: Histogram = field(init=False)
    batch_size: Histogram = field(init=False)
    queue_depth: Gauge = field(init=False)
    queue_bound: Gauge = field(init=False)
    queue_bytes: Gauge = field(init=False)
    queue_bytes_bound: Gauge = field(init=False)
    integration_paused: Gauge = field(init=False)
    integration_send_rate: Gauge = field(init=False)
    client_faults: Counter = field(init=False)
    admin_streams_open: Gauge = field(init=False)

    _hit_children: dict[str, Counter] = field(init=False, default_factory=dict)
    _enqueued_children: dict[str, Counter] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        r = self.registry
        self.hits = Counter(
            "gateway_hits", "Collection hits accepted, by type", ["type"], registry=r
        )
        self.hits_rejected = Counter(
            "gateway_hits_rejected",
            "Collection requests refused, by reason",
            ["reason"],
            registry=r,
        )
        self.events_enqueued = Counter(
            "gateway_events_enqueued", "Events stored for delivery", ["integration"], registry=r
        )
        self.events_skipped = Counter(
            "gateway_events_skipped",
            "Events not sent to an integration, by reason (consent, missing value, ...)",
            ["integration", "reason"],
            registry=r,
        )
        self.events_delivered = Counter(
            "gateway_events_delivered", "Events TikTok accepted", ["integration"], registry=r
        )
        self.events_failed = Counter(
            "gateway_events_failed",
            "Event delivery attempts that failed and will be retried",
            ["integration"],
            registry=r,
        )
        self.events_dead_lettered = Counter(
            "gateway_events_dead_lettered",
            "Events set aside as dead letters",
            ["integration", "reason"],
            registry=r,
        )
        self.tiktok_requests = Counter(
            "gateway_tiktok_requests",
            "Requests sent to TikTok, by outcome",
            ["integration", "outcome"],
            registry=r,
        )
        self.tiktok_request_seconds = Histogram(
            "gateway_tiktok_request_seconds", "Duration of requests to TikTok", registry=r
        )
        self.batch_size = Histogram(
            "gateway_batch_size",
            "Events per TikTok request",
            buckets=(1, 5, 10, 50, 100, 250, 450, 500, 1000),
            registry=r,
        )
        self.queue_depth = Gauge("gateway_queue_depth", "Events waiting for delivery", registry=r)
        self.queue_bound = Gauge("gateway_queue_bound", "Most events the queue holds", registry=r)
        self.queue_bytes = Gauge(
            "gateway_queue_bytes",
            "Bytes the queue takes in its storage, dead letters included",
            registry=r,
        )
        self.queue_bytes_bound = Gauge(
            "gateway_queue_bytes_bound", "Most bytes the queue may take in its storage", registry=r
        )
        self.integration_paused = Gauge(
            "gateway_integration_paused",
            "1 when an integration is paused",
            ["integration"],
            registry=r,
        )
        self.integration_send_rate = Gauge(
            "gateway_integration_send_rate",
            "Requests per second an integration's token bucket allows now"
            " (below rate_limit_rps while TikTok throttles it)",
            ["integration"],
            registry=r,
        )

        self.client_faults = Counter(
            "gateway_client_faults",
            "Requests and connections refused or closed because of the client, by kind"
            " (malformed, aborted, header_timeout, body_timeout, over_capacity)",
            ["kind"],
            registry=r,
        )
        self.admin_streams_open = Gauge(
            "gateway_admin_streams_open",
            "Event streams (GET /v1/admin/events/stream) being served now",
            registry=r,
        )

    # `labels()` takes a lock and builds a key on every call; the hot path asks for the same
    # few children on every hit, so they are remembered.
    def hit_counter(self, hit_type: str) -> Counter:
        child = self._hit_children.get(hit_type)
        if child is None:
            child = self._hit_children[hit_type] = self.hits.labels(hit_type)
        return child

    def enqueued_counter(self, integration_id: str) -> Counter:
        child = self._enqueued_children.get(integration_id)
        if child is None:
            child = self._enqueued_children[integration_id] = self.events_enqueued.labels(
                integration_id
            )
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CountedElsewhere(Collector):
    """Counters kept as plain numbers by the object that counts, read only at scrape time.

    `(name, help, read)` per counter: the hot path adds to an int, never to a Prometheus child.
    """

    def __init__(self, counters: Sequence[tuple[str, str, Callable[[], float]]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, documentation, read in self._counters:
            yield CounterMetricFamily(name, documentation, value=read())
