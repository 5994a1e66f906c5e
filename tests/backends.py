"""Storage backends under test: every queue and config-store test runs once per backend.

Only SQLite for now; Redis and PostgreSQL join as more `params` (skipped when their service is
not there). A factory fixture opens further handles onto the same storage, the way several
`--workers` processes share it, and closes every handle it opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.crypto import SecretBox
from gateway.queue.base import Queue
from gateway.queue.sqlite import SQLiteQueue
from gateway.settings import Secret
from gateway.store.base import ConfigStore
from gateway.store.sqlite import SQLiteConfigStore

QUEUE_BACKENDS = ["sqlite"]
STORE_BACKENDS = ["sqlite"]
DEFAULT_MAX_EVENTS = 1_000_000

OpenQueue = Callable[..., Awaitable[Queue]]
OpenStore = Callable[[], Awaitable[ConfigStore]]


def token_box() -> SecretBox:
    return SecretBox([Secret("test-secret-key-0123456789-abcdefghij")], "token")


def _new_queue(backend: str, data_dir: Path, max_events: int) -> Queue:
    if backend == "sqlite":
        return SQLiteQueue(data_dir / "queue.db", max_events)
    raise AssertionError(f"unknown queue backend {backend!r}")


def _new_store(backend: str, data_dir: Path) -> ConfigStore:
    if backend == "sqlite":
        return SQLiteConfigStore(data_dir / "config.db", token_box())
    raise AssertionError(f"unknown store backend {backend!r}")


@pytest.fixture(params=QUEUE_BACKENDS)
async def queue_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenQueue]:
    """`await queue_factory(max_events=5)`: one more handle onto the same queue storage."""
    opened: list[Queue] = []

    async def open_queue(max_events: int = DEFAULT_MAX_EVENTS) -> Queue:
        queue = _new_queue(request.param, tmp_path, max_events)
        await queue.open()
        opened.append(queue)
        return queue

    yield open_queue
    for queue in reversed(opened):
        await queue.close()  # close is idempotent: a test may have closed it already


@pytest.fixture
async def queue(queue_factory: OpenQueue) -> Queue:
    return await queue_factory()


@pytest.fixture(params=STORE_BACKENDS)
async def config_store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenStore]:
    """`await config_store_factory()`: one more handle onto the same configuration storage."""
    opened: list[ConfigStore] = []

    async def open_store() -> ConfigStore:
        store = _new_store(request.param, tmp_path)
        await store.open()
        opened.append(store)
        return store

    yield open_store
    for store in reversed(opened):
        await store.close()


@pytest.fixture
async def config_store(config_store_factory: OpenStore) -> ConfigStore:
    return await config_store_factory()
