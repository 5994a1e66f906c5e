"""The composition root: opens the backends (chosen here alone, by URL scheme), builds each
surface's context, and starts and stops everything in order.

Backends: `sqlite://` (or no URL: files in the data directory), `redis://` for the queue,
`postgresql://` for the configuration store. Each surface gets only its context
(`CollectContext`, `AdminContext`); the delivery worker gets its constructor's arguments.

store -> queue -> ledger -> HTTP session to TikTok -> router (cache) -> delivery worker. Closing
runs the other way, so the worker has drained (and given back what it could not send, and told
the ledger) before the ledger writes its last records and the queue and the store close.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from gateway import destinations
from gateway.admin.context import AdminContext
from gateway.collect.context import CollectContext
from gateway.collect.cookies import IdentityCodec
from gateway.collect.route import Router
from gateway.config.base import ConfigStore
from gateway.config.migrate import Copied, copy_config, secret_keys
from gateway.config.sqlite import SQLiteConfigStore
from gateway.core.crypto import CookieBox, SecretBox, new_token
from gateway.core.metrics import Metrics
from gateway.core.settings import Secret, Settings
from gateway.core.sqlite import PRIVATE_FILE_MODE
from gateway.deliver.consumers import LogConsumers
from gateway.deliver.migrate import MigratedQueue, claim_queue_file, migrate_queue_file
from gateway.deliver.worker import DeliveryWorker
from gateway.ledger.base import Ledger
from gateway.ledger.refused import RefusedHits
from gateway.ledger.requests import RequestStats
from gateway.ledger.sqlite import SQLiteLedger
from gateway.log import HitLog, open_log
from gateway.log.group import GroupCommitting

if TYPE_CHECKING:
    from gateway.deliver.ratelimit_redis import SharedBuckets

log = logging.getLogger(__name__)


class Role(enum.StrEnum):
    ALL = "all"
    COLLECT = "collect"
    DELIVER = "deliver"
    ADMIN = "admin"


@dataclass(slots=True)
class Wired:
    """What `wire` opened: the surfaces' contexts, and the backends for the CLI and tests."""

    settings: Settings
    metrics: Metrics
    store: ConfigStore
    log: HitLog
    queue: LogConsumers  # the integrations' view of the log (retries, dead letters, counts)
    ledger: Ledger
    router: Router
    cookie_box: CookieBox
    admin_tokens: tuple[Secret, ...]
    collect: CollectContext
    admin: AdminContext
    worker: DeliveryWorker | None = None
    # Filled when the admin token was generated on this start, so the CLI can print it once.
    generated_admin_token: str | None = field(default=None, repr=False)


def make_data_dir(path: Path) -> None:
    """The data directory, created 0700 (one that exists already is left as the operator set it)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _read_or_create_secret(path: Path, make: str) -> tuple[str, bool]:
    """A secret kept in the data dir (0600), generated on first start. Returns (value, created)."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    make_data_dir(path.parent)
    # 0600 from the first byte: created with its mode, never chmod-ed after the fact.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(make + "\n")
    return make, True


def resolve_keys(settings: Settings) -> tuple[tuple[Secret, ...], tuple[Secret, ...], str | None]:
    """Admin tokens and secret keys: from settings, else from (or generated into) the data dir."""
    generated_token: str | None = None
    admin_tokens = settings.admin_tokens
    if not admin_tokens:
        value, created = _read_or_create_secret(
            settings.data_dir / "admin_token", new_token("gw_admin_")
        )
        admin_tokens = (Secret(value),)
        if created:
            generated_token = value
    secret_keys = settings.secret_keys
    if not secret_keys:
        value, _ = _read_or_create_secret(settings.data_dir / "secret_key", new_token(nbytes=32))
        secret_keys = (Secret(value),)
    return admin_tokens, secret_keys, generated_token


def _open_store(settings: Settings, token_box: SecretBox) -> ConfigStore:
    url = settings.database_url
    if url is None or url.startswith("sqlite://"):
        path = Path(url.removeprefix("sqlite://")) if url else settings.data_dir / "config.db"
        return SQLiteConfigStore(path, token_box)
    from gateway.config.postgres import PostgresConfigStore  # imported only when configured

    return PostgresConfigStore(url, token_box)


def _open_log(settings: Settings) -> HitLog:
    return open_log(
        settings.queue_url,
        data_dir=settings.data_dir,
        max_records=settings.queue_max_events,
        max_bytes=settings.queue_max_bytes,
        retention_s=settings.ledger_retention_hours * 3600.0,
    )


# How often a process that has the log open deletes what every cursor passed and the debugger's
# window no longer holds (any process may: a sweep is idempotent).
SWEEP_EVERY_S = 10.0


async def _sweep_forever(hitlog: HitLog) -> None:
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        try:
            swept = await hitlog.sweep(time.time())
        except Exception:
            log.exception("hit log sweep failed")
            continue
        if swept:
            log.debug("hit log sweep removed %d records", swept)


@contextlib.asynccontextmanager
async def _sweeping(hitlog: HitLog) -> AsyncIterator[None]:
    task = asyncio.create_task(_sweep_forever(hitlog), name="hit-log-sweep")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _open_ledger(settings: Settings) -> Ledger:
    # Its own file, whatever the queue's backend: the debugger must never slow the queue down.
    return SQLiteLedger(
        settings.data_dir / "ledger.db",
        retention_s=settings.ledger_retention_hours * 3600.0,
        max_records=settings.ledger_max_events,
    )


async def _open_shared_buckets(
    settings: Settings, stack: contextlib.AsyncExitStack
) -> SharedBuckets | None:
    """With a Redis queue, the rate limits are the cluster's: buckets in the same Redis."""
    url = settings.queue_url
    if url is None or not url.startswith(("redis://", "rediss://")):
        return None
    from gateway.deliver.ratelimit_redis import SharedBuckets  # imported only when configured

    buckets = SharedBuckets(url)
    await buckets.open()
    stack.push_async_callback(buckets.close)
    return buckets


def _prepare_data_dir(
    settings: Settings,
) -> tuple[tuple[Secret, ...], tuple[Secret, ...], str | None]:
    make_data_dir(settings.data_dir)
    return resolve_keys(settings)


@contextlib.asynccontextmanager
async def wire(settings: Settings, *, run_worker: bool = True) -> AsyncIterator[Wired]:
    """Open every resource the process needs; `run_worker` False for collect/admin-only roles."""
    # File system work at start-up, off the loop like every other blocking call.
    admin_tokens, secret_keys, generated = await asyncio.to_thread(_prepare_data_dir, settings)
    token_box = SecretBox(secret_keys, purpose="access-token")
    cookie_box = CookieBox(secret_keys, purpose="identity-cookie")
    metrics = Metrics()
    metrics.queue_bound.set(settings.queue_max_events)
    metrics.queue_bytes_bound.set(settings.queue_max_bytes)

    async with contextlib.AsyncExitStack() as stack:
        store = _open_store(settings, token_box)
        await store.open()
        stack.push_async_callback(store.close)

        hitlog = _open_log(settings)
        await hitlog.open()
        stack.push_async_callback(hitlog.close)
        if isinstance(hitlog, GroupCommitting):
            metrics.registry.register(hitlog.commit_metrics())
        await stack.enter_async_context(_sweeping(hitlog))

        ledger = _open_ledger(settings)
        await ledger.open()
        stack.push_async_callback(ledger.close)
        if isinstance(ledger, SQLiteLedger):
            metrics.registry.register(ledger.metrics())

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, limit_per_host=32, ttl_dns_cache=300),
            # The default total timeout is 300 s: far too long for a batch that can be retried.
            timeout=aiohttp.ClientTimeout(total=settings.tiktok_timeout_s, connect=5),
            raise_for_status=False,
        )
        stack.push_async_callback(session.close)
        clients = {
            vendor: destination.client(session, settings)
            for vendor, destination in destinations.REGISTRY.items()
        }

        router = Router(store)
        await router.start()
        stack.push_async_callback(router.stop)

        queue = LogConsumers(hitlog, store, metrics, ledger=ledger)
        worker: DeliveryWorker | None = None
        if run_worker:
            # The delivering process moves what the former queue file held, once.
            await _migrate_old_queue(settings, hitlog, store)
        request_stats = RequestStats()  # the worker notes each request; the timeline reads it
        if run_worker:
            shared = await _open_shared_buckets(settings, stack)
            worker = DeliveryWorker(
                queue,
                store,
                clients,
                settings,
                metrics,
                ledger=ledger,
                shared_buckets=shared,
                request_stats=request_stats,
            )
            await worker.start()
            # Stop first (it is pushed last): drain in-flight requests before the queue closes.
            stack.push_async_callback(worker.stop)
        refused = RefusedHits()  # one ring per process, seen by both surfaces
        yield Wired(
            settings=settings,
            metrics=metrics,
            store=store,
            log=hitlog,
            queue=queue,
            ledger=ledger,
            router=router,
            cookie_box=cookie_box,
            admin_tokens=admin_tokens,
            collect=CollectContext(
                settings=settings,
                router=router,
                log=hitlog,
                metrics=metrics,
                identity_codec=IdentityCodec(cookie_box),
                note=ledger.note,
                appended=queue.appended if worker else None,
                refused=refused,
            ),
            admin=AdminContext(
                settings=settings,
                metrics=metrics,
                store=store,
                queue=queue,
                ledger=ledger,
                router=router,
                admin_tokens=admin_tokens,
                clients=clients,
                wake=worker.wake if worker else None,
                refresh=_refresher(worker, queue),
                refused=refused,
                request_stats=request_stats,
            ),
            worker=worker,
            generated_admin_token=generated,
        )


def _refresher(worker: DeliveryWorker | None, queue: LogConsumers) -> Callable[[], None] | None:
    """What the admin API calls after it changed an integration: forget cached configs."""
    if worker is None:
        return None

    def refresh() -> None:
        queue.refresh()
        worker.refresh()

    return refresh


OLD_QUEUE_FILE = "queue.db"


async def _migrate_old_queue(
    settings: Settings, hitlog: HitLog, store: ConfigStore, path: Path | None = None
) -> MigratedQueue | None:
    """Move the former queue file's events onto the log (None: there was no file)."""
    claimed = await asyncio.to_thread(claim_queue_file, path or settings.data_dir / OLD_QUEUE_FILE)
    if claimed is None:
        return None
    moved = await migrate_queue_file(claimed, hitlog, store, time.time())
    log.info(
        "moved the former queue file onto the hit log: %d queued events, %d dead letters"
        " (%d of deleted integrations left behind); the file is now %s",
        sum(moved.queued.values()),
        sum(moved.dead_letters.values()),
        moved.orphaned,
        moved.renamed_to,
    )
    return moved


async def migrate_queue(settings: Settings, path: Path | None) -> MigratedQueue | None:
    """`gateway migrate`: the former queue file (default: the data dir's) onto the hit log."""
    _, secret_keys_, _ = await asyncio.to_thread(_prepare_data_dir, settings)
    store = _open_store(settings, SecretBox(secret_keys_, purpose="access-token"))
    await store.open()
    try:
        hitlog = _open_log(settings)
        await hitlog.open()
        try:
            return await _migrate_old_queue(settings, hitlog, store, path)
        finally:
            await hitlog.close()
    finally:
        await store.close()


async def migrate_config(settings: Settings, from_url: str | None, to_url: str) -> Copied:
    """`gateway migrate-config`: open both stores by their URLs and copy one into the other."""
    box = SecretBox(secret_keys(settings), purpose="access-token")
    old = _open_store(dataclasses.replace(settings, database_url=from_url), box)
    new = _open_store(dataclasses.replace(settings, database_url=to_url), box)
    await old.open()
    try:
        await new.open()
        try:
            return await copy_config(old, new)
        finally:
            await new.close()
    finally:
        await old.close()
