"""The delivery worker on a real SQLite hit log and store, against the TikTok double.

Shared by `test_deliver.py` (batching, retries, rate limits) and `test_faults.py` (outages, bad
tokens, floods). Events reach the worker as they do in the gateway: `enqueue` appends real
collection records (a purchase hit each, rendered by `gateway.collect.rawhit.render`) to the
hit log, and the integrations read them through `LogConsumers`, the worker's queue. The worker's
wall clock, and the records' receive time, is a `Clock`: real time unless a test freezes it and
moves it by hand.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.collect.rawhit import RawRequest, render
from gateway.config.sqlite import SQLiteConfigStore
from gateway.core.crypto import SecretBox
from gateway.core.hit import Hit, Properties
from gateway.core.metrics import Metrics
from gateway.core.models import Integration, Source
from gateway.core.settings import Secret, Settings
from gateway.deliver.consumers import LogConsumers
from gateway.deliver.worker import DeliveryWorker
from gateway.destinations.base import HitContext
from gateway.destinations.tiktok.client import TikTokClient, TikTokSender
from gateway.destinations.tiktok.config import TikTokConfig
from gateway.log.base import LogRecord
from gateway.log.sqlite import SQLiteHitLog
from tests.tiktok_double import TikTokDouble

TOKEN = "tok_delivery_secret_0123456789"
PIXEL = "CPIXELDELIVERY000001"
INTEGRATION = "int_tiktok"
SOURCE = "src"  # INTEGRATION's source; any other integration gets a source of its own
IP = "203.0.113.50"
USER_AGENT = "Mozilla/5.0"
# What every purchase costs: TikTok's CompletePayment needs a value and a currency.
TOTAL, CURRENCY = 12.5, "USD"
_serial = itertools.count()
# Options of `start_worker` that are gateway settings; the others are the worker's own knobs.
_SETTINGS = ("batch_max_events", "batch_max_wait_ms", "event_max_age_days")


class Clock:
    """The worker's wall clock and the records' receive time: real time, or frozen and moved by
    hand.

    Frozen, it lets a test compress a day-long outage into a few rounds: every `advance` is an
    hour in which the lane may act once, and nothing else happens in between.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen: float | None = None

    def __call__(self) -> float:
        return self._frozen if self._frozen is not None else time.time() + self._offset

    def freeze(self) -> None:
        self._frozen = self()

    def flow(self) -> None:
        if self._frozen is not None:
            self._offset = self._frozen - time.time()
            self._frozen = None

    def advance(self, seconds: float) -> None:
        if self._frozen is not None:
            self._frozen += seconds
        else:
            self._offset += seconds


def purchase(event_id: str, source_id: str) -> Hit:
    """A server-side "Order Completed" hit, which TikTok gets as CompletePayment with a value."""
    return Hit(
        type="track",
        source_id=source_id,
        event="Order Completed",
        message_id=event_id,
        properties=Properties(
            product_id="SKU-1", price=TOTAL, quantity=1, total=TOTAL, currency=CURRENCY
        ),
    )


def purchase_records(
    event_ids: list[str],
    source_id: str,
    event_time: int,
    received_at: float,
    integrations: list[str],
) -> list[LogRecord]:
    """The log records collection appends for one request carrying these purchases, routed to
    `integrations` (the source's enabled ones: only they read the records)."""
    request = RawRequest(
        received_at=received_at,
        ip=IP,
        user_agent=USER_AGENT,
        locale=None,
        from_server=True,
        source_id=source_id,
        cookies_read={},
        identity_cookie_present=False,
        integrations=integrations,
    )
    return [
        LogRecord(
            source_id=source_id,
            received_at=received_at,
            data=render(
                purchase(eid, source_id),
                request,
                None,
                HitContext(
                    event_id=eid,
                    event_time=event_time,
                    anonymous_id=f"anon-{eid}",
                    ip=IP,
                    user_agent=USER_AGENT,
                ),
            ),
            event_id=eid,
        )
        for eid in event_ids
    ]


@dataclass
class Process:
    """A gateway process on the rig's data dir: its handle on the hit log and its consumers."""

    hitlog: SQLiteHitLog
    consumers: LogConsumers


@dataclass
class DeliveryRig:
    tiktok: TikTokDouble
    session: aiohttp.ClientSession
    hitlog: SQLiteHitLog
    queue: LogConsumers  # the worker's queue: every integration's view of `hitlog`
    store: SQLiteConfigStore
    clock: Clock
    batch_max_wait_ms: int  # the workers' default
    metrics: Metrics
    workers: list[DeliveryWorker] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # integration id -> its source id

    async def add_integration(
        self,
        integration_id: str = INTEGRATION,
        token: str = TOKEN,
        *,
        source_id: str | None = None,
        **config: Any,
    ) -> None:
        """A TikTok integration; unless `source_id` says otherwise, on a source of its own (so
        what a test enqueues for one integration is not another's)."""
        if source_id is None:
            source_id = SOURCE if integration_id == INTEGRATION else f"src_{integration_id}"
        if await self.store.get_source(source_id) is None:
            await self.store.create_source(Source(id=source_id, name=f"Shop {source_id}"))
        values: dict[str, Any] = {"rate_limit_rps": 1000.0, "rate_limit_burst": 1000}
        values.update(config)
        await self.store.create_integration(
            Integration(
                id=integration_id,
                source_id=source_id,
                name="TikTok",
                config=TikTokConfig(pixel_code=PIXEL, access_token=Secret(token), **values),
            )
        )
        self.sources[integration_id] = source_id

    async def start_worker(
        self, url: str | None = None, timeout_s: float | None = None, **options: Any
    ) -> DeliveryWorker:
        """A started worker: `batch_max_events` and the like are settings, other options the
        worker's knobs (backoff, sweep interval, ...), fast by default."""
        env = {
            "GATEWAY_BATCH_MAX_EVENTS": "100",
            "GATEWAY_BATCH_MAX_WAIT_MS": str(self.batch_max_wait_ms),
        }
        for name in _SETTINGS:
            if name in options:
                env[f"GATEWAY_{name.upper()}"] = str(options.pop(name))
        knobs: dict[str, Any] = {
            "backoff_base_s": 0.02,
            "backoff_cap_s": 0.2,
            "sweep_interval_s": 0.1,
            **options,
        }
        worker = DeliveryWorker(
            self.queue,
            self.store,
            {
                "tiktok": TikTokSender(
                    TikTokClient(self.session, url or self.tiktok.url, timeout_s=timeout_s)
                )
            },
            Settings.from_mapping(env),
            self.metrics,
            clock=self.clock,
            **knobs,
        )
        await worker.start()
        self.workers.append(worker)
        return worker

    @contextlib.asynccontextmanager
    async def other_process(self) -> AsyncIterator[Process]:
        """Another process on the same data dir: its collection appends to the same log file,
        and nobody in this process is told (the worker's sweep must find its records)."""
        hitlog = SQLiteHitLog(self.hitlog.path, max_records=self.hitlog.max_records)
        await hitlog.open()
        consumers = LogConsumers(hitlog, self.store, Metrics())
        try:
            yield Process(hitlog, consumers)
        finally:
            await consumers.close()
            await hitlog.close()

    async def enqueue(
        self,
        count: int,
        worker: DeliveryWorker | None = None,
        integration_id: str = INTEGRATION,
        event_time: int | None = None,
        chunk: int = 250,
        queue: Process | None = None,
    ) -> list[str]:
        """Append `count` purchase hits to the integration's source, `chunk` per request,
        through `queue` (another process) or this one; return their event ids, which are what
        TikTok receives and sort in the order they were made.

        With a `worker` (and no other process) it is told after each request, as collection
        tells the worker of its own process (`LogConsumers.appended`)."""
        ids = [f"evt_{next(_serial):07d}" for _ in range(count)]
        when = int(self.clock()) if event_time is None else event_time
        source_id = self.sources.get(integration_id, SOURCE)
        routed = [i.id for i in await self.store.list_integrations(source_id) if i.enabled]
        hitlog = self.hitlog if queue is None else queue.hitlog
        for start in range(0, count, chunk):
            received_at = self.clock()
            records = purchase_records(
                ids[start : start + chunk], source_id, when, received_at, routed
            )
            await hitlog.append(records)
            if worker is not None and queue is None:
                self.queue.appended([integration_id], len(records), received_at)
        return ids

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def open_rig(
    tmp_path: Path, tiktok: TikTokDouble, *, max_events: int, batch_max_wait_ms: int
) -> AsyncIterator[DeliveryRig]:
    """A store with source "src", a hit log bounded at `max_events` records; the workers stop
    at the end."""
    clock = Clock()
    box = SecretBox([Secret("delivery-test-key-0123456789-abcdefgh")], "access-token")
    store = SQLiteConfigStore(tmp_path / "config.db", box)
    hitlog = SQLiteHitLog(tmp_path / "hitlog.db", max_records=max_events, clock=clock)
    metrics = Metrics()
    queue = LogConsumers(hitlog, store, metrics)
    await store.open()
    await hitlog.open()
    await store.create_source(Source(id=SOURCE, name="Shop"))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        rig = DeliveryRig(tiktok, session, hitlog, queue, store, clock, batch_max_wait_ms, metrics)
        try:
            yield rig
        finally:
            for worker in rig.workers:
                await worker.stop(timeout_s=2)
            await queue.close()
            await hitlog.close()
            await store.close()
