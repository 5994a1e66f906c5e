"""The delivery worker on a real SQLite queue and store, against the TikTok double.

Shared by `test_deliver.py` (batching, retries, rate limits) and `test_faults.py` (outages, bad
tokens, floods). The queue's and the worker's wall clock is a `Clock`: real time unless a test
freezes it and moves it by hand.
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
import msgspec

from gateway.config.sqlite import SQLiteConfigStore
from gateway.core.crypto import SecretBox
from gateway.core.metrics import Metrics
from gateway.core.models import Integration, NewEvent, Source
from gateway.core.settings import Secret, Settings
from gateway.deliver.worker import DeliveryWorker
from gateway.destinations.tiktok.client import TikTokClient, TikTokSender
from gateway.destinations.tiktok.config import TikTokConfig
from gateway.queue.sqlite import SQLiteQueue
from tests.tiktok_double import TikTokDouble

TOKEN = "tok_delivery_secret_0123456789"
PIXEL = "CPIXELDELIVERY000001"
INTEGRATION = "int_tiktok"
_serial = itertools.count()
# Options of `start_worker` that are gateway settings; the others are the worker's own knobs.
_SETTINGS = ("batch_max_events", "batch_max_wait_ms", "event_max_age_days")


class Clock:
    """The worker's and the queue's wall clock: real time, or frozen and moved by hand.

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


def payload(event_id: str, event_time: int) -> bytes:
    return msgspec.json.encode(
        {
            "event": "CompletePayment",
            "event_time": event_time,
            "event_id": event_id,
            "user": {"external_id": "ab" * 32, "ip": "203.0.113.50", "user_agent": "Mozilla/5.0"},
            "properties": {"currency": "USD", "value": 12.5, "content_type": "product"},
        }
    )


@dataclass
class DeliveryRig:
    tiktok: TikTokDouble
    session: aiohttp.ClientSession
    queue: SQLiteQueue
    store: SQLiteConfigStore
    clock: Clock
    batch_max_wait_ms: int  # the workers' default
    metrics: Metrics = field(default_factory=Metrics)
    workers: list[DeliveryWorker] = field(default_factory=list)

    async def add_integration(
        self, integration_id: str = INTEGRATION, token: str = TOKEN, **config: Any
    ) -> None:
        values: dict[str, Any] = {"rate_limit_rps": 1000.0, "rate_limit_burst": 1000}
        values.update(config)
        await self.store.create_integration(
            Integration(
                id=integration_id,
                source_id="src",
                name="TikTok",
                config=TikTokConfig(pixel_code=PIXEL, access_token=Secret(token), **values),
            )
        )

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

    async def enqueue(
        self,
        count: int,
        worker: DeliveryWorker | None = None,
        integration_id: str = INTEGRATION,
        event_time: int | None = None,
        chunk: int = 250,
        queue: SQLiteQueue | None = None,
    ) -> list[str]:
        """Enqueue `count` events through `queue` (another process's, say), by default the
        worker's own; `notify` the worker after each chunk when it is given. The ids sort in
        the order they were made."""
        ids = [f"evt_{next(_serial):07d}" for _ in range(count)]
        when = int(self.clock()) if event_time is None else event_time
        for start in range(0, count, chunk):
            await (queue or self.queue).enqueue(
                [
                    NewEvent(integration_id, eid, "CompletePayment", when, payload(eid, when))
                    for eid in ids[start : start + chunk]
                ]
            )
            if worker is not None:
                worker.notify(integration_id)
        return ids

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def open_rig(
    tmp_path: Path, tiktok: TikTokDouble, *, max_events: int, batch_max_wait_ms: int
) -> AsyncIterator[DeliveryRig]:
    """A store with source "src", a queue bounded at `max_events`; the workers stop at the end."""
    clock = Clock()
    box = SecretBox([Secret("delivery-test-key-0123456789-abcdefgh")], "access-token")
    store = SQLiteConfigStore(tmp_path / "config.db", box)
    queue = SQLiteQueue(tmp_path / "queue.db", max_events, clock=clock)
    await store.open()
    await queue.open()
    await store.create_source(Source(id="src", name="Shop"))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        rig = DeliveryRig(tiktok, session, queue, store, clock, batch_max_wait_ms)
        try:
            yield rig
        finally:
            for worker in rig.workers:
                await worker.stop(timeout_s=2)
            await queue.close()
            await store.close()
